"""Feature extraction + logistic regression vs two-phase fine-tuning, same backbone.

EfficientNet-Lite0 (real ImageNet weights) on few-shot Fashion-MNIST (the
demo's splits: N training images per class, 50 per class for validation,
2,000 test images), at 96 px:

- feature extraction: ``ktl.extract_features`` on the training split, then
  ``ktl.fit_linear_head`` (logistic regression, C chosen by 3-fold CV on the
  training features; the validation split is not used), then the Keras
  model from ``linear_head_model``;
- fine-tuning: ``ktl.build_classifier`` + ``ktl.fine_tune`` with the demo's
  settings (15 head epochs on cached features, then 6 epochs with the whole
  backbone unfrozen, early stopping and best-epoch restore on the validation
  split).

Both are timed from building the backbone to a trained Keras model (the
input pipeline is warmed first, so decoding is excluded from both, and both
methods run once untimed on a tiny split first, so neither pays the
process's one-off start-up costs) and
evaluated on the same test images. Target: feature extraction within 2 pp of
fine-tuning at <= 0.1x its time. The ratio printed is time(FE) / time(FT).

``--sizes 10,30,100,300`` repeats the comparison at several training sizes
(images per class): that sweep is what ``kerastl train --mode auto`` uses to
pick its threshold (see ``kerastl/transfer/run.py``).

Each method runs ``--repeats`` times (default 3), interleaved; times are
medians, accuracies means over the repeats.

Usage:
    python benchmarks/feature_extraction.py [--quick] [--sizes 100] [--repeats 3] [--json out.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def compare(per_class: int, args) -> dict:
    import keras
    import numpy as np

    import kerastl as ktl
    from kerastl.demo import DemoConfig, demo_splits
    from kerastl.memory import GraphRelease
    from kerastl.reports.report import predict_dataset
    from kerastl.transfer.linear import linear_head_model

    config = DemoConfig(image_size=args.image_size, train_per_class=per_class,
                        val_per_class=args.val_per_class, test_per_class=args.test_per_class,
                        head_epochs=args.head_epochs, epochs=args.epochs, seed=args.seed)
    splits = demo_splits(config)
    for split in (splits.train, splits.val, splits.test):  # warm the in-memory caches
        for _ in split:
            pass

    def accuracy(model):
        probs, labels = predict_dataset(model, splits.test)
        return float((probs.argmax(1) == labels).mean())

    def feature_extraction():
        graphs = GraphRelease()
        keras.utils.set_random_seed(args.seed)
        start = time.perf_counter()
        backbone = ktl.build_backbone(args.backbone, image_size=args.image_size)
        features, labels = ktl.extract_features(backbone, splits.train, verbose=0)
        t_extract = time.perf_counter() - start
        head = ktl.fit_linear_head(features, labels, kind="logistic", seed=args.seed)
        fe_model = linear_head_model(backbone, head)
        seconds = time.perf_counter() - start
        row = seconds, t_extract, head.C, accuracy(fe_model)
        del backbone, fe_model
        graphs.release()  # each run starts from the same process state
        return row

    def fine_tuning():
        graphs = GraphRelease()
        keras.utils.set_random_seed(args.seed)
        start = time.perf_counter()
        model = ktl.build_classifier(ktl.build_backbone(args.backbone, image_size=args.image_size),
                                     len(splits.class_names))
        ktl.fine_tune(model, splits.train, splits.val, head_epochs=config.head_epochs,
                      epochs=config.epochs, learning_rate=config.learning_rate,
                      fine_tune_learning_rate=config.fine_tune_learning_rate, verbose=0)
        seconds = time.perf_counter() - start
        row = seconds, accuracy(model)
        del model
        graphs.release()
        return row

    # Interleaved repeats, medians: one run of a few seconds is at the mercy of
    # this shared machine (the same extraction took 1.2-2.6 s in one process).
    fe_runs, ft_runs = [], []
    for _ in range(args.repeats):
        fe_runs.append(feature_extraction())
        ft_runs.append(fine_tuning())
    t_fe = float(np.median([r[0] for r in fe_runs]))
    t_ft = float(np.median([r[0] for r in ft_runs]))
    fe_acc = float(np.mean([r[3] for r in fe_runs]))
    ft_acc = float(np.mean([r[1] for r in ft_runs]))
    return {"per_class": per_class, "train_images": int(splits.counts["train"]),
            "test_images": int(splits.counts["test"]), "image_size": args.image_size,
            "repeats": args.repeats,
            "fe_accuracy": fe_acc, "fe_seconds": t_fe,
            "fe_extract_seconds": float(np.median([r[1] for r in fe_runs])),
            "fe_C": [r[2] for r in fe_runs], "ft_accuracy": ft_acc, "ft_seconds": t_ft,
            "fe_seconds_all": [r[0] for r in fe_runs], "ft_seconds_all": [r[0] for r in ft_runs],
            "fe_accuracy_all": [r[3] for r in fe_runs], "ft_accuracy_all": [r[1] for r in ft_runs],
            "gap_pp": 100 * (ft_acc - fe_acc), "time_ratio": t_fe / t_ft}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="20 images/class, 64 px, 2+1 epochs, 300 test images")
    parser.add_argument("--sizes", default="100",
                        help="training images per class, comma-separated (default: 100)")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs of each method, interleaved; medians reported (default 3)")
    parser.add_argument("--json", default=None, help="append one JSON line per size here")
    args = parser.parse_args(argv)
    args.val_per_class, args.test_per_class = 50, 200
    args.head_epochs, args.epochs = 15, 6
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes, args.image_size = [20], 64
        args.val_per_class, args.test_per_class = 5, 30
        args.head_epochs, args.epochs, args.repeats = 2, 1, 1

    # Warm-up, untimed: both methods once on a tiny split, so one-off process
    # costs (TensorFlow's kernel set-up, importing scikit-learn, Keras's fit
    # machinery, the weights file) fall on neither timed run. Without it
    # whichever method runs first pays them (~1 s, a third of FE's time).
    warm = argparse.Namespace(**vars(args))
    warm.val_per_class, warm.test_per_class, warm.head_epochs, warm.epochs = 2, 2, 1, 1
    warm.repeats = 1
    compare(2, warm)

    rows = []
    print(f"{args.backbone} (ImageNet weights), Fashion-MNIST, {args.image_size} px, "
          f"fine-tuning {args.head_epochs}+{args.epochs} epochs; median of {args.repeats} "
          "interleaved runs each")
    print(f"{'img/class':>9} {'FE acc':>7} {'FE s':>7} {'FT acc':>7} {'FT s':>7} "
          f"{'gap pp':>7} {'time':>6}")
    for per_class in sizes:
        row = compare(per_class, args)
        rows.append(row)
        print(f"{row['per_class']:>9} {row['fe_accuracy']:7.4f} {row['fe_seconds']:7.1f} "
              f"{row['ft_accuracy']:7.4f} {row['ft_seconds']:7.1f} {row['gap_pp']:7.2f} "
              f"{row['time_ratio']:6.3f}", flush=True)
        print(f"{'':>9} runs: FE " + ", ".join(f"{t:.1f}" for t in row["fe_seconds_all"])
              + " s; FT " + ", ".join(f"{t:.1f}" for t in row["ft_seconds_all"]) + " s")
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    main_row = next((r for r in rows if r["per_class"] == 100), rows[-1])
    ok = main_row["time_ratio"] <= 0.1 and main_row["gap_pp"] <= 2.0
    print(f"at {main_row['per_class']}/class: FE accuracy {main_row['fe_accuracy']:.4f} in "
          f"{main_row['fe_seconds']:.1f} s, FT {main_row['ft_accuracy']:.4f} in "
          f"{main_row['ft_seconds']:.1f} s; gap {main_row['gap_pp']:.2f} pp (target <= 2) "
          f"-> {'PASS' if ok else 'FAIL'}")
    print(f"result: feature_extraction {main_row['time_ratio']:.3f} (target 0.1)")


if __name__ == "__main__":
    main()
