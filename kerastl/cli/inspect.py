"""``kerastl inspect DATA_DIR``: likely label errors, duplicates, leaks and imbalance."""

from __future__ import annotations

import pathlib

from kerastl.config import DEFAULTS
from kerastl.errors import UserInputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="find likely label errors, duplicates and train/val/test leaks",
        description="Inspect DATA_DIR (one subfolder per class, or train/ val/ test/ "
                    "subfolders) with a frozen pretrained backbone: ranks likely label "
                    "errors (k-fold logistic regression, out-of-fold probability of the "
                    "given label), finds exact and near-duplicate images and pairs across "
                    "splits, and reports class imbalance. Writes report.json, "
                    "label_errors.png and duplicates.png into --output.")
    p.add_argument("data_dir", metavar="DATA_DIR", help="image folder")
    p.add_argument("--backbone", default=DEFAULTS.backbone,
                   help="backbone of the features (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=None,
                   help="input size in px (default: the backbone's native size)")
    p.add_argument("--output", default="inspection",
                   help="report folder (default: %(default)s)")
    p.add_argument("--folds", type=int, default=5,
                   help="folds of the out-of-fold classifier (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.98,
                   help="cosine similarity from which two images are near-duplicates "
                        "(default: %(default)s)")
    p.add_argument("--features-cache", default=None, metavar="DIR",
                   help="cache the backbone features in DIR")
    p.add_argument("--top", type=int, default=10,
                   help="suspected label errors printed (default: %(default)s)")
    p.set_defaults(func=run)


def run(args) -> int:
    data_dir = pathlib.Path(args.data_dir)
    if not data_dir.is_dir():
        raise UserInputError(f"DATA_DIR {data_dir} is not a folder")
    import kerastl as ktl

    report = ktl.inspect(data_dir, args.backbone, image_size=args.image_size,
                         folds=args.folds, duplicate_threshold=args.threshold,
                         output=args.output, cache=args.features_cache)
    names = report.class_names
    flagged = sum(s["flagged"] for s in report.label_errors)
    print(f"{sum(report.splits.values())} images; {len(report.label_errors)} whose "
          f"out-of-fold prediction disagrees with the label ({flagged} flagged by confident "
          f"learning); {len(report.duplicates)} duplicate pairs, {len(report.leaks)} across "
          f"splits; largest/smallest class {report.imbalance['ratio']:g}")
    for s in report.label_errors[:args.top]:
        print(f"  {s['self_confidence']:.3f}  {s['path']}: {names[s['given']]} -> "
              f"{names[s['suggested']]}")
    for key, path in report.files.items():
        print(f"  {key:<14}{path}")
    return 0
