"""Input pipeline throughput vs EfficientNet-Lite0 train-step throughput at 224 px.

Generates a folder of JPEG photos-like images (smooth gradients plus texture,
varied sizes around 400x300) in a temp dir, then measures:

1. the one-off file check of ``ktl.data.image_folder`` (header + decode);
2. pipeline throughput alone: iterate ``splits.train`` (decode, resize,
   cache, shuffle, batch, augment, prefetch) for one full epoch (the
   decode-bound first epoch) and for a second, cached epoch;
3. model throughput: ``model.fit`` of EfficientNet-Lite0 (whole backbone
   trainable, i.e. the fine-tuning phase) + Dense head on in-memory tensors.

The ratio is the slowest pipeline pass (images/s) over model images/s
(target >= 3). ``--quick`` times the first 24 batches of epoch 1 only and 2
model steps of batch 16.

Usage:
    python benchmarks/input_pipeline.py [--quick] [--images 2000] [--augment light]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def make_folder(root: str, n: int, classes: int = 10, seed: int = 0) -> None:
    """Write ``n`` JPEGs (about 400x300, varied) into ``classes`` subfolders.

    Each image is a random window of one smooth, textured 640x640 scene with
    its own colour shift, so files differ and compress like photos.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:640, 0:640].astype(np.float32) / 640
    scene = np.stack([120 + 80 * np.sin(6 * xx + 2 * yy), 120 + 80 * np.cos(5 * yy),
                      120 + 60 * np.sin(4 * (xx + yy))], axis=-1)
    scene = (scene + rng.integers(0, 30, scene.shape)).clip(0, 225).astype(np.int16)
    for c in range(classes):
        os.makedirs(os.path.join(root, f"class_{c:02d}"), exist_ok=True)

    def write(i):
        r = np.random.default_rng([seed, i])
        h, w = int(r.integers(260, 380)), int(r.integers(340, 500))
        oy, ox = int(r.integers(0, 640 - h)), int(r.integers(0, 640 - w))
        shift = r.integers(-30, 30, 3).astype(np.int16)
        image = (scene[oy:oy + h, ox:ox + w] + shift).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(
            os.path.join(root, f"class_{i % classes:02d}", f"img_{i:05d}.jpg"), quality=90)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(n)))


def pipeline_throughput(ds, max_batches: int | None = None) -> float:
    """Images/s of one pass over ``ds`` (the first batch, a warm-up, is not timed)."""
    iterator = iter(ds)
    next(iterator)
    start, seen = time.perf_counter(), 0
    for i, (images, _) in enumerate(iterator):
        seen += int(images.shape[0])
        if max_batches is not None and i + 1 >= max_batches:
            break
    return seen / (time.perf_counter() - start)


def model_throughput(image_size: int, batch_size: int, steps: int, classes: int) -> float:
    """Images/s of ``model.fit`` train steps of EfficientNet-Lite0 + Dense on fixed tensors."""
    import keras
    import tensorflow as tf

    import kerastl as ktl

    try:
        backbone = ktl.build_backbone("efficientnet_lite0", image_size=image_size,
                                      trainable=True)
    except FileNotFoundError:
        backbone = ktl.build_backbone("efficientnet_lite0", weights=None,
                                      image_size=image_size, trainable=True)
    inputs = keras.Input((image_size, image_size, 3))
    outputs = keras.layers.Dense(classes, activation="softmax")(backbone(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size, image_size, image_size, 3)).astype("float32")
    y = rng.integers(0, classes, batch_size).astype("int32")
    ds = tf.data.Dataset.from_tensors((x, y)).cache().repeat()
    model.fit(ds, steps_per_epoch=1, epochs=1, verbose=0)  # trace + warm up
    start = time.perf_counter()
    model.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * batch_size / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer model steps (< 2 min)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--augment", default="light", help="augmentation policy in tf.data")
    parser.add_argument("--steps", type=int, default=None, help="model steps to time")
    args = parser.parse_args(argv)
    steps = args.steps or (2 if args.quick else 8)

    import tensorflow as tf

    import kerastl as ktl

    print(f"TensorFlow {tf.__version__}; CPUs: {os.cpu_count()}; "
          f"GPUs: {len(tf.config.list_physical_devices('GPU'))}")
    tmp = tempfile.mkdtemp(prefix="ktl_bench_")
    try:
        start = time.perf_counter()
        make_folder(tmp, args.images)
        print(f"generated {args.images} JPEGs in {time.perf_counter() - start:.1f} s")

        start = time.perf_counter()
        splits = ktl.data.image_folder(tmp, image_size=args.image_size,
                                       batch_size=args.batch_size, validation_split=0.0,
                                       augment=args.augment)
        check_s = time.perf_counter() - start
        print(f"file check: {splits.counts['train']} files in {check_s:.1f} s "
              f"({splits.counts['train'] / check_s:.0f} files/s), skipped {len(splits.skipped)}")

        rates = [pipeline_throughput(splits.train, 24 if args.quick else None)]
        print(f"pipeline epoch 1 (read+decode+resize+cache+augment '{args.augment}'"
              f"{', first 24 batches' if args.quick else ''}): {rates[0]:.0f} images/s")
        if not args.quick:
            rates.append(pipeline_throughput(splits.train))
            print(f"pipeline epoch 2 (from cache + augment): {rates[1]:.0f} images/s")

        model_batch = min(args.batch_size, 16) if args.quick else args.batch_size
        model_rate = model_throughput(args.image_size, model_batch, steps, classes=10)
        print(f"EfficientNet-Lite0 train step ({args.image_size} px, batch {model_batch}, "
              f"backbone trainable): {model_rate:.1f} images/s")
        ratio = min(rates) / model_rate
        print(f"ratio pipeline/model (slowest pipeline epoch): {ratio:.2f}")
        print(f"result: input_pipeline {ratio:.2f} (target 3)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
