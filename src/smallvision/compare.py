"""Compare runs: train recipes over several seeds (or read finished run folders), then a table
of mean ± std per group and an overlay of their validation curves.

Runs are grouped by recipe (or data set/model when they have none), so three seeds of one
recipe make one row.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from smallvision.errors import UsageError
from smallvision.io import atomic_write_text, write_json
from smallvision.runfolder import RunFolder


@dataclass
class RunRecord:
    group: str
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def read_run(run_dir: str | Path) -> RunRecord:
    p = Path(run_dir)
    try:
        summary = json.loads((p / RunFolder.SUMMARY).read_text())
        history = json.loads((p / RunFolder.METRICS_JSON).read_text()) if (p / RunFolder.METRICS_JSON).exists() else []
    except FileNotFoundError:
        raise UsageError(f"{p}: not a finished run folder (no summary.json)") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{p}: unreadable run files ({e})") from None
    return RunRecord(summary.get("recipe") or f"{summary['dataset']}/{summary['model']}", summary, history)


def _ms(vals: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def summarize(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(r.group, []).append(r)
    rows = []
    for name, rs in groups.items():
        acc = [r.summary["test_accuracy"] for r in rs]
        loss = [r.summary["test_loss"] for r in rs]
        am, asd = _ms(acc)
        lm, lsd = _ms(loss)
        rows.append({
            "name": name, "runs": len(rs), "test_accuracy_mean": round(am, 3), "test_accuracy_std": round(asd, 3),
            "test_accuracy_min": round(min(acc), 3), "test_loss_mean": round(lm, 4), "test_loss_std": round(lsd, 4),
            "params": rs[0].summary.get("params"),
            "train_seconds_median": round(statistics.median(r.summary["train_seconds"] for r in rs), 2),
            "images_per_second_median": round(statistics.median(r.summary["images_per_second"] for r in rs)),
        })
    return rows


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    out = ["| run | n | test accuracy % (mean ± std) | min | test loss (mean ± std) | params | train s (median) | images/s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['name']} | {r['runs']} | {r['test_accuracy_mean']:.2f} ± {r['test_accuracy_std']:.2f} | "
                   f"{r['test_accuracy_min']:.2f} | {r['test_loss_mean']:.4f} ± {r['test_loss_std']:.4f} | "
                   f"{r['params']:,} | {r['train_seconds_median']:.1f} | {r['images_per_second_median']:,} |")
    return "\n".join(out)


def plot_overlay(records: Sequence[RunRecord], path: Path) -> None:
    """Mean validation accuracy and loss per epoch for each group (test or train when there is no validation)."""
    from smallvision.report.plots import _plt, _save

    plt = _plt()
    fig, (ax_a, ax_l) = plt.subplots(1, 2, figsize=(11, 4.2))
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(r.group, []).append(r)
    for name, rs in groups.items():
        hist = rs[0].history
        if not hist:
            continue
        split = next((s for s in ("val", "test", "train") if hist[0].get(f"{s}_accuracy") is not None), "train")
        epochs = [h["epoch"] for h in hist]
        for ax, key in ((ax_a, "accuracy"), (ax_l, "loss")):
            per_run = [[h.get(f"{split}_{key}") for h in r.history[: len(epochs)]] for r in rs]
            mean = [statistics.fmean(v[i] for v in per_run if i < len(v) and v[i] is not None) for i in range(len(epochs))]
            ax.plot(epochs, mean, "-o", ms=3, label=f"{name} ({split}, n={len(rs)})")
    for ax, label in ((ax_a, "accuracy (%)"), (ax_l, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    ax_a.set_title("validation accuracy (mean over seeds)")
    ax_l.set_title("validation loss (mean over seeds)")
    fig.tight_layout()
    _save(fig, path)


def compare(recipes: Sequence[str] = (), runs: Sequence[str | Path] = (), seeds: int = 1, runs_dir: str | Path = "runs",
            out: str | Path | None = None, overrides: dict[str, Any] | None = None,
            log: Any = None) -> tuple[list[dict[str, Any]], Path]:
    """Train each recipe with `seeds` seeds (0..seeds-1 added to the recipe's seed) and/or read run
    folders; write compare.{md,json,png} into `out`. Returns (table rows, out folder)."""
    from smallvision import api
    from smallvision.recipes import recipe_config

    if not recipes and not runs:
        raise UsageError("compare needs --recipes a,b,... or run folders")
    if seeds < 1:
        raise UsageError(f"--seeds must be ≥ 1, got {seeds}")
    cfgs = [(name, recipe_config(name)) for name in recipes]  # all names checked before any training
    records = [read_run(r) for r in runs]
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    out_dir = Path(out) if out else Path(runs_dir) / f"compare-{stamp}"
    for name, cfg in cfgs:
        for i in range(seeds):
            res = api.train(name, runs_dir=out_dir / "runs", **{**(overrides or {}), "seed": cfg.seed + i,
                                                                   "name": f"{name}-seed{cfg.seed + i}"})
            if log:
                log(f"{name} seed {cfg.seed + i}: test {res.summary['test_accuracy']:.2f}% "
                    f"in {res.summary['train_seconds']:.1f}s")
            records.append(RunRecord(name, res.summary, res.history))
    rows = summarize(records)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    plot_overlay(records, out_dir / "compare.png")
    write_json(out_dir / "compare.json", {"rows": rows, "runs": [r.summary for r in records],
                                          "seeds": seeds, "overrides": overrides or {}})
    atomic_write_text(out_dir / "compare.md", f"# Comparison\n\n{table}\n\n![validation curves](compare.png)\n")
    return rows, out_dir
