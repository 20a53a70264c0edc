"""Times choix on a reference-form JSON file and compares with our fits of the same file.

Usage: python scripts/bench_fit.py DATA.json OURS.jsonl
OURS.jsonl holds the lines printed by `bench_fit fit DATA.json`. Both sides are timed best of 3.
"""
import json
import sys
import time

import choix
from importlib.metadata import version
import numpy as np
from scipy.stats import kendalltau, spearmanr


def main():
    data = json.load(open(sys.argv[1]))
    n, alpha = data["n_items"], data["alpha"]
    comparisons = [(w, list(losers)) for w, losers in data["comparisons"]]
    choix_seconds = float("inf")
    for _ in range(3):  # best of 3, as for our fits
        started = time.perf_counter()
        params = choix.ilsr_top1(n, comparisons, alpha=alpha, tol=1e-8)
        choix_seconds = min(choix_seconds, time.perf_counter() - started)
    truth = np.array(data["true_params"])
    print(
        f"choix {version('choix')} ilsr_top1: {choix_seconds:.3f} s (best of 3), "
        f"spearman vs truth {spearmanr(params, truth)[0]:.4f}"
    )
    for line in open(sys.argv[2]):
        ours = json.loads(line)
        scores = np.array(ours["scores"])
        diff = np.abs((scores - scores.mean()) - (params - params.mean())).max()
        print(
            f"qrank {ours['fit']:>11}: {ours['seconds']:.4f} s ({ours['iterations']} iterations), "
            f"{choix_seconds / ours['seconds']:.0f}x choix; max |diff| vs choix {diff:.1e}, "
            f"tau vs choix {kendalltau(scores, params)[0]:.4f}, spearman vs truth {spearmanr(scores, truth)[0]:.4f}"
        )


if __name__ == "__main__":
    main()
