"""Label next (suggest.py): each rule ranks what it promises, and `smallvision suggest` ranks a
real folder of unlabelled digits with a trained run, leaves labelled ones out, and refuses bad
folders in one line."""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_main
from smallvision.errors import UsageError
from smallvision.suggest import RULES, kmeans, rank


def _confusions() -> tuple[torch.Tensor, torch.Tensor]:
    """15 images of one confusion (near copies, p = 0.5/0.5), 10 of another (0.55/0.45), 75 sure ones."""
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(3, 8) * 10
    feats = torch.cat([centres[0] + 0.1 * torch.randn(15, 8, generator=g),
                       centres[1] + 0.1 * torch.randn(10, 8, generator=g),
                       centres[2] + torch.randn(75, 8, generator=g)])
    probs = torch.cat([torch.tensor([[0.5, 0.5, 0.0]]).repeat(15, 1), torch.tensor([[0.55, 0.45, 0.0]]).repeat(10, 1),
                       torch.tensor([[0.02, 0.03, 0.95]]).repeat(75, 1)])
    return probs + 1e-4 * torch.rand(100, 3, generator=g), feats


def test_margin_takes_the_most_doubtful_and_diverse_spreads_over_confusions() -> None:
    probs, feats = _confusions()
    assert set(rank(probs, feats, 2, "margin")) <= set(range(15))  # both from the one confusion
    assert set(rank(probs, feats, 2, "entropy")) <= set(range(15))
    picks = rank(probs, feats, 2, "margin-diverse")  # one of each confusion, the more doubtful first
    assert len(picks) == 2 and picks[0] < 15 and 15 <= picks[1] < 25
    cluster = [0] * 15 + [1] * 10 + [2] * 75
    assert {cluster[p] for p in rank(probs, feats, 3, "typical")} == {0, 1, 2}  # one image of each group


def test_every_rule_returns_n_distinct_indices_seeded() -> None:
    probs, feats = _confusions()
    for rule in RULES:
        a, b = rank(probs, feats, 7, rule, seed=3), rank(probs, feats, 7, rule, seed=3)
        assert a == b and len(set(a)) == 7 and all(0 <= i < 100 for i in a), rule
    assert rank(probs, feats, 500, "margin-diverse")[:3] and len(rank(probs, feats, 500, "random")) == 100
    with pytest.raises(UsageError, match="unknown suggestion rule"):
        rank(probs, feats, 3, "most-fun")


def test_kmeans_separates_clusters() -> None:
    _, feats = _confusions()
    _, assign = kmeans(feats, 3, seed=0)
    assert len({int(assign[i]) for i in range(15)}) == 1 and int(assign[0]) != int(assign[20])


def _digits(folder: Path, n: int, start: int = 0) -> None:
    raw = gzip.open(Path(os.environ["SMALLVISION_DATA"]) / "mnist" / "t10k-images-idx3-ubyte.gz").read()[16:]
    digits = np.frombuffer(raw, np.uint8).reshape(-1, 28, 28)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        Image.fromarray(digits[i]).save(folder / f"t{i:05d}.png")


def test_suggest_ranks_a_folder_of_unlabelled_digits(mnist_run: Path, tmp_path: Path) -> None:
    pool = tmp_path / "unlabelled"
    _digits(pool, 120)
    _digits(pool / "3", 5, start=500)  # already labelled: left out
    r = run_main("suggest", str(mnist_run), str(pool), "-n", "12", "--out", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    assert "suggested 12 of 120 unlabelled images (5 already in class folders left out)" in r.stdout
    rows = list(csv.DictReader(open(tmp_path / "s" / "suggestions.csv")))
    assert len(rows) == 120 and [int(x["rank"]) for x in rows] == list(range(1, 121))
    assert sum(x["suggested"] == "True" for x in rows) == 12 and all("/3/" not in x["file"] for x in rows)
    shown, rest = rows[:12], rows[12:]
    # the suggestions are the model's doubtful images: less sure than the rest on average
    assert np.mean([float(x["probability"]) for x in shown]) < np.mean([float(x["probability"]) for x in rest])
    png = Image.open(tmp_path / "s" / "suggestions.png")
    assert png.size[0] > 300 and png.size[1] > 150


def test_suggest_refuses_bad_folders_in_one_line(mnist_run: Path, mnist_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    mixed = tmp_path / "mixed"
    _digits(mixed / "3", 2)
    _digits(mixed / "zebra", 2, start=10)
    _digits(tmp_path / "ok", 3)
    for args, words in ((["empty"], "no images in this folder"),
                        (["mixed"], "zebra are not classes of this run"),
                        (["missing"], "no such folder")):
        r = run_main("suggest", str(mnist_run), str(tmp_path / args[0]))
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run_main("suggest", str(mnist_onnx), str(tmp_path / "ok"))
    assert r.returncode == 2 and "not an exported file" in r.stderr and "Traceback" not in r.stderr
    r = run_main("suggest", str(mnist_run), str(tmp_path / "ok"), "-n", "0")
    assert r.returncode == 2 and "at least one" in r.stderr
