"""Reference PLCCs for `engine::logistic`: scipy's `curve_fit` of the four-parameter logistic
that image-quality work fits before reporting PLCC (VQEG FR-TV Phase II), then `pearsonr` of
the fitted values against the truth.

    f(x) = b2 + (b1 - b2) / (1 + exp(-(x - b3) / |b4|))

started, as qrank starts, from b1 = max(y), b2 = min(y), b3 = mean(x), b4 = std(x).

Writes engine/tests/data/plcc_reference.json: for each case its x (a ranking's scores), y (the
truth), the fitted parameters, the PLCC after the fit and the linear PLCC.

Usage: python scripts/plcc_reference.py   (needs numpy and scipy)
"""

import json
import os

import numpy as np
from scipy.optimize import curve_fit
from scipy.stats import pearsonr


def logistic(x, b1, b2, b3, b4):
    return b2 + (b1 - b2) / (1 + np.exp(-(x - b3) / np.abs(b4)))


def logistic_plcc(x, y, **tolerances):
    """The fitted parameters and PLCC after the fit, as image-quality papers compute it;
    `tolerances` go to `curve_fit` (its defaults otherwise). Also used by bench_eval.py."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    p0 = [y.max(), y.min(), x.mean(), x.std()]
    params, _ = curve_fit(logistic, x, y, p0=p0, maxfev=100_000, **tolerances)
    return params, pearsonr(logistic(x, *params), y).statistic


def case(name, x, y):
    params, plcc = logistic_plcc(x, y, xtol=1e-14, ftol=1e-14, gtol=1e-14)
    return {
        "name": name,
        "x": [round(v, 6) for v in np.asarray(x, float).tolist()],
        "y": [round(v, 6) for v in np.asarray(y, float).tolist()],
        "params": params.tolist(),
        "plcc": plcc,
        "plcc_linear": pearsonr(x, y).statistic,
    }


def main():
    rng = np.random.default_rng(2402)
    cases = []
    # Plackett-Luce log-strengths against 1-5 MOS that saturate at both ends (KonIQ-like).
    latent = rng.normal(size=300)
    mos = 1 + 4 / (1 + np.exp(-1.7 * latent)) + rng.normal(scale=0.25, size=300)
    scores = latent + rng.normal(scale=0.4, size=300)
    cases.append(case("saturating_mos", np.round(scores, 6), np.round(mos, 6)))
    # 0-100 MOS, nearly linear in the scores, with ties on both sides (SPAQ-like).
    latent = rng.uniform(-3, 3, size=200)
    mos = np.round(50 + 12 * latent + rng.normal(scale=8, size=200))
    cases.append(case("linear_with_ties", np.round(latent + rng.normal(scale=0.5, size=200), 1), mos))
    # A ranking whose scores run against the truth: the fit turns the logistic over (b1 < b2).
    latent = rng.normal(size=120)
    mos = 3 + np.tanh(latent) + rng.normal(scale=0.2, size=120)
    cases.append(case("reversed", np.round(-latent, 6), np.round(mos, 6)))
    path = os.path.join(os.path.dirname(__file__), "..", "engine", "tests", "data", "plcc_reference.json")
    with open(path, "w") as f:
        json.dump({"generator": "scripts/plcc_reference.py", "cases": cases}, f)
        f.write("\n")
    for c in cases:
        print(f"{c['name']}: plcc {c['plcc']:.6f}, linear {c['plcc_linear']:.6f}, params {c['params']}")


if __name__ == "__main__":
    main()
