"""Time to accuracy: the Keras guide's fine-tuning recipe vs ``kerastl.fine_tune``.

Both sides train the same backbone (EfficientNet-Lite0, real ImageNet
weights, preprocessing inside) on the same data (Fashion-MNIST, 100 images
per class, 96 px, seeded; validation 50/class from other training images;
2,000 test images) on the same machine, one after the other in this process.

Baseline, written plainly in Keras as the Keras transfer-learning guide does
it: ``base.trainable = False``, ``x = base(inputs, training=False)``,
Dropout 0.2, Dense softmax; Adam 1e-3 for ``--baseline-epochs`` epochs, then
``base.trainable = True``, recompile with Adam 1e-5 and train
``--baseline-ft-epochs`` more. No best-weights restore (the guide has none).

kerastl: ``ktl.build_classifier(backbone, 10)`` and ``ktl.fine_tune(model,
train, val)`` with its defaults (``--kerastl-option key=value`` overrides one).

Each side's clock starts when training starts (models built beforehand) and
is read at the end of every epoch together with the validation accuracy.
The figure is the time at which kerastl's validation accuracy first reaches
the baseline's best validation accuracy, divided by the baseline's total
wall time (target <= 0.5); kerastl's final test accuracy (after its
best-weights restore) must also be >= the baseline's final test accuracy.

Usage:
    python benchmarks/time_to_accuracy.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


class EpochClock:
    """Builds a Keras callback recording (seconds since ``t0``, val accuracy) per epoch."""

    def __init__(self):
        import keras

        self.rows: list[dict] = []
        self.t0 = time.perf_counter()
        clock = self

        class _Callback(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                clock.rows.append({"seconds": time.perf_counter() - clock.t0,
                                   "val_accuracy": float(logs.get("val_accuracy", np.nan)),
                                   "loss": float(logs.get("loss", np.nan))})

        self.callback = _Callback()

    def start(self):
        self.t0 = time.perf_counter()


def _accuracy(model, dataset) -> float:
    from kerastl.reports.report import predict_dataset

    probs, labels = predict_dataset(model, dataset)
    return float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else 0.0


def run_baseline(splits, size, head_epochs, ft_epochs, seed):
    """The Keras guide's recipe, in plain Keras (no kerastl training code)."""
    import keras

    import kerastl as ktl

    keras.utils.set_random_seed(seed)
    base = ktl.build_backbone("efficientnet_lite0", image_size=size)  # weights + preprocessing
    base.trainable = False
    inputs = keras.Input((size, size, 3))
    x = base(inputs, training=False)
    x = keras.layers.Dropout(0.2)(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    clock = EpochClock()
    clock.start()
    model.fit(splits.train, validation_data=splits.val, epochs=head_epochs, verbose=2,
              callbacks=[clock.callback])
    base.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(1e-5),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    model.fit(splits.train, validation_data=splits.val, initial_epoch=head_epochs,
              epochs=head_epochs + ft_epochs, verbose=2, callbacks=[clock.callback])
    wall = time.perf_counter() - clock.t0
    return {"curve": clock.rows, "wall_seconds": wall,
            "test_accuracy": _accuracy(model, splits.test)}


def run_kerastl(splits, size, seed, options):
    import keras

    import kerastl as ktl

    keras.utils.set_random_seed(seed)
    model = ktl.build_classifier(ktl.build_backbone("efficientnet_lite0", image_size=size), 10)
    clock = EpochClock()
    clock.start()
    result = ktl.fine_tune(model, splits.train, splits.val, callbacks=[clock.callback],
                           verbose=2, **options)
    wall = time.perf_counter() - clock.t0
    return {"curve": clock.rows, "wall_seconds": wall,
            "test_accuracy": _accuracy(result.model, splits.test),
            "timings": result.timings, "cached_features": result.cached_features,
            "phases": result.history.get("phase")}


def _parse_option(text: str):
    key, _, value = text.partition("=")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (under 2 minutes)")
    parser.add_argument("--baseline-epochs", type=int, default=20)
    parser.add_argument("--baseline-ft-epochs", type=int, default=10)
    parser.add_argument("--kerastl-option", action="append", default=[], metavar="KEY=VALUE",
                        help="override one fine_tune default, e.g. head_epochs=5")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    from kerastl.demo import DemoConfig, demo_splits

    if args.quick:
        config = DemoConfig(image_size=32, train_per_class=10, val_per_class=5,
                            test_per_class=10, seed=args.seed)
        head_epochs, ft_epochs = 2, 1
    else:
        config = DemoConfig(seed=args.seed)
        head_epochs, ft_epochs = args.baseline_epochs, args.baseline_ft_epochs
    options = dict(_parse_option(o) for o in args.kerastl_option)
    splits = demo_splits(config)
    for ds in (splits.train, splits.val, splits.test):  # fill the tf.data caches first
        for _ in ds:
            pass
    size = config.image_size
    print(f"data: Fashion-MNIST {config.train_per_class}/class train, "
          f"{config.val_per_class}/class val, {splits.counts['test']} test, {size} px")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"GPUs {len(tf.config.list_physical_devices('GPU'))}; "
          f"TF {tf.__version__}, Keras {keras.__version__}")

    from kerastl.memory import GraphRelease

    graphs = GraphRelease()
    base = run_baseline(splits, size, head_epochs, ft_epochs, args.seed)
    graphs.release()  # the baseline's models and traced graphs do not weigh on kerastl's run
    ours = run_kerastl(splits, size, args.seed, options)
    target_acc = max(r["val_accuracy"] for r in base["curve"])
    reached = next((r["seconds"] for r in ours["curve"] if r["val_accuracy"] >= target_acc),
                   None)
    ratio = reached / base["wall_seconds"] if reached is not None else float("inf")

    def curve(rows):
        return " ".join(f"{r['seconds']:.0f}s:{r['val_accuracy']:.3f}" for r in rows)

    print(f"baseline (Keras guide: frozen {head_epochs} ep Adam 1e-3, "
          f"then {ft_epochs} ep Adam 1e-5): wall {base['wall_seconds']:.1f} s, "
          f"best val acc {target_acc:.4f}, final test acc {base['test_accuracy']:.4f}")
    print(f"  val curve: {curve(base['curve'])}")
    print(f"kerastl.fine_tune({', '.join(f'{k}={v!r}' for k, v in options.items()) or 'defaults'}):"
          f" wall {ours['wall_seconds']:.1f} s, best val acc "
          f"{max(r['val_accuracy'] for r in ours['curve']):.4f}, final test acc "
          f"{ours['test_accuracy']:.4f}, cached features {ours['cached_features']}")
    print(f"  val curve: {curve(ours['curve'])}")
    if reached is None:
        print("kerastl never reached the baseline's best validation accuracy")
    else:
        print(f"kerastl reached {target_acc:.4f} after {reached:.1f} s "
              f"({ratio:.3f} x the baseline's {base['wall_seconds']:.1f} s)")
    test_ok = ours["test_accuracy"] >= base["test_accuracy"]
    print(f"test accuracy: kerastl {ours['test_accuracy']:.4f} vs baseline "
          f"{base['test_accuracy']:.4f} ({'>=' if test_ok else '<'} baseline)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"baseline": base, "kerastl": ours, "options": options,
                       "target_val_accuracy": target_acc, "reached_seconds": reached,
                       "ratio": ratio, "test_ok": test_ok, "quick": args.quick}, fh, indent=2)
    print(f"result: time_to_accuracy {ratio:.3f} (target 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
