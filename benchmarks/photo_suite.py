"""The photo suite: the default (`smallvision train --dataset folder:SET`, nothing else) on every
real set in ``$SMALLVISION_DATA/photos``, beside a linear probe and a small sweep of our own recipes.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/photo_suite.py --seeds 0,1,2 \
        --rows default,probe,photo-transfer-fast,photo-transfer --out benchmarks/results/photo-suite.md
    ... --subset 500 ...     # the same on seeded 500-photo subsets of each set's training split

Rows:
  default   `smallvision train --dataset folder:SET --seed S` in its own process (what a user
            types); wall s = the whole command (start-up, decoding, timing probe, feature pass,
            training, test, calibration), the issue's limit is 60 s + 0.1 s per training photo.
  probe     scikit-learn's LogisticRegressionCV (C in 0.03-3, 5-fold CV on the training photos)
            on efficientnet-lite0's pooled 224 px ImageNet features (centre crop): the linear probe.
  RECIPE    `smallvision train --recipe RECIPE --dataset folder:SET --seed S`, the sweep: our other
            photo recipes (photo-transfer-fast: the head on features; photo-transfer: the previous
            default, 3 head epochs + 1 fine-tuning epoch); RECIPE[flags] adds flags.
Splits: the set's own held-out folder where it has one, otherwise the folder loader's seeded 1/7,
the same for every row. --subset N: a folder of links in /tmp with N photos drawn (seeded,
stratified) from the training split and the same share of the test split (a user's N-photo
folder: the wall time counts its test pass, which the whole test split would swamp). Results are cached per (set, subset, row, seed) in --cache (JSON lines), so a long
table can be built in several sittings; the table is made from the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402
from _common import recipe_entries as entries  # noqa: E402

SETS = "cats-vs-dogs-3000,hymenoptera,flowers-128,rsscn7,neu-steel,sign-digits,potato-leaf"


def subset_folder(root: Path, n: int, seed: int = 0) -> Path:
    """A folder of links, what a user with an `n`-photo folder has: `n` training photos (stratified,
    seeded) in train/<class>/, and the same share of the test split in test/<class>/ (at least one
    photo a class), so that the run's wall time, its test pass included, is that folder's."""
    import numpy as np

    from smallvision.data.folder import index_folder

    out = Path(f"/tmp/smallvision-suite/{root.name}-{n}-v2")
    if out.is_dir():
        return out
    idx = index_folder(root)
    rng = np.random.default_rng(seed)
    share = min(1.0, n / len(idx.train))

    def draw(items: list, least: int) -> list:  # the same share of each class, at least `least` photos
        ys = np.array([c for _, c in items])
        picked = []
        for c in range(len(idx.classes)):
            members = np.flatnonzero(ys == c)
            k = max(least, round(len(members) * share))
            picked += rng.choice(members, size=min(k, len(members)), replace=False).tolist()
        return [items[i] for i in sorted(picked)]

    tmp = out.with_name(out.name + ".tmp")
    for split, items in (("train", draw(idx.train, 2)), ("test", draw(idx.test, 1))):
        for p, c in items:
            d = tmp / split / idx.classes[c]
            d.mkdir(parents=True, exist_ok=True)
            link = d / f"{abs(hash(str(p))) % 10**8}-{p.name}"
            if not link.exists():
                link.symlink_to(p.resolve())
    tmp.rename(out)
    return out


def run_train(folder: Path, seed: int, recipe: str | None, extra: list[str]) -> dict:
    from photos import run

    s = run(recipe, folder, seed, extra, "/tmp/smallvision-suite-runs")
    cfg = json.loads((Path(s["run_dir"]) / "config.json").read_text())
    return {"accuracy": s["test_accuracy"], "wall": round(s["wall"], 1), "train_s": s["train_seconds"],
            "features_s": s.get("feature_cache_seconds"), "peak_mb": int(s["peak_mb"]),
            "epochs": cfg["epochs"], "reasons": cfg.get("reasons", {}), "best_epoch": s["best_epoch"],
            "train_photos": s.get("train_images"), "val": s.get("val_accuracy"), "stages": s.get("stage_seconds")}


_NET = None


def probe(folder: Path) -> dict:
    from linear_probe import features
    from sklearn.linear_model import LogisticRegressionCV

    from smallvision.data.folder import index_folder
    from smallvision.models.efficientnet_lite import timm_net, to_timm_layout
    from smallvision.models.pretrained import BACKBONES, imagenet_state

    global _NET
    if _NET is None:
        torch_net = timm_net(1000, 0.0, 0)
        torch_net.load_state_dict(to_timm_layout(imagenet_state("efficientnet-lite0"), torch_net, "efficientnet-lite0"))
        _NET = torch_net.eval()
    b = BACKBONES["efficientnet-lite0"]
    idx = index_folder(folder)
    t0 = time.perf_counter()
    ftr, fte = features(_NET, idx.train, 224, b.mean, b.std), features(_NET, idx.test, 224, b.mean, b.std)
    ytr, yte = [y for _, y in idx.train], [y for _, y in idx.test]
    clf = LogisticRegressionCV(Cs=[0.03, 0.1, 0.3, 1.0, 3.0], cv=5, max_iter=3000).fit(ftr, ytr)
    return {"accuracy": round(100 * clf.score(fte, yte), 4), "wall": round(time.perf_counter() - t0, 1),
            "C": float(clf.C_[0])}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default=SETS)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--subset", default="0", help="N[,M...]: seeded N-photo subsets of each training split (0: whole); "
                    "one table per size, in one file")
    ap.add_argument("--rows", default="default,probe,photo-transfer-fast,photo-transfer")
    ap.add_argument("--cache", default="benchmarks/results/photo-suite-runs.jsonl")
    ap.add_argument("--table-only", action="store_true", help="make the table from the cache, run nothing")
    ap.add_argument("--out")
    a = ap.parse_args()
    root = Path(os.environ.get("SMALLVISION_DATA", "../shared/data")) / "photos"
    cache = Path(a.cache)
    done = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            r = json.loads(line)
            done[(r["set"], r["subset"], r["row"], r["seed"])] = r
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = entries(a.rows)
    sizes = [int(n) for n in a.subset.split(",")]
    # seeds outermost: a sitting cut short leaves every set with seed 0 rather than one set with every seed
    for size in sizes:
        for seed in seeds:
            for name in a.sets.split(","):
                folder = root / name if not size else subset_folder(root / name, size)
                for recipe, extra in rows:
                    row = recipe + (f" {' '.join(extra)}" if extra else "")
                    key = (name, size, row, seed)
                    if key in done or a.table_only or (recipe == "probe" and seed != seeds[0]):
                        continue
                    r = probe(folder) if recipe == "probe" else run_train(
                        folder, seed, None if recipe == "default" else recipe, extra)
                    r.update(set=name, subset=size, row=row, seed=seed, date=time.strftime("%Y-%m-%d %H:%M"))
                    done[key] = r
                    with cache.open("a") as f:
                        f.write(json.dumps(r) + "\n")
                    print(json.dumps({k: r[k] for k in ("set", "row", "seed", "accuracy", "wall")}), flush=True)
    lines = [f"Command: `SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/photo_suite.py --seeds {a.seeds} "
             f"--subset {a.subset} --rows {a.rows}`"]
    for size in sizes:
        lines += [""] + table(done, a.sets, size, seeds, rows, root)
    emit(lines, a.out)


def table(done: dict, sets: str, subset: int, seeds: list[int], rows: list, root: Path) -> list[str]:
    from smallvision.data.folder import index_folder

    what = (f"seeded {subset}-photo subsets of the training splits, with the same share of each test split"
            if subset else "whole sets")
    threads = os.environ.get("OMP_NUM_THREADS")
    lines = [f"## Photo suite, {what}; {cpu_name()}, {os.cpu_count()} cores"
             + (f", runs limited to {threads} thread(s) (OMP_NUM_THREADS)" if threads else ""), "",
             "Test accuracy, %: the mean over seeds (each seed). Limit = 60 s + 0.1 s per training photo; "
             "\"default ok\" = default ≥ probe − 0.5 and ≥ the best sweep row − 1.5 points, within the limit.", "",
             "| set | train / test photos | default | wall s (limit) | fine-tune epochs | probe | "
             + " | ".join(r + (f" {' '.join(e)}" if e else "") for r, e in rows if r not in ("default", "probe"))
             + " | default ok |", "|---|---|---:|---:|---:|---:|" + "---:|" * (len(rows) - 2) + "---|"]
    n_by_set: dict[str, int] = {}
    for name in sets.split(","):
        folder = root / name if not subset else Path(f"/tmp/smallvision-suite/{name}-{subset}-v2")
        try:
            idx = index_folder(folder)
            n_train, n_test = len(idx.train), len(idx.test)
        except Exception:
            continue
        cells, means = [], {}
        n_by_set[name] = n_train
        for recipe, extra in rows:
            row = recipe + (f" {' '.join(extra)}" if extra else "")
            rs = [done[k] for k in ((name, subset, row, s) for s in (seeds[:1] if recipe == "probe" else seeds)) if k in done]
            if not rs:
                cells += ["—"] * (3 if recipe == "default" else 1)
                continue
            accs = [r["accuracy"] for r in rs]
            means[recipe] = statistics.mean(accs)
            cell = f"{means[recipe]:.2f}" + (f" ({', '.join(f'{x:.1f}' for x in accs)})" if len(accs) > 1 else "")
            if recipe == "default":
                walls = [r["wall"] for r in rs]
                limit = 60 + 0.1 * n_train
                cells += [cell, f"{max(walls):.0f} ({limit:.0f})", "/".join(str(r["epochs"] - 1) for r in rs)]
                means["_wall_ok"] = max(walls) <= limit
            else:
                cells.append(cell + ("" if recipe == "probe" else f", {statistics.mean(r['wall'] for r in rs):.0f} s"))
        sweep = [v for k, v in means.items() if k not in ("default", "probe", "_wall_ok")]
        ok = "—"
        if "default" in means and "probe" in means:
            good = means["default"] >= means["probe"] - 0.5 and (not sweep or means["default"] >= max(sweep) - 1.5)
            ok = "yes" if good and means["_wall_ok"] else "no" + ("" if good else " (accuracy)") + (
                "" if means["_wall_ok"] else " (time)")
        lines.append(f"| {name} | {n_train} / {n_test} | " + " | ".join(cells) + f" | {ok} |")
    lines += speed_table(done, subset, n_by_set)
    return lines


def speed_table(done: dict, subset: int, n_by_set: dict[str, int]) -> list[str]:
    """The default's seed-0 runs against the model-only limit its own probe measured (config.json's reasons):
    the feature pass (training + validation photos / its seconds) and the fine-tuning epochs (photos
    × epochs / training seconds, which include the head's solve)."""
    import re

    out = ["", "Speed of the default's seed-0 run against the model-only figures its own probe measured in the same "
           "process (forward: the feature pass; training: a step of what phase 2 trains, bare, on random tensors):", "",
           "| set | feature pass photos/s | probe forward /s | ratio | fine-tuning images/s | probe training /s | ratio "
           "| peak MB |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (name, size, row, seed), r in sorted(done.items()):
        if row != "default" or seed != 0 or size != subset or not r.get("features_s"):
            continue
        m = re.search(r"([\d.]+) images/s forward, ([\d.]+) images/s training", r["reasons"].get("speed", ""))
        if not m:
            continue
        fwd, trn = float(m[1]), float(m[2])
        n = n_by_set.get(name, 0)
        feat = n / r["features_s"]
        ft_photos = round(n * 0.9)
        ft = ft_photos * (r["epochs"] - 1) / r["train_s"] if r["epochs"] > 1 else None
        out.append(f"| {name} | {feat:.1f} | {fwd:.0f} | {feat / fwd:.2f} | " + (
            f"{ft:.0f} | {trn:.0f} | {ft / trn:.2f}" if ft else "— | — | —") + f" | {r['peak_mb']} |")
    return out


if __name__ == "__main__":
    main()
