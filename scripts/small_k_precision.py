"""How top-10% precision depends on N when no plan or fit is involved.

Every item's estimate is its true score plus an independent normal error, and the top 10% of the
estimates is compared with the true top 10%. With the same error at every N, precision still
rises with N, because a small k leaves more of the chosen set near the cut. The ranking bench
shows the same rise for random groups and for the adaptive plan; this separates the part that any
plan would see (README, "Targets of the ranking issue").

Usage: python scripts/small_k_precision.py [ERROR_SD]   (default 0.12 standard deviations of the
truth, where precision is about 0.91)
"""

import sys

import numpy as np


def precision(n: int, error_sd: float, draws: int, rng: np.random.Generator) -> float:
    k = n // 10
    total = 0.0
    for _ in range(draws):
        truth = rng.normal(size=n)
        estimate = truth + error_sd * rng.normal(size=n)
        chosen = np.argpartition(-estimate, k - 1)[:k]
        best = np.argpartition(-truth, k - 1)[:k]
        total += len(np.intersect1d(chosen, best)) / k
    return total / draws


def main() -> None:
    error_sd = float(sys.argv[1]) if len(sys.argv) > 1 else 0.12
    rng = np.random.default_rng(1)
    print("| N | draws | top-10% precision |")
    print("|---|---|---|")
    for n, draws in [(100, 40_000), (200, 20_000), (500, 8_000), (2_000, 2_000), (20_000, 200)]:
        print(f"| {n} | {draws} | {precision(n, error_sd, draws, rng):.4f} |")


if __name__ == "__main__":
    main()
