#!/usr/bin/env python3
"""Time the Python `brisque` 0.2.0 package per image (fastest of --reps runs, decode excluded).

Prints one tab-separated line per image (file, size, score, ms), then `MEAN_MS brisque <ms>`,
the same shape as `cargo run --example bench_brisque`, so scripts/bench_brisque.sh can compare.

Usage: .venv-ref/bin/python scripts/bench_brisque.py [--reps N] FILES...
"""

import argparse
import time

import numpy as np
from brisque import BRISQUE
from PIL import Image


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    brisque = BRISQUE(url=False)
    total = 0.0
    print("file\tsize\tbrisque\tbrisque_ms")
    for path in args.files:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        times, score = [], float("nan")
        for _ in range(args.reps):
            start = time.perf_counter()
            score = brisque.score(rgb)
            times.append((time.perf_counter() - start) * 1e3)
        ms = min(times)
        total += ms
        print(f"{path}\t{rgb.shape[1]}x{rgb.shape[0]}\t{score:.4f}\t{ms:.2f}")
    print(f"MEAN_MS brisque {total / len(args.files):.3f}")


if __name__ == "__main__":
    main()
