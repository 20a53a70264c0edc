#!/usr/bin/env python3
"""Write the BRISQUE parity reference: engine/tests/data/classical/brisque_reference.json.

1. Generate distortion ladders (blur, noise, JPEG, pixelation, contrast, exposure) of two small
   scikit-image photos into engine/tests/data/classical/ as PNG, deterministically. PNG, so the
   Rust test decodes exactly the pixels Python scored (JPEG decoders differ by a grey level here
   and there); the JPEG ladder is compressed in memory and stored decoded.
2. Score those and the example photos (examples/photos/*.jpg) with the `brisque` 0.2.0 package.
3. Write {path relative to the repository root: score}.

Usage: .venv-ref/bin/python scripts/brisque_reference.py   (after make_example_photos.py)
"""

import glob
import io
import json
import os

import numpy as np
import skimage.data
from brisque import BRISQUE
from PIL import Image, ImageFilter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "engine", "tests", "data", "classical")
SEED = 7
# Long sides: one odd, so that OpenCV's round-half-to-even output size is exercised.
SOURCES = {"astronaut": 145, "coffee": 144}


def resized(name, long_side):
    img = Image.fromarray(getattr(skimage.data, name)())
    scale = long_side / max(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)


def to_image(arr):
    return Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8))


def jpeg(img, quality):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def pixelate(img, factor):
    small = img.resize((img.width // factor, img.height // factor), Image.BOX)
    return small.resize(img.size, Image.NEAREST)


def ladder(img, rng):
    arr = np.asarray(img, dtype=np.float64)
    yield "orig", img
    for sigma in (1, 2, 4):
        yield f"blur{sigma}", img.filter(ImageFilter.GaussianBlur(radius=sigma))
    for sigma in (4, 10, 25):
        yield f"noise{sigma}", to_image(arr + rng.normal(0.0, sigma, arr.shape))
    for quality in (40, 15, 5):
        yield f"jpeg{quality}", jpeg(img, quality)
    for factor in (2, 4):
        yield f"pixel{factor}", pixelate(img, factor)
    yield "contrast50", to_image((arr - arr.mean()) * 0.5 + arr.mean())
    yield "dark40", to_image(arr * 0.4)
    yield "bright180", to_image(arr * 1.8)


def main():
    os.makedirs(DATA, exist_ok=True)
    rng = np.random.default_rng(SEED)
    for name, long_side in SOURCES.items():
        for tag, img in ladder(resized(name, long_side), rng):
            img.save(os.path.join(DATA, f"{name}-{tag}.png"), optimize=True)
    files = sorted(glob.glob(os.path.join(DATA, "*.png"))) + sorted(
        glob.glob(os.path.join(ROOT, "examples", "photos", "*.jpg"))
    )
    brisque = BRISQUE(url=False)
    scores = {}
    for path in files:
        rgb = np.asarray(Image.open(path).convert("RGB"))
        scores[os.path.relpath(path, ROOT)] = float(brisque.score(rgb))
    out = os.path.join(DATA, "brisque_reference.json")
    with open(out, "w") as f:
        json.dump(scores, f, indent=1, sort_keys=True)
        f.write("\n")
    for k, v in sorted(scores.items()):
        print(f"{v:9.4f}  {k}")
    print(f"wrote {out}: {len(scores)} images")


if __name__ == "__main__":
    main()
