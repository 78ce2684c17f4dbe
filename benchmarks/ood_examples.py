"""Examples of "other": given as a class, or as examples for the "none of these" threshold?

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/ood_examples.py \
        --set rsscn7 --examples neu-steel,cats-vs-dogs-3000,flowers-128 \
        --unseen potato-leaf,sign-digits,hymenoptera --out benchmarks/results/ood-examples.md

A user has a photo folder (--set, from ../shared/data/photos) and a folder of photos of other
things (--per-set photos from each --examples set, seeded). Three ways to use them, each trained
with the photo recipe (--recipe):

A. nothing: the run's own detector and threshold (`accept` of its validation split);
B. as OOD examples: run A, its threshold tightened by `smallvision calibrate RUN --ood-examples
   DIR` (api.refuse_like);
C. as a class: the same folder with an extra class folder `other/` holding the examples; a photo
   is refused when it is called `other` or "none of these".

Each is scored on its own test split's photos of the real classes (accepted %, accuracy on all),
on other photos of the example sets that were not among the examples ("seen kinds"), and on
photos of sets no example came from ("unseen kinds"): the share refused.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402

from smallvision import api  # noqa: E402
from smallvision.data.folder import IMAGE_EXTS, index_folder  # noqa: E402
from smallvision.predict import NONE_OF_THESE, Predictor  # noqa: E402


def photos(root: Path, name: str) -> list[Path]:
    return sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


def refused(pred: Predictor, files: list[str], other: str | None = None) -> float:
    """The share (%) of `files` answered "none of these" (or the class `other`)."""
    out = pred.predict(files, top_k=1)
    return 100 * sum(r.get("label") in (NONE_OF_THESE, other) for r in out) / len(out)


def own(pred: Predictor, items: list[tuple[str, int]], classes: list[str]) -> tuple[float, float]:
    """(accepted %, accuracy % by the most probable real class) on the run's own test photos."""
    out = pred.predict([f for f, _ in items], top_k=len(pred.classes))
    ok = sum(not r.get("none_of_these") and r["top_k"][0][0] != "other" for r in out)
    right = sum(next(c for c, _ in r["top_k"] if c != "other") == classes[y] for r, (_, y) in zip(out, items, strict=True))
    return 100 * ok / len(out), 100 * right / len(out)


def holdout(run: Path) -> float | None:
    """The held-out share the run's folder loader used (its test split)."""
    h = json.loads((Path(run) / "config.json").read_text()).get("data_args", {}).get("holdout")
    return float(h) if h is not None else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", required=True)
    ap.add_argument("--examples", required=True, help="photo sets the examples of 'other' come from")
    ap.add_argument("--unseen", required=True, help="photo sets no example comes from")
    ap.add_argument("--per-set", type=int, default=40, help="examples per --examples set")
    ap.add_argument("--test-per-set", type=int, default=60, help="held-out OOD photos per set")
    ap.add_argument("--recipe", default="photo-transfer-fast")
    ap.add_argument("--work", default=None, help="where the folders and runs go (default: a temporary folder)")
    ap.add_argument("--out")
    a = ap.parse_args()
    root = Path(os.environ.get("SMALLVISION_DATA", "../shared/data")) / "photos"
    work = Path(a.work or tempfile.mkdtemp(prefix="ood-examples-"))
    rng = random.Random(0)
    examples, seen, unseen = work / "examples", [], []
    examples.mkdir(parents=True, exist_ok=True)
    for name in a.examples.split(","):
        files = photos(root, name)
        rng.shuffle(files)
        for f in files[: a.per_set]:
            shutil.copy(f, examples / f"{name}-{f.name}")
        seen += [str(f) for f in files[a.per_set : a.per_set + a.test_per_set]]
    for name in a.unseen.split(","):
        files = photos(root, name)
        rng.shuffle(files)
        unseen += [str(f) for f in files[: a.test_per_set]]
    with_other = work / f"{a.set}+other"
    if not with_other.exists():
        with_other.mkdir()
        for d in sorted(p for p in (root / a.set).iterdir() if p.is_dir()):
            (with_other / d.name).symlink_to(d.resolve())
        (with_other / "other").symlink_to(examples.resolve())

    rows = []
    t0 = time.perf_counter()
    plain = api.train(a.recipe, dataset=f"folder:{root / a.set}", runs_dir=str(work / "runs"))
    idx = index_folder(root / a.set, holdout(plain.run_dir))
    pred = Predictor.from_checkpoint(plain.run_dir, "cpu")
    rows.append(("A. nothing (the run's own threshold)", *own(pred, idx.test, idx.classes),
                 refused(pred, seen), refused(pred, unseen), pred.ood["accept"]))
    tightened = work / "runs" / (Path(plain.run_dir).name + "-examples")
    shutil.copytree(plain.run_dir, tightened, dirs_exist_ok=True)
    api.refuse_like(tightened, examples, "cpu")
    pred = Predictor.from_checkpoint(tightened, "cpu")
    rows.append(("B. as OOD examples (calibrate --ood-examples)", *own(pred, idx.test, idx.classes),
                 refused(pred, seen), refused(pred, unseen), pred.ood["accept"]))
    cls = api.train(a.recipe, dataset=f"folder:{with_other}", runs_dir=str(work / "runs"))
    idx2 = index_folder(with_other, holdout(cls.run_dir))
    other = idx2.classes.index("other")
    pred = Predictor.from_checkpoint(cls.run_dir, "cpu")
    rows.append(("C. as a class (other/)", *own(pred, [(f, y) for f, y in idx2.test if y != other], idx2.classes),
                 refused(pred, seen, "other"), refused(pred, unseen, "other"), pred.ood["accept"]))
    n_ex = len(list(examples.iterdir()))
    lines = [f"# Examples of 'other': as a class or as OOD examples ({cpu_name()}, {time.strftime('%Y-%m-%d')})", "",
             f"Command: `SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/ood_examples.py --set {a.set} "
             f"--examples {a.examples} --unseen {a.unseen} --per-set {a.per_set} --test-per-set {a.test_per_set} "
             f"--recipe {a.recipe}`", "",
             f"{a.set} with `{a.recipe}`; {n_ex} examples of other things ({a.per_set} from each of {a.examples}); "
             f"refusal measured on {len(seen)} other photos of those sets (seen kinds) and {len(unseen)} photos of "
             f"{a.unseen} (unseen kinds). Own test photos: the run's held-out split of {a.set}'s classes. One seed.", "",
             "| how the examples are used | own test photos accepted % | own test accuracy % | seen kinds refused % "
             "| unseen kinds refused % | accept (validation share) |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r[0]} | {r[1]:.1f} | {r[2]:.2f} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.3f} |" for r in rows]
    lines += ["", f"Wall time {time.perf_counter() - t0:.0f} s (two trainings)."]
    emit(lines, a.out)


if __name__ == "__main__":
    main()
