"""Write digits 0-9 with a pen, dark on light paper, as a phone photo or scan would show them: other sizes,
off-centre, slightly rotated, blurred, noisy, on tinted paper. For trying `smallvision predict`.

    .venv/bin/python scripts/make_scans.py OUT_DIR [--seed 0]
Writes OUT_DIR/<digit>_<variant>.png (and one .jpg per digit); the file name starts with the truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# Pen strokes of each digit in a unit box (x right, y down): ("line", x0, y0, x1, y1, ...) polylines
# and ("arc", cx, cy, rx, ry, start°, end°) elliptic arcs, drawn with a round pen.
STROKES: dict[int, list[tuple]] = {
    0: [("arc", 0.5, 0.5, 0.28, 0.42, 0, 360)],
    1: [("line", 0.42, 0.22, 0.55, 0.08, 0.55, 0.92)],
    2: [("arc", 0.5, 0.3, 0.26, 0.22, 180, 360), ("arc", 0.5, 0.3, 0.26, 0.22, 0, 40),
        ("line", 0.7, 0.44, 0.22, 0.9, 0.8, 0.9)],
    3: [("arc", 0.48, 0.3, 0.25, 0.21, 200, 450), ("arc", 0.48, 0.7, 0.28, 0.22, 270, 520)],
    4: [("line", 0.62, 0.92, 0.62, 0.08, 0.2, 0.65, 0.82, 0.65)],
    5: [("line", 0.75, 0.1, 0.32, 0.1, 0.28, 0.45), ("arc", 0.5, 0.66, 0.27, 0.25, 200, 500)],
    6: [("arc", 0.6, 0.45, 0.33, 0.42, 200, 280), ("arc", 0.5, 0.68, 0.24, 0.22, 0, 360)],
    7: [("line", 0.2, 0.1, 0.8, 0.1, 0.42, 0.92)],
    8: [("arc", 0.5, 0.28, 0.2, 0.18, 0, 360), ("arc", 0.5, 0.7, 0.25, 0.22, 0, 360)],
    9: [("arc", 0.5, 0.32, 0.24, 0.22, 0, 360), ("line", 0.73, 0.34, 0.62, 0.92)],
}


def _points(stroke: tuple, box: tuple[float, float, float], rng: np.random.Generator) -> list[tuple[float, float]]:
    x0, y0, s = box
    j = lambda v: v + rng.normal(0, 0.015)  # noqa: E731  a hand is never exact
    if stroke[0] == "line":
        c = stroke[1:]
        return [(x0 + j(c[i]) * s, y0 + j(c[i + 1]) * s) for i in range(0, len(c), 2)]
    _, cx, cy, rx, ry, a0, a1 = stroke
    ts = np.radians(np.linspace(a0, a1, 48))
    return [(x0 + (cx + rx * np.cos(t)) * s, y0 + (cy + ry * np.sin(t)) * s) for t in ts]


def draw_digit(d: int, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    w, h = size
    paper = tuple(int(v) for v in rng.integers(200, 250, 3))
    im = Image.new("RGB", (w, h), paper)
    draw = ImageDraw.Draw(im)
    ink = tuple(int(v) for v in rng.integers(10, 70, 3))
    s = min(w, h) * rng.uniform(0.45, 0.7)  # digit height
    x0, y0 = rng.uniform(0.05, 0.95) * (w - s), rng.uniform(0.05, 0.95) * (h - s)  # off-centre
    pen = max(2, int(s * rng.uniform(0.07, 0.11)))
    for stroke in STROKES[d]:
        pts = _points(stroke, (x0, y0, s), rng)
        draw.line(pts, fill=ink, width=pen, joint="curve")
        for px, py in (pts[0], pts[-1]):  # round pen ends
            draw.ellipse((px - pen / 2, py - pen / 2, px + pen / 2, py + pen / 2), fill=ink)
    im = im.rotate(float(rng.uniform(-10, 10)), resample=Image.BILINEAR, fillcolor=paper)
    im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.2))))
    a = np.asarray(im, dtype=np.float64) + rng.normal(0, 6, (h, w, 3))  # sensor / scanner noise
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def make(out: Path, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in range(10):
        for v, size in enumerate([(120, 90), (300, 300), (64, 96)]):
            p = out / f"{d}_{v}.png"
            draw_digit(d, size, rng).save(p)
            paths.append(p)
        p = out / f"{d}_photo.jpg"
        draw_digit(d, (480, 360), rng).save(p, quality=85)
        paths.append(p)
    return paths


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(f"wrote {len(make(a.out, a.seed))} images to {a.out}")
