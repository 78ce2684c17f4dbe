"""Seconds per epoch of a frozen-backbone fine-tune, with and without cached features (seed 002 §8).

    .venv/bin/python benchmarks/cache_features.py [--model resnet18] [--images 2000] [--size 64] [--epochs 3]

Same data (synthetic colour images, so it runs offline), same frozen backbone and head, same
optimiser; one run feeds every batch through the backbone every epoch, the other runs the
backbone once and trains the head on the stored features. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile

from smallvision import api


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    spec = f"fake:3x{a.size}x{a.size},classes=10,train={a.images},test=500"
    rows = []
    with tempfile.TemporaryDirectory() as runs:
        for cached in (False, True):
            r = api.train(runs_dir=runs, dataset=spec, model=a.model, freeze=True, cache_features=cached,
                          epochs=a.epochs, batch_size=64, optimizer="sgd", lr=0.01, momentum=0.9, val_size=0.1,
                          report=False)
            s = r.summary
            cache = s.get("feature_cache_seconds", 0.0)  # measured apart from the training loop's clock
            rows.append((cached, s["train_seconds"] + cache, cache, s["train_seconds"] / s["epochs_run"],
                         s["test_accuracy"]))
    base = rows[0][3]
    print(f"{a.model} frozen, {a.images} images {a.size}×{a.size}, {a.epochs} epochs, batch 64\n")
    print("| features | train s (total) | of which caching s | s per epoch | speed-up per epoch | test acc % |")
    print("|---|---:|---:|---:|---:|---:|")
    for cached, total, cache, per, acc in rows:
        print(f"| {'cached once' if cached else 'recomputed every batch'} | {total:.1f} | {cache:.1f} | {per:.2f} | "
              f"{base / per:.0f}× | {acc:.2f} |")


if __name__ == "__main__":
    main()
