"""Decoding 24-MP phone-sized JPEGs to the working size: photos/s with and without JPEG draft mode
(libjpeg's DCT scaling, data/folder.py: open_image(path, channels, size)), in one process and in
two, and through the folder loader itself (decode_all: DataLoader worker processes).

    .venv/bin/python benchmarks/decode_speed.py --out benchmarks/results/decode-speed.md

The photos are made here (tests/fixtures/make_phone_folder.py: photo_like): 6000 × 4000 smooth
gradients, a mid-frequency pattern and luminance noise, saved at JPEG quality 90 (about 6.5 MB each,
as a 24-MP phone JPEG is); `--unique` distinct ones, copied to `--count` files. Each row decodes all
of them, resizes the shorter side to `--size` and centre-crops (the folder loader's work per photo).
With draft mode the time is that of reading the file's entropy-coded data, so it grows with the
file's size in bytes, not its pixels.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures"))

from _common import cpu_name, emit  # noqa: E402
from make_phone_folder import photo_like  # noqa: E402

from smallvision.data.folder import decode_all, open_image, resize_center_crop  # noqa: E402

SIZE = 224


def _full(path: str) -> np.ndarray:
    return np.asarray(resize_center_crop(open_image(Path(path), 3), SIZE))


def _draft(path: str) -> np.ndarray:
    return np.asarray(resize_center_crop(open_image(Path(path), 3, SIZE), SIZE))


def _machine_busy() -> float:
    """CPU-seconds every process on the machine has used (Linux /proc/stat; 0 elsewhere)."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return 0.0
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _rate(fn, paths: list[str], processes: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(photos/s of wall-clock time, photos per CPU-second: what one idle core would do)."""
    if processes == 1:
        fn(paths[0])  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for p in paths:
            fn(p)
        return len(paths) / (time.perf_counter() - t0), len(paths) / (time.process_time() - c0)
    c0 = _children_cpu()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        pool.map(fn, paths[:processes], chunksize=1)  # the workers start before the clock
        t0 = time.perf_counter()
        pool.map(fn, paths, chunksize=1)
        wall = time.perf_counter() - t0
        pool.close()
        pool.join()
    return len(paths) / wall, (len(paths) + processes) / (_children_cpu() - c0)


def main() -> None:
    global SIZE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=64, help="photos decoded per draft-mode row")
    ap.add_argument("--count-full", type=int, default=16, help="photos decoded per full-decode row")
    ap.add_argument("--unique", type=int, default=4, help="distinct photos made (the rest are copies)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--noise", type=float, default=6.0, help="luminance noise (σ, 0-255 levels): sets the file size")
    ap.add_argument("--heic", type=int, default=8, help="12-MP HEIC files decoded per HEIC row (0: no HEIC rows)")
    ap.add_argument("--out")
    a = ap.parse_args()
    SIZE = a.size
    tmp = Path(tempfile.mkdtemp(prefix="decode-speed-"))
    busy0, wall0, own0 = _machine_busy(), time.perf_counter(), time.process_time() + _children_cpu()
    try:
        made = []
        for i in range(a.unique):
            made.append(tmp / f"u{i}.jpg")
            photo_like(6000, 4000, seed=i, noise=a.noise).save(made[-1], quality=90)
        paths = []
        for i in range(a.count):
            paths.append(str(tmp / f"p{i:03d}.jpg"))
            shutil.copy(made[i % a.unique], paths[-1])
        mb = np.mean([p.stat().st_size for p in made]) / 1e6
        diff = np.mean([np.abs(_draft(str(p)).astype(float) - _full(str(p)).astype(float)).mean() for p in made])
        rows = [("full decode, then resize", 1, _rate(_full, paths[: a.count_full], 1)),
                ("full decode, then resize", 2, _rate(_full, paths[: a.count_full], 2)),
                ("draft mode (1/8 scale), then resize", 1, _rate(_draft, paths, 1)),
                ("draft mode (1/8 scale), then resize", 2, _rate(_draft, paths, 2))]
        t0, c0 = time.perf_counter(), _children_cpu()
        x, _, skipped = decode_all([(Path(p), 0) for p in paths], 3, SIZE, workers=2)
        assert len(x) == len(paths) and not skipped
        rows.append(("folder loader: decode_all, workers=2 (draft mode)", 2,
                     (len(paths) / (time.perf_counter() - t0), len(paths) / (_children_cpu() - c0))))
        heic_mb = 0.0
        if a.heic:  # an iPhone's 12-MP HEIC: HEVC has no reduced decode, every pixel is decoded
            from smallvision.data import formats

            formats.register()
            heics = []
            for i in range(2):
                heics.append(tmp / f"h{i}.heic")
                photo_like(4032, 3024, seed=i, noise=2.0).save(heics[-1], quality=75, enc_params={"preset": "ultrafast"})
            heic_mb = np.mean([p.stat().st_size for p in heics]) / 1e6
            hpaths = [str(heics[i % 2]) for i in range(a.heic)]
            rows += [("12-MP HEIC (4032 × 3024), decoded whole, then resize", n, _rate(_draft, hpaths, n)) for n in (1, 2)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wall = time.perf_counter() - wall0
    others = max(0.0, _machine_busy() - busy0 - (time.process_time() + _children_cpu() - own0))
    lines = [f"Command: `.venv/bin/python benchmarks/decode_speed.py{' --out ' + a.out if a.out else ''}`", "",
             f"Decoding {a.count} JPEGs ({a.count_full} without draft mode) of 6000 × 4000 (24 MP, quality 90, {mb:.1f} MB each, photo-like: "
             f"gradients + pattern + noise σ {a.noise:g}) to {SIZE} × {SIZE} (shorter side resized, centre crop); "
             f"{cpu_name()}, {multiprocessing.cpu_count()} cores.", "",
             "| decode | processes | photos/s | photos per CPU-second |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {n} | {r:.1f} | {c:.1f} |" for name, n, (r, c) in rows]
    lines += ["", f"Draft mode against the full decode, the same {SIZE} × {SIZE} crops: mean absolute difference "
              f"{diff:.2f} levels of 255 (bilinear resize from 750 × 500 instead of 6000 × 4000). "
              "photos/s is wall-clock time; photos per CPU-second (the decoding processes' user + system time) is "
             "what one core does when nothing else runs, so two idle cores do about twice it. "
             "The folder loader's row includes its two worker processes' start."
             + (f" HEIC rows: {a.heic} files of {heic_mb:.1f} MB (libheif's HEVC decoder, pillow-heif)." if a.heic else "")
             + f" Other processes used {others:.0f} CPU-seconds during this {wall:.0f}-second run "
             f"({100 * others / (wall * multiprocessing.cpu_count()):.0f} % of the machine)."]
    emit(lines, a.out)


if __name__ == "__main__":
    main()
