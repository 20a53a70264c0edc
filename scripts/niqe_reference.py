#!/usr/bin/env python3
"""Write the NIQE parity reference: engine/tests/data/classical/niqe_reference.json.

Runs scikit-video's own `skvideo.measure.niqe` on the example photos (examples/photos/*.jpg) and
on two 200-pixel PNGs it writes to engine/tests/data/classical/ (astronaut, sharp and blurred), on
which both sides see the same pixels (JPEG decoders differ by a grey level here and there).
Its code predates current numpy and scipy, so two removed names are restored first, both with
their historical behaviour:
  - `np.int` (removed in numpy 1.24) is the builtin `int`;
  - `scipy.misc.imresize(arr, 0.5, interp='bicubic', mode='F')` (removed in scipy 1.3) was
    `PIL.Image.fromarray(arr, 'F').resize((w // 2, h // 2), BICUBIC)`.
Luminance is `skvideo.utils.rgb2gray` (0.2989 R + 0.5870 G + 0.1140 B), as skvideo's docs ask.

Usage: .venv-ref/bin/python scripts/niqe_reference.py
"""

import glob
import json
import os

import numpy as np
import scipy.misc
import skimage.data
from PIL import Image, ImageFilter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "engine", "tests", "data", "classical")
OUT = os.path.join(DATA, "niqe_reference.json")


def write_pngs():
    """A 200x200 centre crop of astronaut at half size, and the same blurred."""
    img = Image.fromarray(skimage.data.astronaut()).resize((256, 256), Image.LANCZOS)
    img = img.crop((28, 28, 228, 228))
    img.save(os.path.join(DATA, "niqe-astronaut.png"), optimize=True)
    img.filter(ImageFilter.GaussianBlur(radius=2)).save(os.path.join(DATA, "niqe-astronaut-blur.png"), optimize=True)


def imresize(arr, size, interp="bicubic", mode=None):
    assert size == 0.5 and interp == "bicubic" and mode == "F"
    img = Image.fromarray(np.asarray(arr, dtype=np.float32), mode="F")
    w, h = img.size
    return np.asarray(img.resize((int(w * size), int(h * size)), Image.BICUBIC))


np.int = int
scipy.misc.imresize = imresize

import skvideo.measure  # noqa: E402  (after the shims it needs)
import skvideo.utils  # noqa: E402


def main():
    write_pngs()
    scores = {}
    paths = sorted(glob.glob(os.path.join(DATA, "niqe-*.png")))
    paths += sorted(glob.glob(os.path.join(ROOT, "examples", "photos", "*.jpg")))
    for path in paths:
        rgb = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
        luma = skvideo.utils.rgb2gray(rgb)
        scores[os.path.relpath(path, ROOT)] = float(skvideo.measure.niqe(luma)[0])
    with open(OUT, "w") as f:
        json.dump(scores, f, indent=1, sort_keys=True)
        f.write("\n")
    for k, v in scores.items():
        print(f"{v:9.4f}  {k}")
    print(f"wrote {OUT}: {len(scores)} images")


if __name__ == "__main__":
    main()
