"""Peak resident memory of ``kerastl train`` on 5,000 images at 224 px (issue 18, item 4).

Writes 5,000 synthetic 256x256 JPEGs in 10 class folders (noise plus a
class-coloured shape, seeded) into a temporary folder, then runs
``kerastl train DIR --backbone efficientnet_lite0 --image-size 224`` (real
ImageNet weights from the offline package; ``--weights none`` with
``--no-weights``) twice, each in its own process, side by side:

* ``before``: the data pipeline's budgets as they were (``cache="auto"`` kept a
  split in memory up to 2 GiB, a 2048-image shuffle buffer whatever the size);
* ``after``: the defaults (memory up to 512 MiB a split, else a temporary file
  cache deleted at exit; shuffle buffer at most 128 MiB).

For each it samples ``VmHWM`` / ``VmRSS`` in ``/proc/<pid>/status`` and takes
the kernel's ``ru_maxrss`` of the reaped child (``os.wait4``: that child
only), and prints the sampled peak of each stage (start, phase 1, each
fine-tuning epoch, evaluation). ``--phase2-steps N`` is the short setting:
phase 1 reads every image (so the caches fill as in a full run), fine-tuning
runs N steps, then validation and evaluation as usual. The temporary folder
is removed afterwards.

Target: peak RSS < 2 GB (2,000,000,000 bytes). The ratio printed is peak / 2 GB.

Measured (2 shared CPU cores under load, TF 2.21, defaults: batch 32, every
group unfrozen in phase 2, ``--phase2-steps 8``):

    before: 3.09 GB (2944 MiB), ratio 1.544   (phase 1 2265 MiB, phase 2 2908 MiB,
                                               evaluation 2817 MiB)
    after:  2.59 GB (2473 MiB), ratio 1.297   (phase 1 1569 MiB, phase 2 2448 MiB,
                                               evaluation 2419 MiB)
    after / before: 0.840

The target is NOT met. The data pipeline's share is now small: the same run
with every split in the file cache and a 32 MiB shuffle buffer sampled 2412 MiB,
and a second "after" run with tf.data's autotune RAM budget capped at 256 MiB
gave 2.67 GB (2547 MiB; no gain, not kept: run-to-run spread is ~0.1 GB). What
remains is the fine-tuning step: the same command on 60 images (no cache to
speak of) peaks at 2.01-2.08 GB (1914-1985 MiB): ~0.75 GB of TensorFlow and the
model, plus ~1 GB while a batch of 32 at 224 px is trained through the whole
unfrozen backbone; with 5,000 images phase 2 reaches ~2.4 GB. Below 2 GB needs
the training step to hold less (smaller batches or gradient accumulation for
full fine-tuning at 224 px, recomputation), which is kerastl/training's, not the
data pipeline's. An earlier full run (1+1 epochs, before the evaluation fix of
e65773c) measured 5.73 GB.

Usage:
    python benchmarks/train_memory.py [--images 5000] [--head-epochs 1] [--epochs 1]
        [--batch-size 32] [--phase2-steps N] [--only before|after] [--keep DIR]
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


# The child: kerastl's CLI with the data pipeline's budgets set first (the
# "before" run restores the budgets of the earlier pipeline in this process only).
_CHILD = """
import sys
import kerastl.data.pipeline as p
if sys.argv[1] != "default":
    p.AUTO_CACHE_BYTES, p.SHUFFLE_BYTES = int(sys.argv[1]), int(sys.argv[2])
if sys.argv[3] != "all":  # --phase2-steps: fits after the first (phase 1) run N steps
    import keras
    fit, calls = keras.Model.fit, []
    def short_fit(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1 and kwargs.get("steps_per_epoch") is None:
            kwargs["steps_per_epoch"] = int(sys.argv[3])
        return fit(self, *args, **kwargs)
    keras.Model.fit = short_fit
from kerastl.cli.main import main
sys.exit(main(sys.argv[4:]))
"""

#: name -> (AUTO_CACHE_BYTES, SHUFFLE_BYTES). "before": the pipeline until this
#: change (in memory up to 2 GiB per split, a 2048-image shuffle buffer whatever
#: the image size); "after": the defaults.
SETTINGS = {"before": (2 * 1024**3, 2**62), "after": (None, None)}


def current_rss(pid: int) -> int:
    """``VmRSS`` of ``pid`` in bytes (0 once the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_train(command: list[str], setting: str,
              phase2_steps: int | None = None) -> tuple[int, float, int, list[str], list]:
    """Run one ``kerastl train``.

    Returns:
        (peak RSS bytes, seconds, exit status, output tail, stages) where stages
        lists ``(name, sampled peak RSS bytes)``: before the first epoch, each
        ``Epoch k/n`` line (phase 1 then phase 2) and after the last epoch
        (evaluation, plots).
    """
    import threading

    cache_bytes, shuffle_bytes = SETTINGS[setting]
    budgets = ["default", "default"] if cache_bytes is None else [str(cache_bytes),
                                                                   str(shuffle_bytes)]
    argv = [sys.executable, "-c", _CHILD, *budgets,
            "all" if phase2_steps is None else str(phase2_steps), *command]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    stages = [["start (data check, model build)", 0]]  # then "Phase 1 ...", "Epoch k/n"

    def read():
        for line in proc.stdout:
            lines.append(line)
            for part in line.replace("\r", "\n").split("\n"):
                if part.startswith("Phase 1") or (part.startswith("Epoch ") and "/" in part):
                    stages.append([part.strip(), 0])
                elif (part.startswith(("Restored the weights", "val accuracy"))
                      and not stages[-1][0].startswith("after")):
                    stages.append(["after training (evaluation, plots)", 0])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    peak = 0
    while True:
        # wait4 reaps this child only and gives its own ru_maxrss: the kernel's
        # exact maximum, even if the peak came between two VmHWM samples.
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        peak = max(peak, peak_rss(proc.pid))
        stage = stages[-1]
        stage[1] = max(stage[1], current_rss(proc.pid))
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    peak = max(peak, usage.ru_maxrss * 1024)
    tail = [line.rstrip() for line in lines if line.strip()][-8:]
    return peak, time.perf_counter() - start, proc.returncode, tail, stages


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--head-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-weights", action="store_true", help="train with --weights none")
    parser.add_argument("--phase2-steps", type=int, default=None, metavar="N",
                        help="short setting: phase 1 reads every image (the cache fills), "
                             "fine-tuning runs N steps (then validation and evaluation)")
    parser.add_argument("--only", choices=sorted(SETTINGS), default=None,
                        help="run one setting instead of both")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="write the images (and the runs) here and keep them")
    args = parser.parse_args(argv)

    root = args.keep or tempfile.mkdtemp(prefix="kerastl_train_memory_")
    data = os.path.join(root, "images")
    results = {}
    try:
        start = time.perf_counter()
        if not os.path.isdir(data):
            make_images(data, args.images)
        print(f"{args.images} images written in {time.perf_counter() - start:.0f} s", flush=True)
        for setting in [args.only] if args.only else list(SETTINGS):
            command = ["train", data, "--backbone", "efficientnet_lite0", "--image-size", "224",
                       "--weights", "none" if args.no_weights else "imagenet",
                       "--head-epochs", str(args.head_epochs), "--epochs", str(args.epochs),
                       "--batch-size", str(args.batch_size),
                       "--output", os.path.join(root, f"run-{setting}"), "--overwrite"]
            print(f"[{setting}] kerastl " + " ".join(command), flush=True)
            peak, seconds, status, tail, stages = run_train(command, setting,
                                                            args.phase2_steps)
            print("\n".join(f"  {line}" for line in tail))
            for name, stage_peak in stages:
                print(f"[{setting}]   sampled peak {stage_peak / 2**20:6.0f} MiB  {name}")
            if status != 0:
                print(f"[{setting}] kerastl train exited {status}", file=sys.stderr)
                return 1
            print(f"[{setting}] peak RSS of kerastl train: {peak / 1e9:.2f} GB "
                  f"({peak / 2**20:.0f} MiB), {seconds:.0f} s", flush=True)
            results[setting] = peak
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    for setting, peak in results.items():
        print(f"result: train_memory[{setting}] {peak / 1e9:.2f} GB = "
              f"{peak / TARGET_BYTES:.3f} x 2 GB (target < 1.0)")
    if len(results) == 2:
        print(f"result: train_memory after/before {results['after'] / results['before']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
