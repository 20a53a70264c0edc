#!/usr/bin/env python3
"""Distortion ladders: does `qrank rank --model brisque` order each photo's degradations as the
Python `brisque` package does?

Each original in examples/photos/ (the four without a suffix) is degraded at five levels by seven
distortions: blur, noise, JPEG, darkening, over-exposure, contrast loss and pixelation. Each
ladder's within-ladder Spearman correlation (level against BRISQUE, so 1.0 means every step down
the ladder scores worse) is computed from the Python package and from qrank's ranking, and the
two are compared. JPEG ladders are stored as JPEG, all others as PNG, so only the JPEG ladder
goes through the two different JPEG decoders.

Usage: .venv-ref/bin/python scripts/ladder_check.py --qrank target/release/qrank [--keep DIR]
"""

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from brisque import BRISQUE
from PIL import Image, ImageEnhance, ImageFilter
from scipy.stats import spearmanr

LEVELS = 5


def degrade(img, kind, level, rng):
    """`level` runs from 1 (mild) to LEVELS (severe)."""
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(radius=0.6 * level))
    if kind == "noise":
        pixels = np.asarray(img, dtype=np.float64)
        noisy = pixels + rng.normal(0.0, 6.0 * level, pixels.shape)
        return Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8))
    if kind == "dark":
        return ImageEnhance.Brightness(img).enhance(1.0 - 0.15 * level)
    if kind == "bright":
        return ImageEnhance.Brightness(img).enhance(1.0 + 0.3 * level)
    if kind == "contrast":
        return ImageEnhance.Contrast(img).enhance(1.0 - 0.17 * level)
    if kind == "pixelate":
        factor = 1 + level
        small = img.resize((max(1, img.width // factor), max(1, img.height // factor)), Image.BILINEAR)
        return small.resize(img.size, Image.NEAREST)
    raise ValueError(kind)


JPEG_QUALITY = {1: 50, 2: 30, 3: 18, 4: 10, 5: 5}
KINDS = ["blur", "noise", "jpeg", "dark", "bright", "contrast", "pixelate"]


def make_ladders(photos, out):
    rng = np.random.default_rng(7)
    ladders = {}
    for photo in photos:
        img = Image.open(photo).convert("RGB")
        for kind in KINDS:
            files = []
            for level in range(1, LEVELS + 1):
                if kind == "jpeg":
                    path = out / f"{photo.stem}-{kind}-{level}.jpg"
                    img.save(path, quality=JPEG_QUALITY[level])
                else:
                    path = out / f"{photo.stem}-{kind}-{level}.png"
                    degrade(img, kind, level, rng).save(path)
                files.append(path)
            ladders[(photo.stem, kind)] = files
    return ladders


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--qrank", required=True)
    parser.add_argument("--keep", help="write the ladders here instead of a temporary folder")
    args = parser.parse_args()
    photos = sorted(p for p in Path("examples/photos").glob("*.jpg") if "-" not in p.stem)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or tmp)
        out.mkdir(parents=True, exist_ok=True)
        ladders = make_ladders(photos, out)
        ranked = subprocess.run(
            [args.qrank, "rank", str(out), "--model", "brisque", "--format", "json"],
            check=True, capture_output=True, text=True,
        )
        # qrank's score for a scorer is -BRISQUE (higher is better).
        ours = {Path(item["name"]).name: -item["score"] for item in json.loads(ranked.stdout)["ranking"]["items"]}
        model = BRISQUE(url=False)
        theirs = {}
        for files in ladders.values():
            for path in files:
                theirs[path.name] = model.score(np.asarray(Image.open(path).convert("RGB")))

    print(f"{'ladder':<22} {'python':>7} {'qrank':>7}  max |diff|")
    rho_py, rho_ours, same = [], [], 0
    for (stem, kind), files in ladders.items():
        levels = list(range(1, LEVELS + 1))
        py = [theirs[f.name] for f in files]
        qr = [ours[f.name] for f in files]
        a, b = spearmanr(levels, py)[0], spearmanr(levels, qr)[0]
        rho_py.append(a)
        rho_ours.append(b)
        same += int(np.argsort(py).tolist() == np.argsort(qr).tolist())
        diff = max(abs(x - y) for x, y in zip(py, qr))
        print(f"{stem + '/' + kind:<22} {a:7.3f} {b:7.3f}  {diff:.2e}")
    print(
        f"mean within-ladder Spearman: python {np.mean(rho_py):.4f}, qrank {np.mean(rho_ours):.4f}; "
        f"identical order on {same} of {len(ladders)} ladders"
    )


if __name__ == "__main__":
    main()
