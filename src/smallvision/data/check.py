"""`smallvision check PATH`: what is wrong with an image folder, before training on it."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from smallvision.data import formats
from smallvision.data.folder import file_digest, index_folder
from smallvision.data.loader import IMBALANCE_FLAGS, IMBALANCED, imbalance_ratio

TINY = 16  # pixels, shorter side
# width × height: Pillow's own decompression-bomb threshold (89.5 M; it warns above it and refuses
# files above twice it). Phone photos (12-48 MP: 8000 × 6000 is 48 M) are never "huge".
HUGE_PIXELS = 89_478_485


def check_folder(path: str | Path) -> dict[str, Any]:
    """Every image is fully decoded: a JPEG cut off inside its data passes PIL's verify(). JPEGs
    are decoded at 1/8 scale (libjpeg still reads every byte of their data, so a cut-off file
    is still found), other formats whole."""
    from PIL import Image

    formats.register()
    idx = index_folder(path, strict=False)
    unreadable, tiny, huge = [], [], []
    digests: dict[str, list[tuple[str, str]]] = defaultdict(list)
    balance: dict[str, Counter] = {"train": Counter(), "test": Counter()}
    for split, items in (("train", idx.train), ("test", idx.test)):
        for p, ci in items:
            try:
                with Image.open(p) as im:
                    w, h = im.size  # from the header, before the reduced decode
                    im.draft(None, (64, 64))
                    im.load()
            except Exception as e:  # any decoder failure makes the file unusable
                unreadable.append(f"{p}: {formats.failure_reason(p, e).removeprefix(formats.UNREADABLE + ': ')}")
                continue
            balance[split][idx.classes[ci]] += 1
            if min(w, h) < TINY:
                tiny.append(f"{p} ({w}×{h})")
            if w * h > HUGE_PIXELS:
                huge.append(f"{p} ({w}×{h}, {w * h / 1e6:.0f} MP)")
            digests[file_digest(p)].append((split, str(p)))
    dup_across = [[f for _, f in group] for group in digests.values() if len({s for s, _ in group}) > 1]
    dup_within = [[f for _, f in group] for group in digests.values() if len(group) > 1 and len({s for s, _ in group}) == 1]
    counts = [balance["train"][c] for c in idx.classes]
    imbalance = imbalance_ratio(counts)
    warnings = [f"imbalanced classes: the largest training class has {imbalance:.1f}× the images of the smallest; "
                f"train with {IMBALANCE_FLAGS}"] if imbalance >= IMBALANCED else []
    problems = len(unreadable) + len(idx.ignored) + len(idx.no_reader) + len(dup_across) + len(tiny) + len(huge)
    return {
        "root": str(idx.root), "layout": idx.layout, "classes": idx.classes,
        "balance": {s: {c: balance[s][c] for c in idx.classes} for s in balance},
        "imbalance_ratio": round(imbalance, 2), "unreadable": unreadable,
        "not_images": [str(p) for p in idx.ignored],
        "no_reader": [f"{p}: {formats.missing_reader(p)}" for p in idx.no_reader], "tiny": tiny, "huge": huge,
        "duplicates_across_splits": dup_across, "duplicates_within_split": dup_within, "problems": problems,
        "warnings": warnings,
    }


def format_report(r: dict[str, Any]) -> str:
    lines = [f"{r['root']}: {r['layout']}, {len(r['classes'])} classes"]
    lines.append(f"{'class':<24}{'train':>8}{'test':>8}")
    for c in r["classes"]:
        lines.append(f"{c:<24}{r['balance']['train'][c]:>8}{r['balance']['test'][c]:>8}")
    lines.append(f"class imbalance (largest/smallest train class): {r['imbalance_ratio']}")
    lines += [f"warning: {w}" for w in r.get("warnings", [])]
    sections = [("unreadable or truncated images", r["unreadable"]), ("files that are not images", r["not_images"]),
                ("images whose reader is not installed", r.get("no_reader", [])),
                (f"tiny images (< {TINY} px)", r["tiny"]),
                (f"huge images (> {HUGE_PIXELS / 1e6:.0f} MP, Pillow's decompression-bomb limit)", r["huge"]),
                ("exact duplicates across train and test", [" = ".join(g) for g in r["duplicates_across_splits"]]),
                ("exact duplicates within a split", [" = ".join(g) for g in r["duplicates_within_split"]])]
    for title, items in sections:
        lines.append(f"{title}: {len(items)}")
        lines += [f"  {x}" for x in items[:50]] + ([f"  ... and {len(items) - 50} more"] if len(items) > 50 else [])
    lines.append("OK: no problems found" if r["problems"] == 0 else f"{r['problems']} problem(s) found")
    return "\n".join(lines)
