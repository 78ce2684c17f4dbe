""""None of these": every registered OOD detector on trained runs against out-of-distribution sets,
in OpenOOD's terms (AUROC, FPR at 95 % TPR: the share of OOD images accepted when 95 % of the
run's test images are), with the in-distribution test accuracy (no detector changes a logit).

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/ood.py \
        --case "runs/mnist=fashion-mnist,noise,photos:../shared/data/photos" \
        --case "runs/fashion=mnist,noise,photos:../shared/data/photos" \
        --case "runs/cats=photos:../shared/data/photos/flowers-128,photos:../shared/data/photos/rsscn7" \
        --out benchmarks/results/ood.md

Each detector is fitted as training fits the run's own (ood.fit_indices: a seeded sample of the
run's training split, re-created from its config); the runs should hold a validation split out
(`--val-size 0.05`) so that the trained threshold's "accepted on test" column means what it says.
OOD sets: a registered data set's test split (same image size as the model), ``noise`` (uniform
pixels), ``photos:DIR`` (up to --photos image files under DIR, seeded, each read by `predict`'s own
preprocessing: what the model sees when a user gives it that photo).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402

from smallvision import ood  # noqa: E402
from smallvision.api import run_splits  # noqa: E402
from smallvision.config import TrainConfig  # noqa: E402
from smallvision.data import load_dataset  # noqa: E402
from smallvision.data.folder import IMAGE_EXTS  # noqa: E402
from smallvision.data.loader import as_model_input  # noqa: E402
from smallvision.predict import Predictor  # noqa: E402


def ood_images(spec: str, run: str, splits: dict, n_photos: int) -> torch.Tensor:
    """The normalised inputs of one OOD set for this run's model."""
    info, model = splits["meta"]["dataset"], splits["model"]
    shape = tuple(model.input_shape)
    if spec == "noise":
        g = torch.Generator().manual_seed(0)
        u8 = torch.randint(0, 256, (2000, *shape), generator=g, dtype=torch.uint8)
        return as_model_input(u8, info["mean"], info["std"], "cpu")
    if spec.startswith("photos:"):
        files = sorted(p for p in Path(spec[len("photos:"):]).rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        pick = torch.randperm(len(files), generator=torch.Generator().manual_seed(0))[:n_photos]
        pred = Predictor.from_checkpoint(run, device="cpu")
        return torch.stack([pred.preprocess(files[int(i)]) for i in pick])
    data = load_dataset(spec)
    if tuple(data.info.input_shape) != shape:
        raise SystemExit(f"{spec}: images are {data.info.input_shape}, the model takes {shape}")
    return as_model_input(data.test_x, info["mean"], info["std"], "cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", action="append", required=True, help="RUN=OODSET,OODSET,...")
    ap.add_argument("--detectors", default=",".join(ood.DETECTORS.names()))
    ap.add_argument("--photos", type=int, default=500, help="photos per photos:DIR set")
    ap.add_argument("--accept", type=float, default=TrainConfig().accept,
                    help="the share of validation the threshold accepts (default: training's)")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.manual_seed(0)
    lines = [f"Command: `python benchmarks/ood.py {' '.join(sys.argv[1:])}`", "",
             f"Machine: {cpu_name()}, torch {torch.__version__}; fitted on ≤ {ood.FIT_SMALL} (small images) or "
             f"≤ {ood.FIT_LARGE} training images (ood.fit_indices).", "",
             "| run (test accuracy %, one view) | OOD set (images) | detector | AUROC % | FPR@95 % | accepted on test % ¹ "
             "| OOD accepted % ¹ | fit s |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    summary: dict[str, list[tuple[float, float]]] = {}
    for case in a.case:
        run, sets = case.split("=", 1)
        sp = run_splits(run, "cpu")
        model, cfg = sp["model"], sp["config"]
        label = f"{cfg.recipe} on {Path(cfg.dataset.split(':', 1)[-1]).name}"
        tr_x, tr_y = sp["train"]
        take = ood.fit_indices(len(tr_x), cfg.seed, model.input_shape[1] * model.input_shape[2])
        f, z = ood.features_and_logits(model, tr_x[torch.tensor(take)])
        y = tr_y[torch.tensor(take)].cpu()
        te_f, te_z = ood.features_and_logits(model, sp["test"][0])
        acc = 100 * float((te_z.argmax(1) == sp["test"][1].cpu()).float().mean())
        val = ood.features_and_logits(model, sp["val"][0]) if sp["val"] is not None else None
        outs = {}
        for spec in sets.split(","):
            x = ood_images(spec, run, sp, a.photos)
            outs[spec] = (len(x), ood.features_and_logits(model, x))
        for name in a.detectors.split(","):
            t0 = time.perf_counter()
            det = ood.fit_detector(name, f, y, z, model.head)
            fit_s = time.perf_counter() - t0
            s_in = ood.score_features(det, te_f, te_z)
            q, _ = ood.threshold_scores(name, det, f, y, z, model.head, val)
            thr = float(torch.quantile(q.double(), a.accept))
            accepted = 100 * float((s_in <= thr).float().mean())
            for spec, (n, (of, oz)) in outs.items():
                s_out = ood.score_features(det, of, oz)
                au, fpr = 100 * ood.auroc(s_in, s_out), 100 * ood.fpr_at_95(s_in, s_out)
                summary.setdefault(name, []).append((au, fpr))
                shown = f"photos:{Path(spec[len('photos:'):]).name}" if spec.startswith("photos:") else spec
                out_ok = 100 * float((s_out <= thr).float().mean())
                lines.append(f"| {label} ({acc:.2f}) | {shown} ({n}) | {name} | {au:.2f} | {fpr:.2f} | "
                             f"{accepted:.1f} | {out_ok:.1f} | {fit_s:.2f} |")
    lines += ["", "Every detector over every (run, OOD set) row:", "",
              "| detector | mean AUROC % | lowest AUROC % | mean FPR@95 % | highest FPR@95 % |", "|---|---:|---:|---:|---:|"]
    for k, v in sorted(summary.items(), key=lambda kv: -sum(a for a, _ in kv[1])):
        au, fp = [a for a, _ in v], [f for _, f in v]
        lines.append(f"| {k} | {sum(au) / len(au):.2f} | {min(au):.2f} | {sum(fp) / len(fp):.2f} | {max(fp):.2f} |")
    lines += ["", f"¹ The share of the run's test images (and of the OOD set's) scoring under the threshold "
              f"chosen at {a.accept:.0%} of its validation split (with cross-fitted training scores when it has fewer than "
              f"{ood.MIN_VALIDATION} images: ood.threshold_scores): the acceptance a user gets: what `predict` answers with a class rather than \"none of these\".", "",
              "Runs: " + "; ".join(f"`{Path(c.split('=')[0]).name}`" for c in a.case) + " (their config.json holds "
              "every setting; trained with `--val-size 0.05` for mnist-fast and fashion-fast, photo-transfer-fast's own 0.1)"]
    emit(lines, a.out)


if __name__ == "__main__":
    main()
