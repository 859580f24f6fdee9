"""AdaBN under a synthetic domain shift: train on Fashion-MNIST, test on shifted images.

A classifier is built by feature extraction (EfficientNet-Lite0 with real
ImageNet weights, frozen, + logistic regression) on clean Fashion-MNIST
images, then tested on three shifted versions of the test images:

- ``inverted``: contrast inversion (255 - x), white garments on black turned
  into dark garments on white;
- ``tinted``: half the contrast and a warm colour cast (as from another camera
  and lighting);
- ``blurred``: Gaussian blur, sigma 1.5 px at 28 px (out of focus).

Protocol (Li et al. 2016): the backbone's BatchNorm statistics are first
re-estimated on the *source* training images (``source BN``) and the linear
head is fitted on those features; "before" is that model on the shifted test
images; "after" is the same model after ``ktl.adapt_batchnorm`` on a disjoint
set of *unlabelled* shifted images (no target labels used). The usual
feature-extraction pipeline (ImageNet BN statistics kept) is shown too.
Each seed draws other training, adaptation and test images.

Usage:
    python examples/adabn_domain_shift.py [--quick] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SHIFTS = ("inverted", "tinted", "blurred")


def shift(images: np.ndarray, kind: str) -> np.ndarray:
    """Shifted uint8 28x28 grey images -> float32 RGB in [0, 255], still 28x28."""
    x = np.repeat(images[..., None].astype("float32"), 3, axis=-1)
    if kind == "clean":
        return x
    if kind == "inverted":
        return 255.0 - x
    if kind == "tinted":
        return np.clip(0.5 * x * np.array([1.0, 0.8, 0.55]) + np.array([90.0, 60.0, 30.0]),
                       0, 255).astype("float32")
    if kind == "blurred":
        from scipy.ndimage import gaussian_filter

        return gaussian_filter(x, sigma=(0, 1.5, 1.5, 0)).astype("float32")
    raise ValueError(f"Unknown shift {kind!r}")


def resize(x: np.ndarray, size: int) -> np.ndarray:
    import tensorflow as tf

    return np.concatenate([tf.image.resize(x[i:i + 256], (size, size)).numpy()
                           for i in range(0, len(x), 256)])


def accuracy(model, x, y) -> float:
    return float((model.predict(x, batch_size=64, verbose=0).argmax(1) == y).mean())


def run_seed(seed: int, args, data) -> dict:
    import keras

    import kerastl as ktl
    from kerastl.data.fashion_mnist import few_shot_indices
    from kerastl.transfer import linear_head_model
    from kerastl.transfer.adabn import batchnorm_layers

    (x_train, y_train), (x_test, y_test) = data
    keras.utils.set_random_seed(seed)
    train_idx = few_shot_indices(y_train, args.train_per_class, seed=seed)
    adapt_idx = few_shot_indices(y_train, args.adapt_per_class, seed=seed + 100,
                                 exclude=train_idx)
    test_idx = few_shot_indices(y_test, args.test_per_class, seed=seed + 200)
    size = args.image_size
    x_src, y_src = resize(shift(x_train[train_idx], "clean"), size), y_train[train_idx]
    y_tst = y_test[test_idx]

    backbone = ktl.build_backbone("efficientnet_lite0", image_size=size)
    # usual feature extraction: ImageNet BN statistics
    feats, labels = ktl.extract_features(backbone, (x_src, y_src), verbose=0)
    plain = linear_head_model(backbone, ktl.fit_linear_head(feats, labels, seed=seed))
    plain_weights = plain.get_weights()
    # AdaBN protocol: BN statistics of the source domain, head fitted on those features
    # (both models share the backbone; its statistics are set before each use)
    ktl.adapt_batchnorm(backbone, x_src)
    feats, labels = ktl.extract_features(backbone, (x_src, y_src), verbose=0)
    head = ktl.fit_linear_head(feats, labels, seed=seed)
    source_model = linear_head_model(backbone, head)
    source_state = [v.numpy() for v in backbone.weights]
    bn_vars = {id(v) for layer in batchnorm_layers(backbone)
               for v in (layer.moving_mean, layer.moving_variance)}

    row = {"seed": seed, "clean": accuracy(source_model, resize(shift(x_test[test_idx],
                                                                       "clean"), size), y_tst)}
    for kind in args.shifts:
        x_tgt = resize(shift(x_test[test_idx], kind), size)
        x_adapt = resize(shift(x_train[adapt_idx], kind), size)  # unlabelled target images
        for v, value in zip(backbone.weights, source_state, strict=True):
            v.assign(value)
        before = accuracy(source_model, x_tgt, y_tst)
        ktl.adapt_batchnorm(source_model, x_adapt)
        after = accuracy(source_model, x_tgt, y_tst)
        changed = [id(v) for v, value in zip(backbone.weights, source_state, strict=True)
                   if not np.array_equal(v.numpy(), value)]
        if not set(changed) <= bn_vars:
            raise RuntimeError("AdaBN changed weights other than BN statistics")
        for v, value in zip(backbone.weights, source_state, strict=True):
            v.assign(value)
        plain.set_weights(plain_weights)  # ImageNet statistics again
        imagenet_bn = accuracy(plain, x_tgt, y_tst)
        ktl.adapt_batchnorm(plain, x_adapt)  # what a user might try: AdaBN on the plain model
        row[kind] = {"imagenet_bn": imagenet_bn, "imagenet_bn_adabn": accuracy(plain, x_tgt, y_tst),
                     "before": before, "after": after}
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 images/class, 1 seed")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args(argv)
    args.train_per_class, args.adapt_per_class, args.test_per_class = 50, 50, 50
    args.shifts = SHIFTS
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.quick:
        seeds, args.image_size = seeds[:1], 64
        args.train_per_class, args.adapt_per_class, args.test_per_class = 10, 10, 10
        args.shifts = ("inverted",)

    from kerastl.data.fashion_mnist import load_fashion_mnist

    data = load_fashion_mnist()
    print(f"EfficientNet-Lite0 features + logistic regression, {args.train_per_class} "
          f"images/class, {args.image_size} px; AdaBN on {args.adapt_per_class * 10} "
          f"unlabelled target images; {args.test_per_class * 10} test images")
    rows = []
    for seed in seeds:
        row = run_seed(seed, args, data)
        rows.append(row)
        print(f"seed {seed}: clean {row['clean']:.4f}  " + "  ".join(
            f"{k}: {row[k]['before']:.4f} -> {row[k]['after']:.4f} "
            f"(ImageNet BN {row[k]['imagenet_bn']:.4f} -> {row[k]['imagenet_bn_adabn']:.4f})"
            for k in args.shifts), flush=True)
    print("Mean ± sd over seeds. source BN = the AdaBN protocol (before -> after AdaBN); "
          "ImageNet BN = usual feature extraction (-> the same with AdaBN on the target).")
    print(f"{'shift':<10} {'ImageNet BN':>15} {'+ AdaBN':>15} {'source BN':>15} "
          f"{'+ AdaBN':>15} {'gain pp':>12}")
    for kind in args.shifts:
        def stat(key, kind=kind):
            values = np.array([r[kind][key] for r in rows])
            return values.mean(), values.std(ddof=1) if len(values) > 1 else 0.0

        gains = np.array([r[kind]["after"] - r[kind]["before"] for r in rows]) * 100
        cells = [stat(k) for k in ("imagenet_bn", "imagenet_bn_adabn", "before", "after")]
        print(f"{kind:<10} " + " ".join(f"{m:>8.4f}±{s:.4f}" for m, s in cells)
              + f" {gains.mean():>+7.2f}±{gains.std(ddof=1) if len(gains) > 1 else 0:.2f}")


if __name__ == "__main__":
    main()
