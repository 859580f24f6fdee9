"""Peak resident memory of ``kerastl train`` on 5,000 images at 224 px (issue 18, item 4).

Writes 5,000 synthetic 256x256 JPEGs in 10 class folders (noise plus a
class-coloured shape, seeded) into a temporary folder, runs
``kerastl train DIR --backbone efficientnet_lite0 --image-size 224`` in a
subprocess (real ImageNet weights from the offline package; ``--weights
none`` with ``--no-weights``) and samples the process's peak resident set
size (``VmHWM`` in ``/proc/<pid>/status``, the kernel's own high-water mark)
until it exits, then the kernel's ``ru_maxrss`` of the reaped child. The
temporary folder is removed afterwards.

Target: peak RSS < 2 GB (2,000,000,000 bytes). The ratio printed is peak / 2 GB.

Measured (2 shared CPU cores, TF 2.21, defaults: batch 32, every group unfrozen in
phase 2, 1 head + 1 fine-tuning epoch, 1,425 s): peak 5.73 GB, ratio 2.86 -- the
target is NOT met. The peak was ~2.2 GB in phase 1 (frozen backbone; it includes
the in-memory cache of the decoded images, 5,000 x 224 x 224 x 3 bytes = 0.75 GB)
and RSS grew steadily through phase 2 (~3.7 MB/s, 2.2 -> 5.7 GB), which points at
the fine-tuning step (activations of the whole unfrozen backbone, XLA, or the
allocator) rather than the data pipeline.

Usage:
    python benchmarks/train_memory.py [--images 5000] [--head-epochs 1] [--epochs 1]
        [--batch-size 32] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

TARGET_BYTES = 2_000_000_000


def make_images(root: str, count: int, classes: int = 10, size: int = 256) -> None:
    """``count`` JPEGs of ``size`` px: uniform noise with a class-coloured square."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (classes, 3))
    for i in range(count):
        label = i % classes
        folder = os.path.join(root, f"class_{label:02d}")
        os.makedirs(folder, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        x, y = rng.integers(0, size // 2, 2)
        pixels[y:y + size // 3, x:x + size // 3] = colours[label]
        Image.fromarray(pixels).save(os.path.join(folder, f"{i:05d}.jpg"), quality=85)


def peak_rss(pid: int) -> int:
    """``VmHWM`` of ``pid`` in bytes (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--head-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-weights", action="store_true", help="train with --weights none")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="write the images (and the run) here and keep them")
    args = parser.parse_args(argv)

    root = args.keep or tempfile.mkdtemp(prefix="kerastl_train_memory_")
    data = os.path.join(root, "images")
    try:
        start = time.perf_counter()
        if not os.path.isdir(data):
            make_images(data, args.images)
        print(f"{args.images} images written in {time.perf_counter() - start:.0f} s", flush=True)
        command = [sys.executable, "-m", "kerastl", "train", data,
                   "--backbone", "efficientnet_lite0", "--image-size", "224",
                   "--weights", "none" if args.no_weights else "imagenet",
                   "--head-epochs", str(args.head_epochs), "--epochs", str(args.epochs),
                   "--batch-size", str(args.batch_size), "--output", os.path.join(root, "run"),
                   "--overwrite"]
        print(" ".join(command), flush=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        start = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        peak = 0
        lines = []
        import threading

        reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
        reader.start()
        while proc.poll() is None:
            peak = max(peak, peak_rss(proc.pid))
            time.sleep(0.5)
        reader.join()
        # The kernel's maximum for the reaped child: exact, even if the peak came
        # between two samples.
        import resource

        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
        seconds = time.perf_counter() - start
        tail = [line.rstrip() for line in lines if line.strip()][-12:]
        print("\n".join(tail))
        if proc.returncode != 0:
            print(f"kerastl train exited {proc.returncode}", file=sys.stderr)
            return 1
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"peak RSS of kerastl train: {peak / 1e9:.2f} GB ({peak / 2**20:.0f} MiB), "
          f"{seconds:.0f} s")
    print(f"result: train_memory {peak / TARGET_BYTES:.3f} x 2 GB (target < 1.0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
