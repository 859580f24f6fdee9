"""``kerastl --help`` start-up time against ``import tensorflow``, side by side.

Each is timed as a fresh process (``python -m kerastl --help``, ``python -m
kerastl train --help`` and ``python -c "import tensorflow"``), ``--repeat``
times, median wall seconds. The command builds its parser without TensorFlow,
so ``--help`` should take a fraction of TensorFlow's import. Target: < 1 s.

Usage:
    python benchmarks/cli_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "kerastl --help": ["-m", "kerastl", "--help"],
    "kerastl train --help": ["-m", "kerastl", "train", "--help"],
    "import tensorflow": ["-c", "import tensorflow"],
}


def wall_seconds(args: list[str], repeat: int) -> float:
    """Median wall time of ``python ARGS`` over ``repeat`` fresh processes."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="processes per command")
    args = parser.parse_args()
    seconds = {name: wall_seconds(argv, args.repeat) for name, argv in COMMANDS.items()}
    for name, value in seconds.items():
        print(f"{name:<22}{value:>7.2f} s  (median of {args.repeat})")
    ratio = seconds["import tensorflow"] / seconds["kerastl --help"]
    print(f"result: kerastl --help is {ratio:.1f}x faster than import tensorflow "
          f"(target: --help < 1 s)")


if __name__ == "__main__":
    main()
