"""Assemble a two-class folder of real photographs, offline: crops of scikit-learn's two bundled
photos (a temple in China, a flower), each crop at its own place, scale, aspect, mirror, rotation,
brightness and JPEG quality, saved at 96-360 px. Class folders `temple/` and `flower/`.

    .venv/bin/python scripts/make_photo_folder.py OUT_DIR [--per-class 60] [--seed 0]

A stand-in for users' photos in tests and demos (real camera pixels, varied views, JPEG files of
several sizes); it is far easier than cats vs dogs: two scenes, not two species.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance


def make(out: str | Path, per_class: int = 60, seed: int = 0) -> Path:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(seed)
    out = Path(out)
    photos = load_sample_images()
    for name, arr in zip(("temple", "flower"), photos.images, strict=True):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        im = Image.fromarray(arr)
        w, h = im.size
        for i in range(per_class):
            side = int(rng.uniform(0.3, 0.8) * min(w, h))
            aspect = rng.uniform(0.75, 1.33)
            cw, ch = min(w, int(side * aspect)), side
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            crop = im.crop((x0, y0, x0 + cw, y0 + ch)).rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR,
                                                              expand=False)
            if rng.random() < 0.5:
                crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            crop = ImageEnhance.Brightness(crop).enhance(float(rng.uniform(0.7, 1.3)))
            target = int(rng.integers(96, 361))
            crop = crop.resize((target, max(8, int(target * ch / cw))), Image.BILINEAR)
            crop.save(folder / f"{name}_{i:03d}.jpg", quality=int(rng.integers(60, 95)))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(make(a.out, a.per_class, a.seed))
