"""Write a run's report: report.{html,md,json} and the PNGs they show.

The HTML page is self-contained (images embedded as base64) so it opens offline and can be
mailed around. Everything shown is computed from the model's predictions on the split named.
"""

from __future__ import annotations

import base64
import html
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import smallvision.report.plots as plots
from smallvision.data.info import DatasetInfo
from smallvision.io import atomic_write_text, write_json
from smallvision.report.metrics import ClassificationMetrics
from smallvision.runfolder import RunFolder


def environment(device: str = "cpu") -> dict[str, Any]:
    import torchvision

    from smallvision._version import __version__

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    env = {"smallvision": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
           "python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": device}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def render(out_dir: Path, title: str, head_rows: Sequence[dict[str, Any]], figures: Sequence[tuple[str, str]],
           tables: Sequence[tuple[str, Sequence[dict[str, Any]]]], env: dict[str, Any], command: str) -> None:
    """report.md and a self-contained report.html: a head table, figures (PNG/GIF files in `out_dir`,
    embedded), titled tables, the environment and the command that reproduces the run."""
    env_rows = [{"item": k, "value": str(v)} for k, v in env.items()]
    tables = [*tables, ("Environment", env_rows)]
    md = [f"# {title}", "", _table(head_rows, True), ""]
    for f, cap in figures:
        md += [f"## {cap}", "", f"![{cap}]({f})", ""]
    for heading, rows in tables:
        md += [f"## {heading}", "", _table(rows, True) or "none", ""]
    if command:
        md += ["## Reproduce", "", "```", command, "```", ""]
    atomic_write_text(out_dir / RunFolder.REPORT_MD, "\n".join(md))
    css = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
           "text-align:left;font-size:14px}th{background:#f0f0f0}img{max-width:100%;height:auto;display:block}"
           "pre{background:#f6f6f6;padding:8px;overflow-x:auto;white-space:pre-wrap}h2{margin-top:1.6em}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>", _table(head_rows, False)]
    for f, cap in figures:
        parts.append(f"<h2>{html.escape(cap)}</h2>{_img_tag(out_dir / f, cap)}")
    for heading, rows in tables:
        parts.append(f"<h2>{html.escape(heading)}</h2>" + (_table(rows, False) or "<p>none</p>"))
    if command:
        parts.append(f"<h2>Reproduce</h2><pre>{html.escape(command)}</pre>")
    parts.append("</body></html>")
    atomic_write_text(out_dir / RunFolder.REPORT, "\n".join(parts))


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    kind = "gif" if path.suffix == ".gif" else "png"
    return f'<img alt="{html.escape(alt)}" src="data:image/{kind};base64,{data}">'


def _table(rows: Sequence[dict[str, Any]], md: bool) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)  # noqa: E731
    if md:
        out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        out += ["| " + " | ".join(fmt(r[k]) for k in keys) + " |" for r in rows]
        return "\n".join(out)
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r[k]))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class RunRecord:
    """What a run's report says besides its own figures, the same for every kind of report."""

    split: str  # the evaluated split
    summary: dict[str, Any]
    history: Sequence[dict[str, Any]] = ()
    config: dict[str, Any] | None = None
    command: str = ""  # the command that reproduces the run (engine.trainer.reproduce_command), shown and saved
    device: str = "cpu"
    labels: Sequence[str] | None = None  # per-image names (file paths for image folders)
    skipped: Sequence[str] = ()  # unreadable files left out of the data


def write_report(
    out_dir: Path,
    record: RunRecord,
    *,
    title: str,
    info: DatasetInfo,
    metrics: ClassificationMetrics,
    images: torch.Tensor,  # the evaluated split, normalised as the model saw it (N, C, H, W)
    calibration: dict[str, Any] | None = None,  # trainer.calibrate's figures and reliability bins
    heatmap_fn: Any = None,  # (images (B, C, H, W), predicted (B,)) -> (B, H, W) maps in [0, 1]: explain.heatmaps
    train_counts: Sequence[int] | None = None,  # training images per class (imbalance is read off them)
) -> dict[str, Any]:
    split, summary, history, labels, skipped = record.split, record.summary, record.history, record.labels, record.skipped
    config, command, device = record.config, record.command, record.device
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(info.class_names) or [str(i) for i in range(metrics.confusion.shape[0])]
    mean = torch.tensor(info.mean).view(-1, 1, 1)
    std = torch.tensor(info.std).view(-1, 1, 1)
    show = lambda i: (images[i].detach().float().cpu() * std + mean)  # noqa: E731  back to 0-1 pixels

    figures: list[tuple[str, str]] = []
    if history:
        plots.plot_curves(history, out_dir / RunFolder.CURVES, title)
        figures.append((RunFolder.CURVES, "Loss and accuracy per epoch (learning rate dashed, right axis)"))
    plots.plot_confusion(metrics.confusion, names, out_dir / RunFolder.CONFUSION)
    figures.append((RunFolder.CONFUSION, f"Confusion matrix on the {split} split"))
    wrong = [t for t in metrics.top_losses if t[2] != t[3]] or metrics.top_losses
    if wrong:
        titles = [f"{names[p]} ({pp:.2f}) / {names[t]}" for _, _, t, p, pp in wrong]
        if labels is not None:
            titles = [f"{tt}\n{Path(labels[i]).name}" for tt, (i, *_rest) in zip(titles, wrong, strict=True)]
        colours = ["#b00020" if t != p else "black" for _, _, t, p, _ in wrong]
        maps = None
        if heatmap_fn is not None:
            idx = torch.tensor([i for i, *_ in wrong])
            try:
                maps = heatmap_fn(images[idx], torch.tensor([p for _, _, _, p, _ in wrong], device=images.device))
            except Exception as e:  # a model the attribution cannot hook: the grid without its heatmaps
                import warnings

                warnings.warn(f"report: no heatmaps for the top losses ({type(e).__name__}: {e})", stacklevel=2)
        if maps is not None:
            plots.plot_explained_grid([show(i) for i, *_ in wrong], list(maps.cpu()), titles, out_dir / RunFolder.TOP_LOSSES,
                                      suptitle=f"Highest-loss {split} images, titled predicted (probability) / true; "
                                               "under each, where the model looked for its prediction",
                                      title_colors=colours)
        else:
            plots.plot_image_grid([show(i) for i, *_ in wrong], titles, out_dir / RunFolder.TOP_LOSSES,
                                  suptitle=f"Highest-loss {split} images, titled predicted (probability) / true",
                                  title_colors=colours)
        figures.append((RunFolder.TOP_LOSSES, "Top losses: predicted (probability) / true" +
                        (", with a heatmap of the predicted class under each (Grad-CAM; occlusion for inputs ≤ 32 px)"
                         if maps is not None else "")))

    calib_rows: list[dict[str, Any]] = []
    if calibration:
        before, after = calibration["reliability"]
        plots.plot_reliability(before, after, out_dir / RunFolder.RELIABILITY,
                               f"{split} split, temperature T = {calibration['temperature']:.3f} fitted on validation")
        figures.append((RunFolder.RELIABILITY, "Reliability: accuracy per confidence bin, before and after "
                                               "temperature scaling (the report's probabilities are the calibrated ones)"))
        for sp in ("val", "test"):
            if f"{sp}_ece_before" in calibration:
                calib_rows.append({"split": sp, **{f"{k} {w}": f"{100 * calibration[f'{sp}_{k}_{w}']:.2f} %"
                                                   for k in ("ece", "mce") for w in ("before", "after")},
                                   "nll before": f"{calibration[f'{sp}_nll_before']:.4f}",
                                   "nll after": f"{calibration[f'{sp}_nll_after']:.4f}"})
    per_class = metrics.per_class_rows(names)
    if train_counts is not None:
        for row, c in zip(per_class, train_counts, strict=True):
            row["train images"] = int(c)
    confused = [{"true": names[t], "predicted": names[p], "count": c} for t, p, c in metrics.most_confused]
    cfg = config or {}
    env = environment(device)
    doc = {
        "title": title, "split": split, "summary": summary,
        "metrics": {"accuracy": round(metrics.accuracy, 4), "loss": round(metrics.loss, 6), "images": metrics.n},
        "per_class": per_class, "most_confused": confused,
        "confusion_matrix": metrics.confusion.tolist(), "class_names": names,
        "top_losses": [{"index": i, "loss": round(lo, 4), "true": names[t], "predicted": names[p],
                        "probability": round(pp, 4), **({"file": labels[i]} if labels is not None else {})}
                       for i, lo, t, p, pp in metrics.top_losses],
        "history": list(history), "environment": env, "config": cfg, "reproduce": command,
        "figures": [f for f, _ in figures], "skipped_files": list(skipped),
        "calibration": {k: v for k, v in (calibration or {}).items() if k != "reliability"} or None,
    }
    write_json(out_dir / RunFolder.REPORT_JSON, doc)

    head_rows = [{"metric": f"{split} accuracy", "value": f"{metrics.accuracy:.2f} %"},
                 {"metric": f"{split} loss", "value": f"{metrics.loss:.4f}"},
                 {"metric": f"{split} images", "value": str(metrics.n)}]
    for key in ("model", "weights", "params", "dataset", "epochs_run", "best_epoch", "train_seconds", "images_per_second",
                "feature_cache_seconds", "stopped"):
        if summary.get(key) is not None:
            head_rows.append({"metric": key.replace("_", " "), "value": str(summary[key])})
    if isinstance(summary.get("ood"), dict):  # "none of these": what the threshold does on this split
        o = summary["ood"]
        from smallvision.ood import describe

        head_rows.append({"metric": "none of these", "value": (
            f"accepts {o['test_accepted_percent']:.1f} % of the test images ({o['test_accuracy_accepted']}% right "
            f"among them); {describe(o)}")})
    if isinstance(summary.get("calibration"), dict) and "skipped" in summary["calibration"]:
        head_rows.append({"metric": "calibration", "value": f"none: {summary['calibration']['skipped']}"})
    elif not calibration and split == "test" and history and all(h.get("val_loss") is None for h in history):
        head_rows.append({"metric": "calibration", "value": "none: no validation split (--val-size 0.05 gives one)"})
    if train_counts is not None and len(train_counts) > 1:
        from smallvision.data.loader import IMBALANCE_FLAGS, IMBALANCED, imbalance_ratio

        ratio = imbalance_ratio(train_counts)
        lo, hi = min(range(len(names)), key=lambda i: train_counts[i]), max(range(len(names)), key=lambda i: train_counts[i])
        value = f"{ratio:.1f}× (largest {names[hi]}: {train_counts[hi]}, smallest {names[lo]}: {train_counts[lo]})"
        balanced = cfg.get("class_weights", "none") != "none" or cfg.get("sampler", "shuffle") != "shuffle"
        if ratio >= IMBALANCED:
            value += (f"; trained with class_weights={cfg.get('class_weights')}, sampler={cfg.get('sampler')}"
                      if balanced else f"; imbalanced: see the rare classes' recall below, and try {IMBALANCE_FLAGS}")
        head_rows.append({"metric": "class balance (train)", "value": value})
    tables = [("Per-class precision / recall / F1" + (" (test) and training images" if train_counts is not None else ""),
               per_class), ("Most confused pairs", confused)]
    if calib_rows:
        tables.insert(0, (f"Calibration (temperature {calibration['temperature']:.3f}, fitted on "  # type: ignore[index]
                          f"{calibration['val_images']} validation images)", calib_rows))  # type: ignore[index]
    if skipped:
        tables.append(skipped_table(skipped))
    tables += settings_tables(cfg, history)
    render(out_dir, title, head_rows, figures, tables, env, command)
    return doc


def settings_tables(cfg: dict[str, Any], history: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """"Why these settings" (the data rules' reasons, recipes/rules.py) and, for a run judged by
    phases (--select phases), each candidate's validation score and which one was kept."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    if cfg.get("reasons"):
        out.append(("Why these settings", [{"setting": k, "value": str(cfg.get(k, "")) if k in cfg else "",
                                            "why": v} for k, v in cfg["reasons"].items()]))
    if cfg.get("select") == "phases":
        rows = [h for h in history if h.get("val_accuracy") is not None]
        kept = None
        for i, h in enumerate(rows):  # the later phase wins unless the earlier is strictly more accurate
            if kept is None or h["val_accuracy"] >= rows[kept]["val_accuracy"]:
                kept = i
        names = {1: "head on features (solved)" if cfg.get("head") == "exact" else "head on features"}
        out.append(("Candidates (validation)", [
            {"candidate": names.get(h["epoch"], f"fine-tuned, {h['epoch'] - cfg.get('unfreeze_after', 0)} epochs"),
             "validation accuracy": f"{h['val_accuracy']:.2f} %", "validation loss": f"{h['val_loss']:.4f}",
             "kept": "yes" if i == kept else ""} for i, h in enumerate(rows)]))
    return out


def skipped_table(skipped: Sequence[str]) -> tuple[str, list[dict[str, str]]]:
    """The files the data left out, each with its reason (unreadable, not an image, a format
    whose reader is not installed), under a title that counts them by reason."""
    from smallvision.data.formats import skip_summary, split_entry

    title = skip_summary(skipped, names=0).replace("skipped ", "Files skipped: ", 1).replace(" files: ", " (", 1) + ")"
    return title, [{"file": f, "reason": r} for f, r in map(split_entry, skipped)]


def write_multilabel_report(
    out_dir: Path,
    record: RunRecord,
    *,
    title: str,
    info: DatasetInfo,
    logits: torch.Tensor,  # (N, K) of the evaluated split
    y: torch.Tensor,  # (N, K) multi-hot
    thresholds: dict[str, Any],  # multilabel.summarise's doc: the values and the split's figures at them
    images: torch.Tensor,
    train_counts: Sequence[int] | None = None,  # training images carrying each label
) -> dict[str, Any]:
    """The multi-label run's report: exact match, macro/micro-F1 and mAP at the chosen thresholds,
    per-class AP/precision/recall/F1 with each class's threshold, the highest-loss images titled
    with their predicted and true label sets."""
    from smallvision.multilabel import predicted_labels

    split, summary, history, labels, skipped = record.split, record.summary, record.history, record.labels, record.skipped
    config, command, device = record.config, record.command, record.device
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(info.class_names) or [str(i) for i in range(y.shape[1])]
    mean, std = torch.tensor(info.mean).view(-1, 1, 1), torch.tensor(info.std).view(-1, 1, 1)
    logits, y = logits.float().cpu(), y.float().cpu()
    m, values = thresholds["test"], thresholds["values"]
    probs = logits.sigmoid()
    chosen = predicted_labels(probs, values, names)
    truth = [[names[j] for j in torch.nonzero(row).flatten().tolist()] for row in y]
    # each image's training loss (engine.evaluate.task_loss of a multi-hot row): its mean binary cross-entropy
    losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1)  # (N,)
    top = losses.argsort(descending=True)[:16].tolist()
    figures: list[tuple[str, str]] = []
    if history:
        plots.plot_curves(history, out_dir / RunFolder.CURVES, title)
        figures.append((RunFolder.CURVES, "Loss and exact-match accuracy (p ≥ 0.5) per epoch (learning rate dashed, right axis)"))
    if top:
        show = lambda i: images[i].detach().float().cpu() * std + mean  # noqa: E731
        titles = [f"pred {' '.join(sorted(chosen[i])) or '-'}\ntrue {' '.join(truth[i])}" for i in top]
        if labels is not None:
            titles = [f"{t}\n{Path(labels[i]).name}" for t, i in zip(titles, top, strict=True)]
        colours = ["black" if sorted(chosen[i]) == sorted(truth[i]) else "#b00020" for i in top]
        plots.plot_image_grid([show(i) for i in top], titles, out_dir / RunFolder.TOP_LOSSES,
                              suptitle=f"Highest-loss {split} images: predicted labels (at the thresholds) / true labels",
                              title_colors=colours)
        figures.append((RunFolder.TOP_LOSSES, "Top losses: predicted / true label sets (red: not an exact match)"))
    pc = m["per_class"]
    per_class = [{"class": names[i], "AP": round(pc["ap"][i], 4), "precision": round(pc["precision"][i], 4),
                  "recall": round(pc["recall"][i], 4), "f1": round(pc["f1"][i], 4), "threshold": values[i],
                  "support": int(pc["support"][i]), **({"train images": int(train_counts[i])} if train_counts else {})}
                 for i in range(len(names))]
    cfg = config or {}
    env = environment(device)
    doc = {"title": title, "split": split, "summary": summary, "task": "multilabel",
           "metrics": {"exact_match": m["exact_match"], "macro_f1": m["macro_f1"], "micro_f1": m["micro_f1"],
                       "map": m["map"], "images": m["images"]},
           "thresholds": {k: v for k, v in thresholds.items() if k != "test"}, "per_class": per_class,
           "class_names": names,
           "top_losses": [{"index": i, "loss": round(float(losses[i]), 4), "predicted": sorted(chosen[i]),
                           "true": truth[i], **({"file": labels[i]} if labels is not None else {})} for i in top],
           "history": list(history), "environment": env, "config": cfg, "reproduce": command,
           "figures": [f for f, _ in figures], "skipped_files": list(skipped)}
    write_json(out_dir / RunFolder.REPORT_JSON, doc)
    head_rows = [{"metric": f"{split} exact match", "value": f"{m['exact_match']:.2f} % (every label of the image right)"},
                 {"metric": f"{split} macro-F1", "value": f"{m['macro_f1']:.4f}"},
                 {"metric": f"{split} micro-F1", "value": f"{m['micro_f1']:.4f}"},
                 {"metric": f"{split} mAP", "value": f"{m['map']:.4f} (threshold-free)"},
                 {"metric": f"{split} images", "value": str(m["images"])},
                 {"metric": "thresholds", "value": thresholds["chosen"]}]
    for key in ("model", "weights", "params", "dataset", "epochs_run", "best_epoch", "train_seconds", "images_per_second",
                "stopped"):
        if summary.get(key) is not None:
            head_rows.append({"metric": key.replace("_", " "), "value": str(summary[key])})
    tables = [("Per-class average precision, and precision / recall / F1 at each class's threshold (test)", per_class)]
    if skipped:
        tables.append(skipped_table(skipped))
    tables += settings_tables(cfg, history)
    render(out_dir, title, head_rows, figures, tables, env, command)
    return doc
