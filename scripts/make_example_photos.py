#!/usr/bin/env python3
"""Generate examples/photos/: real photos from scikit-image's data module, resized, plus
degraded copies that BRISQUE must rank below their originals.

Deterministic: fixed seed, fixed filters, fixed JPEG settings. It checks the requirement with the
Python `brisque` package and exits non-zero if any degraded copy does not score worse.

Usage: .venv-ref/bin/python scripts/make_example_photos.py
"""

import io
import os
import sys

import numpy as np
import skimage.data
from brisque import BRISQUE
from PIL import Image, ImageFilter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "examples", "photos")
LONG_SIDE = 320
SEED = 20261126
QUALITY = 90

# Public domain or CC0, see examples/README.md.
PHOTOS = ["astronaut", "chelsea", "coffee", "rocket"]


def resized(name):
    img = Image.fromarray(getattr(skimage.data, name)())
    scale = LONG_SIDE / max(img.size)
    size = (round(img.width * scale), round(img.height * scale))
    return img.resize(size, Image.LANCZOS)


def blur(img, rng):
    return img.filter(ImageFilter.GaussianBlur(radius=2.5))


def noise(img, rng):
    arr = np.asarray(img, dtype=np.float64)
    arr = arr + rng.normal(0.0, 25.0, arr.shape)
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))


def jpeg(img, rng):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=8)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def dark(img, rng):
    # Underexposure: a third of the light, with the sensor's gamma.
    arr = np.asarray(img, dtype=np.float64) / 255.0
    arr = (arr ** 2.2 * 0.2) ** (1 / 2.2)
    return Image.fromarray(np.round(arr * 255.0).astype(np.uint8))


DEGRADATIONS = {"blur": blur, "noise": noise, "jpeg": jpeg, "dark": dark}


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    brisque = BRISQUE(url=False)
    failures = []
    for name in PHOTOS:
        base = resized(name)
        base.save(os.path.join(OUT, f"{name}.jpg"), quality=QUALITY)
        ref = brisque.score(np.asarray(Image.open(os.path.join(OUT, f"{name}.jpg"))))
        line = [f"{name}: {ref:6.2f}"]
        for tag, fn in DEGRADATIONS.items():
            path = os.path.join(OUT, f"{name}-{tag}.jpg")
            fn(base, rng).save(path, quality=QUALITY)
            score = brisque.score(np.asarray(Image.open(path)))
            line.append(f"{tag} {score:6.2f}")
            if score <= ref:
                failures.append(f"{name}-{tag}: {score:.2f} <= {ref:.2f}")
        print("  ".join(line))
    if failures:
        print("degraded copies that do not score worse:", *failures, sep="\n  ")
        sys.exit(1)


if __name__ == "__main__":
    main()
