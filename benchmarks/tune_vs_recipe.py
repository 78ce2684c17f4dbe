"""`smallvision tune` against a recipe: the recipe as shipped (its choices were made on the test set)
and the recipe with settings chosen by `tune` on a validation split; each tested once.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/tune_vs_recipe.py --recipe mnist-fast \
        --space lr,weight_decay,label_smoothing --trials 20 --time-budget 600 --out benchmarks/results/tune-mnist-fast.md
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from smallvision import api
from smallvision.tune import tune

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", default="mnist-fast")
    ap.add_argument("--space", default="lr,weight_decay,label_smoothing")
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--time-budget", type=float, default=600)
    ap.add_argument("--out")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        shipped = api.train(a.recipe, runs_dir=tmp, report=False).summary
        t0 = time.perf_counter()
        r = tune(a.recipe, space=a.space, trials=a.trials, time_budget=a.time_budget, runs_dir=tmp, name="tune")
        wall = time.perf_counter() - t0
        tuned_doc = r.recipe_path.read_text()
    done = [t for t in r.trials if t["state"] == "complete"]
    lines = [f"Command: `SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/tune_vs_recipe.py --recipe {a.recipe} "
             f"--space {a.space} --trials {a.trials} --time-budget {a.time_budget:g}` (2 cores, {cpu_name()}, "
             f"{time.strftime('%Y-%m-%d')})", "",
             "| | settings | chosen on | validation % | test % (read once) | train s |", "|---|---|---|---:|---:|---:|",
             f"| {a.recipe} as shipped | the recipe's | the test set (earlier sessions) | — | "
             f"{shipped['test_accuracy']:.2f} | {shipped['train_seconds']:.1f} |",
             f"| {a.recipe} tuned | {json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in r.best_params.items()})} "
             f"| validation ({r.extra.get('val', 0.1):g} of train) | {r.best_val:.2f} | {r.final['test_accuracy']:.2f} | "
             f"{r.final['train_seconds']:.1f} |", "",
             f"Search: {len(r.trials)} trials ({len(done)} completed, {sum(t['state'] == 'pruned' for t in r.trials)} pruned) "
             f"in {r.search_seconds:.0f} s; the whole command {wall:.0f} s.", "", "Trials:", "",
             "| trial | state | validation % | " + " | ".join(r.best_params) + " |",
             "|---:|---|---:|" + "---:|" * len(r.best_params)]
    for t in r.trials:
        v = f"{t['val_accuracy']:.2f}" if t["val_accuracy"] is not None else "—"
        lines.append(f"| {t['trial']} | {t['state']} | {v} | " + " | ".join(
            f"{t.get(k):.4g}" if isinstance(t.get(k), float) else str(t.get(k)) for k in r.best_params) + " |")
    lines += ["", "The tuned recipe file:", "", "```toml", tuned_doc.strip(), "```"]
    emit(lines, a.out)


if __name__ == "__main__":
    main()
