"""Which fine-tuning recipe should be the default? Schedules and per-group rates side by side.

Few-shot Fashion-MNIST (the demo's splits: 100 training images per class,
50/class validation from other training images, 2,000 test images), 96 px,
EfficientNet-Lite0 with its real ImageNet weights, ``ktl.fine_tune`` with its
defaults (3 head epochs on cached features, then up to 10 epochs with the
backbone unfrozen, early stopping, best validation epoch restored) and one
change per variant:

- ``constant``: one rate per phase (the default until this benchmark);
- ``onecycle``: ``schedule="onecycle"`` (warm-up to the phase's rate, then
  annealing);
- ``cosine``: ``schedule="cosine"`` (10 % warm-up, cosine decay; the default
  since this benchmark measured it best);
- ``layerwise``: constant rates with ``layerwise_lr_decay=0.5`` (each lower
  backbone group at half the rate of the group above);
- ``gradual``: constant rates with ``gradual_unfreeze_every=2`` (top group
  first, one more group every 2 epochs).

Each variant runs for every seed (the seed picks the images and the
initialisation) on freshly made splits, so every variant of a seed starts
from the same images, weights and batch order; variants of one seed run one
after the other in this process, so they share machine conditions. Printed: test accuracy and wall
time, mean ± sd over seeds.

Ratio: the current default schedule's mean test accuracy / the best
variant's (target >= 0.99: the default is within 1 % of the best recipe
measured; below that, the best variant should become the default).

Usage:
    python benchmarks/schedules.py [--quick] [--seeds 2] [--variants constant,onecycle]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

VARIANTS = {  # every option spelled out, so a change of fine_tune's defaults changes nothing here
    "constant": {"schedule": "constant"},
    "onecycle": {"schedule": "onecycle", "warmup": 0.1},
    "cosine": {"schedule": "cosine", "warmup": 0.1},
    "layerwise": {"schedule": "constant", "layerwise_lr_decay": 0.5},
    "gradual": {"schedule": "constant", "gradual_unfreeze_every": 2},
}


def _accuracy(model, dataset) -> float:
    from kerastl.reports.report import predict_dataset

    probs, labels = predict_dataset(model, dataset)
    return float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else 0.0


def run(splits, size, seed, options, head_epochs, epochs):
    import keras

    import kerastl as ktl
    from kerastl.memory import GraphRelease

    graphs = GraphRelease()
    keras.utils.set_random_seed(seed)
    model = ktl.build_classifier(ktl.build_backbone("efficientnet_lite0", image_size=size), 10)
    start = time.perf_counter()
    result = ktl.fine_tune(model, splits.train, splits.val, head_epochs=head_epochs,
                           epochs=epochs, verbose=0, **options)
    seconds = time.perf_counter() - start
    row = {"test_accuracy": _accuracy(result.model, splits.test), "seconds": seconds,
           "best_val_accuracy": float(result.best_val_metrics.get("val_accuracy", float("nan"))),
           "epochs_run": len(result.history.get("epoch", []))}
    del model, result
    graphs.release()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (about a minute)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--json", default=None, help="append one JSON line per run here")
    args = parser.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    from kerastl.training.schedules import DEFAULT_SCHEDULE

    if unknown or DEFAULT_SCHEDULE not in names:
        parser.error(f"--variants must include '{DEFAULT_SCHEDULE}' (the default) and only "
                     f"{', '.join(VARIANTS)}")

    from kerastl.demo import DemoConfig, demo_splits

    per_class, val_per_class, test_per_class, size = 100, 50, 200, args.image_size
    head_epochs, epochs, seeds = 3, 10, args.seeds
    if args.quick:
        per_class, val_per_class, test_per_class, size = 10, 5, 10, 32
        head_epochs, epochs, seeds = 2, 2, 1
    print(f"Fashion-MNIST {per_class}/class, {size} px, test {10 * test_per_class} images; "
          f"fine_tune(head_epochs={head_epochs}, epochs={epochs}) + each variant's options; "
          f"{seeds} seed(s)")
    results: dict[str, list[dict]] = {n: [] for n in names}
    for seed in range(seeds):
        for name in names:
            # Fresh splits for every run: a kerastl dataset continues its shuffle
            # sequence from pass to pass, so a shared one would give each variant
            # other batches (and noise the comparison).
            splits = demo_splits(DemoConfig(image_size=size, train_per_class=per_class,
                                            val_per_class=val_per_class,
                                            test_per_class=test_per_class, seed=seed))
            row = run(splits, size, seed, VARIANTS[name], head_epochs, epochs)
            results[name].append(row)
            print(f"  seed {seed} {name:<10} test {row['test_accuracy']:.4f}  best val "
                  f"{row['best_val_accuracy']:.4f}  {row['epochs_run']:>2} epochs "
                  f"{row['seconds']:6.1f} s", flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(dict(row, variant=name, seed=seed, image_size=size,
                                             per_class=per_class)) + "\n")

    def mean_sd(values):
        values = np.asarray(values, dtype=float)
        sd = values.std(ddof=1) if len(values) > 1 else 0.0
        return values.mean(), sd

    print(f"{'variant':<10} {'test acc (mean ± sd)':>22} {'seconds (mean ± sd)':>22}")
    means = {}
    for name in names:
        acc_m, acc_s = mean_sd([r["test_accuracy"] for r in results[name]])
        t_m, t_s = mean_sd([r["seconds"] for r in results[name]])
        means[name] = acc_m
        print(f"{name:<10} {acc_m:>14.4f} ± {acc_s:.4f} {t_m:>14.1f} ± {t_s:5.1f}")
    best = max(means, key=means.get)
    ratio = means[DEFAULT_SCHEDULE] / means[best]
    print(f"best: {best} ({means[best]:.4f}); default {DEFAULT_SCHEDULE} "
          f"{means[DEFAULT_SCHEDULE]:.4f}")
    print(f"result: schedules {ratio:.3f} (target >= 0.99)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
