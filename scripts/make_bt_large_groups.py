"""Reference fits by choix for groups larger than a comparator's 4.

`qrank fit` reads choix-style data, where a top-1 choice can be among many items and a ranking
can be long. The shared golden files hold groups of at most 4, and a fit of larger groups once
crashed on the slot-bias table. This script makes two more files in the same format as
`actors/tests/data/bradley-terry/*.json` (see its README), the same way: data sampled from
normal true parameters with a fixed seed, fitted by choix's ILSR estimators at alpha = 0.01.

Usage: python scripts/make_bt_large_groups.py OUT_DIR   (needs choix==0.4.1 and numpy)
"""

import json
import sys
from pathlib import Path

import choix
import numpy as np

ALPHA = 0.01


def sample_top1(rng, params, n_groups, size):
    data = []
    for _ in range(n_groups):
        group = rng.choice(len(params), size=size, replace=False)
        p = np.exp(params[group] - params[group].max())
        winner = int(rng.choice(group, p=p / p.sum()))
        data.append([winner, [int(i) for i in group if i != winner]])
    return data


def sample_rankings(rng, params, n_groups, size):
    data = []
    for _ in range(n_groups):
        rest = list(rng.choice(len(params), size=size, replace=False))
        order = []
        while rest:
            p = np.exp(params[rest] - params[rest].max())
            pick = int(rng.choice(len(rest), p=p / p.sum()))
            order.append(int(rest.pop(pick)))
        data.append(order)
    return data


def write(out, name, kind, params, data, estimate):
    record = {
        "kind": kind,
        "n_items": len(params),
        "alpha": ALPHA,
        "comparisons": data,
        "true_params": params.tolist(),
        "choix_ilsr_params": (estimate - estimate.mean()).tolist(),
        "choix_version": "0.4.1",
    }
    (out / name).write_text(json.dumps(record))


def main() -> None:
    out = Path(sys.argv[1])
    rng = np.random.default_rng(20261127)
    params = rng.normal(0.0, 1.0, size=150)
    top1 = sample_top1(rng, params, 1_500, 8)
    write(out, "top1-groups-of-8.json", "top1", params, top1, choix.ilsr_top1(len(params), top1, alpha=ALPHA))
    params = rng.normal(0.0, 1.0, size=120)
    rankings = sample_rankings(rng, params, 600, 6)
    estimate = choix.ilsr_rankings(len(params), rankings, alpha=ALPHA)
    write(out, "rankings-groups-of-6.json", "rankings", params, rankings, estimate)


if __name__ == "__main__":
    main()
