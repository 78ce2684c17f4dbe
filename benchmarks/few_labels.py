"""Few labels and label-next, measured on a pretrained backbone's features.

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/few_labels.py --out benchmarks/results/few-labels.md

For each set (the seven photo sets in ../shared/data/photos and MNIST's digits read as photos),
efficientnet-lite0's pooled ImageNet features of a seeded pool of unlabelled training images and
of a seeded test sample, centre crop at 224 px (what `train` computes for a folder), cached under
--cache. Then, 3 seeds each:

A. Few labels: k labelled images per class (k = 1, 2, 5, 10, 20) drawn from the pool; the heads
   that could train on them, scored on the test sample: the library's solved linear head
   (`engine.head.fit_linear_head`, its strength by cross-validation when every class has 2),
   nearest class mean on the raw features (`fit_class_means`, a linear layer too), the rule
   training uses between the two (`fit_head`), and the nearest class mean by cosine.
B. Label next: start with 5 labels per class; four rounds each add 2 labels per class's worth of
   images, picked from the pool by each rule of `smallvision.suggest` (or at random) with the
   head trained on the labels so far; accuracy after each round.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402

SETS = "cats-vs-dogs-3000,hymenoptera,flowers-128,rsscn7,neu-steel,sign-digits,potato-leaf,mnist"
SHOTS = (1, 2, 5, 10, 20)
SEEDS = (0, 1, 2)
START, PER_ROUND, ROUNDS = 5, 2, 4  # labels per class at the start, added per round (× classes), rounds


def _net(model: str) -> tuple[torch.nn.Module, tuple, tuple]:
    from smallvision.models.efficientnet_lite import timm_net, to_timm_layout
    from smallvision.models.pretrained import BACKBONES, imagenet_state

    net = timm_net(1000, 0.0, int(model.removeprefix("efficientnet-lite")))
    net.load_state_dict(to_timm_layout(imagenet_state(model), net, model))
    return net.eval(), BACKBONES[model].mean, BACKBONES[model].std


def _pixels_to_features(net: torch.nn.Module, x: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), 64):
            xb = x[i : i + 64].float() / 255
            if xb.shape[1] == 1:
                xb = xb.expand(-1, 3, -1, -1)
            xb = F.interpolate(xb, size=224, mode="bilinear", antialias=True, align_corners=False)
            out.append(net.forward_head(net.forward_features((xb - m) / s), pre_logits=True))
    return torch.cat(out)


def _draw(y: np.ndarray, per_class: int | None, cap: int, seed: int) -> np.ndarray:
    """Seeded indices: `per_class` of each class, or a stratified `cap` in all."""
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    take = per_class if per_class is not None else max(1, cap // len(classes))
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:take] for c in classes]))


def features(name: str, root: Path, cache: Path, model: str, pool: int, test: int) -> dict[str, torch.Tensor]:
    """{pool_x, pool_y, test_x, test_y, classes} for one set, cached."""
    path = cache / f"{name}-{model}-{pool}-{test}.pt"
    if path.exists():
        return torch.load(path)
    net, mean, std = _net(model)
    t0 = time.perf_counter()
    if name == "mnist":
        from smallvision.data.datasets import load_dataset

        d = load_dataset("mnist", root)  # uint8 (N, 1, 28, 28)
        tr_y, te_y = d.train_y.numpy(), d.test_y.numpy()
        pi, ti = _draw(tr_y, None, pool, 0), _draw(te_y, None, test, 1)
        px, tx = d.train_x[pi], d.test_x[ti]
        out = {"pool_x": _pixels_to_features(net, px, mean, std), "test_x": _pixels_to_features(net, tx, mean, std),
               "pool_y": torch.as_tensor(tr_y[pi]), "test_y": torch.as_tensor(te_y[ti]), "classes": list(d.info.class_names)}
    else:
        from linear_probe import features as photo_features

        from smallvision.data.folder import index_folder

        idx = index_folder(root / "photos" / name, 0.2)
        tr_y, te_y = np.array([y for _, y in idx.train]), np.array([y for _, y in idx.test])
        pi, ti = _draw(tr_y, None, pool, 0), _draw(te_y, None, test, 1)
        out = {"pool_x": torch.as_tensor(photo_features(net, [idx.train[i] for i in pi], 224, mean, std)),
               "test_x": torch.as_tensor(photo_features(net, [idx.test[i] for i in ti], 224, mean, std)),
               "pool_y": torch.as_tensor(tr_y[pi]), "test_y": torch.as_tensor(te_y[ti]), "classes": idx.classes}
    out["seconds"] = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out


def head(name: str, x: torch.Tensor, y: torch.Tensor, k: int, seed: int):  # type: ignore[no-untyped-def]
    """A function features -> probabilities, trained on (x, y) by the head `name`: the library's
    logistic regression (linear), nearest class mean (ncm), the rule between them that training
    uses (default: engine.head.fit_head), or the cosine class mean (ncm-cos, not in the library)."""
    from smallvision.engine.head import fit_class_means, fit_head, fit_linear_head

    if name in ("linear", "ncm", "default"):
        fit = {"linear": lambda: fit_linear_head(x, y, k, seed), "ncm": lambda: fit_class_means(x, y, k),
               "default": lambda: fit_head(x, y, k, seed)}[name]()
        return lambda f: (f @ fit.weight.T + fit.bias).softmax(1)
    mu = F.normalize(torch.stack([F.normalize(x[y == c], dim=1).mean(0) for c in range(k)]), dim=1)  # ncm-cos
    return lambda f: (10 * F.normalize(f, dim=1) @ mu.T).softmax(1)


def accuracy(predict, x: torch.Tensor, y: torch.Tensor) -> float:  # type: ignore[no-untyped-def]
    return 100.0 * float((predict(x).argmax(1) == y).float().mean())


def few_labels(d: dict, heads: list[str]) -> dict[tuple[str, int], list[float]]:
    k = len(d["classes"])
    py = d["pool_y"].numpy()
    res: dict[tuple[str, int], list[float]] = {}
    for shots in SHOTS:
        for seed in SEEDS:
            i = torch.as_tensor(_draw(py, shots, 0, 100 + seed))
            for h in heads:
                p = head(h, d["pool_x"][i], d["pool_y"][i], k, seed)
                res.setdefault((h, shots), []).append(accuracy(p, d["test_x"], d["test_y"]))
    return res


def label_next(d: dict, rules: list[str], head_name: str) -> dict[str, list[list[float]]]:
    from smallvision.suggest import rank

    k = len(d["classes"])
    px, py = d["pool_x"], d["pool_y"]
    curves: dict[str, list[list[float]]] = {}
    for seed in SEEDS:
        start = torch.as_tensor(_draw(py.numpy(), START, 0, 100 + seed))
        for rule in rules:
            labelled = set(start.tolist())
            curve = []
            for r in range(ROUNDS + 1):
                i = torch.as_tensor(sorted(labelled))
                p = head(head_name, px[i], py[i], k, seed)
                curve.append(accuracy(p, d["test_x"], d["test_y"]))
                if r == ROUNDS:
                    break
                rest = torch.as_tensor([j for j in range(len(py)) if j not in labelled])
                pick = rank(p(px[rest]), px[rest], PER_ROUND * k, rule, seed=1000 * seed + r)
                labelled |= {int(rest[j]) for j in pick}
            curves.setdefault(rule, []).append(curve)
    return curves


def _ms(v: list[float]) -> str:
    return f"{np.mean(v):.1f} ± {np.std(v):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default=SETS)
    ap.add_argument("--pool", type=int, default=1000, help="unlabelled training images per set (stratified)")
    ap.add_argument("--test", type=int, default=600, help="test images per set (stratified)")
    ap.add_argument("--model", default="efficientnet-lite0")
    ap.add_argument("--heads", default="linear,ncm,ncm-cos")
    ap.add_argument("--rules", default="random,margin,entropy,typical,margin-diverse")
    ap.add_argument("--al-head", default="default", help="the head the label-next rounds train")
    ap.add_argument("--cache", default="/tmp/few-labels-cache")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.manual_seed(0)
    root = Path(os.environ.get("SMALLVISION_DATA", "../shared/data"))
    heads, rules = a.heads.split(","), a.rules.split(",")
    cmd = (f"benchmarks/few_labels.py --sets {a.sets} --pool {a.pool} --test {a.test} --heads {a.heads} "
           f"--rules {a.rules} --al-head {a.al_head}")
    few = ["| set | classes | head | " + " | ".join(f"{s} per class" for s in SHOTS) + " |",
           "|---|---:|---|" + "---:|" * len(SHOTS)]
    al = ["| set | rule | " + " | ".join(f"{START + r * PER_ROUND} per class" for r in range(ROUNDS + 1))
          + " | gain over random, rounds 1-4 | last round |", "|---|---|" + "---:|" * (ROUNDS + 3)]
    for name in a.sets.split(","):
        d = features(name, root, Path(a.cache), a.model, a.pool, a.test)
        print(f"{name}: features of {len(d['pool_y'])} + {len(d['test_y'])} images ({d['seconds']:.0f} s)", flush=True)
        res = few_labels(d, heads)
        for h in heads:
            few.append(f"| {name} | {len(d['classes'])} | {h} | " + " | ".join(_ms(res[(h, s)]) for s in SHOTS) + " |")
            print(few[-1], flush=True)
        curves = label_next(d, rules, a.al_head)
        base = np.array(curves["random"]) if "random" in curves else None
        for rule in rules:
            c = np.array(curves[rule])
            if base is None or rule == "random":
                gain = " | "
            else:  # per seed (same start): the mean over the rounds after the start, and the last round
                g = c[:, 1:] - base[:, 1:]
                gain = f"{np.mean(g):+.1f} ± {np.std(g.mean(1)):.1f} | {np.mean(g[:, -1]):+.1f} ± {np.std(g[:, -1]):.1f}"
            al.append(f"| {name} | {rule} | " + " | ".join(_ms(list(c[:, r])) for r in range(ROUNDS + 1)) + f" | {gain} |")
            print(al[-1], flush=True)
    lines = [f"# Few labels and label next ({cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')})", "",
             f"Command: `SMALLVISION_DATA=../shared/data .venv/bin/python {cmd}`", "",
             f"{a.model}'s pooled ImageNet features (224 px centre crop); a stratified pool of ≤ {a.pool} training "
             f"images and ≤ {a.test} test images per set (folders without a split: the loader's seeded 20 % held out; "
             "MNIST: its own test set, digits read as gray photos). Test accuracy %, mean ± sd over seeds "
             f"{', '.join(map(str, SEEDS))} (each seed draws its own labelled images).", "",
             "## A. Accuracy against labels per class", "", *few, "",
             f"## B. Label next: {START} labels per class, then {ROUNDS} rounds of {PER_ROUND} × classes images "
             f"picked by each rule (the {a.al_head} head retrained each round)", "",
             "Gain: the rule's accuracy minus random's, per seed (same start): averaged over rounds 1-4, and at the last round; mean ± sd over seeds.", "", *al]
    emit(lines, a.out)


if __name__ == "__main__":
    main()
