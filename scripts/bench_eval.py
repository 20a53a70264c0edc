"""`qrank eval` beside scipy on the same files: the figures must agree, and the times are compared.

Writes a ranking CSV (as `qrank rank` writes it) and a KonIQ-style truth CSV of N images, with
scores rounded so that both sides hold many ties, under bare file names in the truth and with a
folder in the ranking (so names are matched by their last part). Then runs
`qrank eval --json` and scipy's `spearmanr` and `kendalltau` (tau-b), best of 3 each, and
prints both figures and times. scipy's time includes reading the two CSVs with Python's csv
module and joining them, as qrank's includes starting the process, reading and joining.

Usage: python scripts/bench_eval.py --qrank target/release/qrank [--n 100000] [--seed 1]
Needs numpy and scipy (the reference venv, .venv-ref).
"""

import argparse
import csv
import json
import math
import os
import subprocess
import tempfile
import time

import numpy as np
from scipy.stats import kendalltau, spearmanr


def write_files(folder, n, seed):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=n)
    ranked = truth + rng.normal(scale=0.5, size=n)
    # Rounded, so that each side has ties.
    truth = np.round(truth, 1)
    ranked = np.round(ranked, 2)
    names = [f"{i:08d}.jpg" for i in range(n)]
    order = np.argsort(-ranked, kind="stable")
    ranking_path = os.path.join(folder, "ranking.csv")
    with open(ranking_path, "w", newline="") as f:
        f.write("rank,name,score,std_error,connected,error\n")
        for rank, i in enumerate(order, start=1):
            f.write(f"{rank},photos/{names[i]},{ranked[i]:.6f},0.100000,true,\n")
    truth_path = os.path.join(folder, "mos.csv")
    with open(truth_path, "w", newline="") as f:
        f.write("image_name,MOS\n")
        for i in rng.permutation(n):
            f.write(f"{names[i]},{truth[i]}\n")
    return ranking_path, truth_path


def scipy_eval(ranking_path, truth_path):
    with open(truth_path, newline="") as f:
        truth = {row["image_name"]: float(row["MOS"]) for row in csv.DictReader(f)}
    ours, theirs = [], []
    with open(ranking_path, newline="") as f:
        for row in csv.DictReader(f):
            ours.append(float(row["score"]))
            theirs.append(truth[row["name"].rsplit("/", 1)[-1]])
    return spearmanr(ours, theirs).statistic, kendalltau(ours, theirs).statistic


def best_of(runs, work):
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--qrank", required=True)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ranking_path, truth_path = write_files(folder, args.n, args.seed)

        def qrank_eval():
            out = subprocess.run(
                [args.qrank, "eval", ranking_path, "--truth", truth_path, "--json"],
                check=True, capture_output=True, text=True)
            figures = json.loads(out.stdout)["agreement"]
            return figures["srcc"], figures["krcc"]

        ours_s, (ours_srcc, ours_krcc) = best_of(3, qrank_eval)
        scipy_s, (scipy_srcc, scipy_krcc) = best_of(3, lambda: scipy_eval(ranking_path, truth_path))
    print(f"N = {args.n}, best of 3")
    print(f"qrank eval: SRCC {ours_srcc:.12f}  KRCC {ours_krcc:.12f}  {ours_s:.3f} s")
    print(f"scipy:      SRCC {scipy_srcc:.12f}  KRCC {scipy_krcc:.12f}  {scipy_s:.3f} s")
    print(f"largest difference {max(abs(ours_srcc - scipy_srcc), abs(ours_krcc - scipy_krcc)):.1e}; "
          f"qrank {scipy_s / ours_s:.1f}x the speed of scipy")
    if not (math.isclose(ours_srcc, scipy_srcc, abs_tol=1e-9) and math.isclose(ours_krcc, scipy_krcc, abs_tol=1e-9)):
        raise SystemExit("qrank eval and scipy disagree")


if __name__ == "__main__":
    main()
