"""`smallvision check PATH`: what is wrong with an image folder, before training on it."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from smallvision.data.folder import file_digest, index_folder
from smallvision.data.loader import IMBALANCE_FLAGS, IMBALANCED, imbalance_ratio

TINY, HUGE = 16, 4096  # pixels, shorter / longer side


def check_folder(path: str | Path) -> dict[str, Any]:
    """Every image is fully decoded: a JPEG cut off inside its data passes PIL's verify()."""
    from PIL import Image

    idx = index_folder(path)
    unreadable, tiny, huge = [], [], []
    digests: dict[str, list[tuple[str, str]]] = defaultdict(list)
    balance: dict[str, Counter] = {"train": Counter(), "test": Counter()}
    for split, items in (("train", idx.train), ("test", idx.test)):
        for p, ci in items:
            try:
                with Image.open(p) as im:
                    im.load()
                    w, h = im.size
            except Exception as e:  # any decoder failure makes the file unusable
                unreadable.append(f"{p}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                continue
            balance[split][idx.classes[ci]] += 1
            if min(w, h) < TINY:
                tiny.append(f"{p} ({w}×{h})")
            if max(w, h) > HUGE:
                huge.append(f"{p} ({w}×{h})")
            digests[file_digest(p)].append((split, str(p)))
    dup_across = [[f for _, f in group] for group in digests.values() if len({s for s, _ in group}) > 1]
    dup_within = [[f for _, f in group] for group in digests.values() if len(group) > 1 and len({s for s, _ in group}) == 1]
    counts = [balance["train"][c] for c in idx.classes]
    imbalance = imbalance_ratio(counts)
    warnings = [f"imbalanced classes: the largest training class has {imbalance:.1f}× the images of the smallest; "
                f"train with {IMBALANCE_FLAGS}"] if imbalance >= IMBALANCED else []
    problems = len(unreadable) + len(idx.ignored) + len(dup_across) + len(tiny) + len(huge)
    return {
        "root": str(idx.root), "layout": idx.layout, "classes": idx.classes,
        "balance": {s: {c: balance[s][c] for c in idx.classes} for s in balance},
        "imbalance_ratio": round(imbalance, 2), "unreadable": unreadable,
        "not_images": [str(p) for p in idx.ignored], "tiny": tiny, "huge": huge,
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
                (f"tiny images (< {TINY} px)", r["tiny"]), (f"huge images (> {HUGE} px)", r["huge"]),
                ("exact duplicates across train and test", [" = ".join(g) for g in r["duplicates_across_splits"]]),
                ("exact duplicates within a split", [" = ".join(g) for g in r["duplicates_within_split"]])]
    for title, items in sections:
        lines.append(f"{title}: {len(items)}")
        lines += [f"  {x}" for x in items[:50]] + ([f"  ... and {len(items) - 50} more"] if len(items) > 50 else [])
    lines.append("OK: no problems found" if r["problems"] == 0 else f"{r['problems']} problem(s) found")
    return "\n".join(lines)
