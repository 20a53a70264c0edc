"""`qrank eval` beside scipy on the same files: the figures must agree, and the times are compared.

Writes a ranking CSV (as `qrank rank` writes it) and a KonIQ-style truth CSV of N images, with
scores rounded so that both sides hold many ties, under bare file names in the truth and with a
folder in the ranking (so names are matched by their last part). Then runs
`qrank eval --json` and scipy's `spearmanr`, `kendalltau` (tau-b) and PLCC (`curve_fit` of the
four-parameter logistic from the usual start, then `pearsonr`, as `plcc_reference.py` does it),
best of 3 each, and prints both figures and times. scipy's time includes reading the two CSVs
with Python's csv module and joining them, as qrank's includes starting the process, reading
and joining.

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

from plcc_reference import logistic_plcc


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
    _, plcc = logistic_plcc(ours, theirs)
    return spearmanr(ours, theirs).statistic, kendalltau(ours, theirs).statistic, plcc


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
            return figures["srcc"], figures["krcc"], figures["plcc"]

        ours_s, ours = best_of(3, qrank_eval)
        scipy_s, theirs = best_of(3, lambda: scipy_eval(ranking_path, truth_path))
    print(f"N = {args.n}, best of 3")
    for who, (srcc, krcc, plcc), seconds in [("qrank eval", ours, ours_s), ("scipy", theirs, scipy_s)]:
        print(f"{who + ':':11} SRCC {srcc:.12f}  KRCC {krcc:.12f}  PLCC {plcc:.12f}  {seconds:.3f} s")
    rank_gap = max(abs(ours[0] - theirs[0]), abs(ours[1] - theirs[1]))
    print(f"largest difference: {rank_gap:.1e} in SRCC and KRCC, {abs(ours[2] - theirs[2]):.1e} in PLCC; "
          f"qrank {scipy_s / ours_s:.1f}x the speed of scipy")
    # The rank correlations are exact sums. PLCC comes from two iterative fits, and here, the
    # truth being a straight line of the scores plus noise, the best logistic lies at an infinite
    # width: both fits stop on the way there, a few 1e-6 of PLCC apart.
    if rank_gap > 1e-9 or not math.isclose(ours[2], theirs[2], abs_tol=1e-5):
        raise SystemExit("qrank eval and scipy disagree")


if __name__ == "__main__":
    main()
