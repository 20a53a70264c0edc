"""Writes the image fixtures of engine/tests/data/images/: one good file per format and pixel
layout the decoder must handle, and the hostile files it must refuse with a clear reason.

Run from the repo root with a Python that has Pillow and NumPy:
    python scripts/make_test_images.py
The output is committed; re-running it rewrites the same files.
"""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path("engine/tests/data/images")
GOOD, BAD = OUT / "good", OUT / "bad"


def scene(w=96, h=64):
    """A small gradient with a bright square, so orientation and colour are checkable."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 90)], -1).astype(np.uint8)
    rgb[4:20, 4:20] = (250, 250, 250)  # marks the top-left corner
    return Image.fromarray(rgb, "RGB")


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png(side=60000):
    """A valid PNG header claiming side x side pixels (10+ GB decoded) with a tiny body."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def main():
    GOOD.mkdir(parents=True, exist_ok=True)
    BAD.mkdir(parents=True, exist_ok=True)
    img = scene()
    img.save(GOOD / "rgb.jpg", quality=92)
    img.save(GOOD / "rgb.png")
    img.save(GOOD / "rgb.webp", lossless=True)
    img.save(GOOD / "rgb.tiff")
    img.save(GOOD / "rgb.bmp")
    img.convert("P", palette=Image.ADAPTIVE, colors=64).save(GOOD / "palette.gif")
    img.convert("P", palette=Image.ADAPTIVE, colors=64).save(GOOD / "palette.png")
    img.convert("L").save(GOOD / "gray.png")
    gray16 = (np.asarray(img.convert("L"), dtype=np.uint16) * 257).astype(">u2")
    Image.frombytes("I;16B", img.size, gray16.tobytes()).save(GOOD / "gray16.png")
    img.convert("CMYK").save(GOOD / "cmyk.jpg", quality=92)
    rgba = img.convert("RGBA")
    alpha = np.asarray(rgba).copy()
    alpha[:, :, 3] = 0  # fully transparent: must come out as the background colour
    alpha[:, : img.width // 2, 3] = 255
    Image.fromarray(alpha, "RGBA").save(GOOD / "alpha.png")
    # EXIF orientation 6 = rotate 90 degrees clockwise to display; stored 96x64, shown 64x96.
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(GOOD / "exif-rotate90.jpg", quality=92, exif=exif.tobytes())

    jpeg = (GOOD / "rgb.jpg").read_bytes()
    (BAD / "empty.jpg").write_bytes(b"")
    (BAD / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    png = (GOOD / "rgb.png").read_bytes()
    (BAD / "truncated.png").write_bytes(png[: len(png) // 2])
    corrupt = bytearray(png)
    for i in range(60, len(corrupt) - 20):
        corrupt[i] ^= 0x5A
    (BAD / "corrupt.png").write_bytes(bytes(corrupt))
    (BAD / "notes.txt").write_bytes(b"this is not an image\n")
    (BAD / "bomb.png").write_bytes(bomb_png())


if __name__ == "__main__":
    main()
