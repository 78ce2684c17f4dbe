"""Every registered data set, the file search order, the validation split and the batch loader."""

import warnings

import numpy as np
import pytest
import torch

from conftest import needs_fashion, needs_mnist
from smallvision.data import TensorLoader, load_dataset, split_validation
from smallvision.data.csvdata import write_csv
from smallvision.data.idx import write_idx
from smallvision.data.loader import random_translate
from smallvision.errors import DataError, UsageError


def _write_idx_set(folder, n_train=40, n_test=10, names=("train", "t10k"), gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    for split, n in zip(names, (n_train, n_test), strict=True):
        write_idx(folder / f"{split}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", (np.arange(n) % 10).astype(np.uint8))
    return folder


def test_fake_shapes_and_classes():
    d = load_dataset("fake:3x16x12,classes=4,train=40,test=8")
    assert d.train_x.shape == (40, 3, 16, 12) and d.test_x.shape == (8, 3, 16, 12)
    assert d.info.num_classes == 4 and d.info.channels == 3 and d.train_x.dtype == torch.uint8
    with pytest.raises(UsageError, match="unknown option"):
        load_dataset("fake:color=red")


def test_digits_is_offline_and_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.info.input_shape == (1, 8, 8) and a.info.num_classes == 10
    assert len(a.train_x) + len(a.test_x) == 1797 and torch.equal(a.test_y, b.test_y)
    assert int(a.train_x.max()) == 255


def test_idx_dir_any_names_gz_or_raw(tmp_path):
    _write_idx_set(tmp_path / "a")
    _write_idx_set(tmp_path / "b", names=("my-train", "my-test"), gz=False)
    for sub in ("a", "b"):
        d = load_dataset(f"idx:{tmp_path / sub}")
        assert len(d.train_x) == 40 and len(d.test_x) == 10 and d.info.num_classes == 10
    (tmp_path / "b" / "my-test-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match="missing IDX files for test labels"):
        load_dataset(f"idx:{tmp_path / 'b'}")
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(f"idx:{tmp_path / 'nope'}")


def test_csv_train_and_optional_test(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (70, 1, 28, 28), dtype=np.uint8)
    y = np.arange(70) % 10
    write_csv(tmp_path / "tr.csv", x, y, header=False)
    write_csv(tmp_path / "te.csv", x[:20], y[:20], header=True)
    d = load_dataset(f"csv:{tmp_path / 'tr.csv'},{tmp_path / 'te.csv'}")
    assert len(d.train_x) == 70 and len(d.test_x) == 20 and torch.equal(d.train_x, torch.from_numpy(x))
    d2 = load_dataset(f"csv:{tmp_path / 'tr.csv'}")
    assert len(d2.train_x) + len(d2.test_x) == 70 and len(d2.test_x) == 10


def test_csv_label_gap_is_warned(tmp_path):
    """Class indices run 0..max label; a label never used in training is worth a warning, not silence."""
    x = np.zeros((30, 1, 28, 28), dtype=np.uint8)
    write_csv(tmp_path / "ok.csv", x, np.arange(30) % 3)
    write_csv(tmp_path / "gap.csv", x, np.array([0, 1, 5] * 10))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_dataset(f"csv:{tmp_path / 'ok.csv'},{tmp_path / 'ok.csv'}").info.num_classes == 3
    with pytest.warns(UserWarning, match="no training image has label 2, 3, 4; the model still gets 6 outputs"):
        d = load_dataset(f"csv:{tmp_path / 'gap.csv'},{tmp_path / 'ok.csv'}")
    assert d.info.num_classes == 6


def test_search_order_data_dir_then_env(tmp_path, monkeypatch):
    _write_idx_set(tmp_path / "env" / "kmnist", n_train=30)
    _write_idx_set(tmp_path / "explicit", n_train=20)
    monkeypatch.setenv("SMALLVISION_DATA", str(tmp_path / "env"))
    assert len(load_dataset("kmnist").train_x) == 30
    assert len(load_dataset("kmnist", data_dir=tmp_path / "explicit").train_x) == 20


def test_missing_named_set_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("SMALLVISION_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataError) as e:
        load_dataset("kmnist", data_dir=tmp_path / "mine")
    msg = str(e.value)
    for place in (tmp_path / "mine", tmp_path / "nowhere" / "kmnist", tmp_path / "cache" / "smallvision" / "kmnist",
                  "/usr/share/datasets/kmnist"):
        assert str(place) in msg
    assert "SMALLVISION_OFFLINE" in msg and "\n" not in msg
    with pytest.raises(DataError, match="cifar-10-batches-py.*Download cifar-10-python.tar.gz"):
        load_dataset("cifar10", data_dir=tmp_path / "mine")


@needs_mnist
def test_real_mnist_matches_published_statistics():
    d = load_dataset("mnist")
    assert d.train_x.shape == (60000, 1, 28, 28) and d.test_x.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.train_y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert d.info.mean == pytest.approx((0.1307,), abs=2e-3) and d.info.std == pytest.approx((0.3081,), abs=2e-3)


@needs_fashion
def test_real_fashion_mnist_class_names():
    d = load_dataset("fashion-mnist")
    assert d.info.class_names[0] == "T-shirt/top" and d.info.class_names[9] == "Ankle boot"
    assert torch.bincount(d.test_y).tolist() == [1000] * 10


def test_validation_split_is_seeded_and_disjoint():
    tr, va = split_validation(100, 0.2, seed=3)
    tr2, va2 = split_validation(100, 0.2, seed=3)
    assert torch.equal(va, va2) and len(va) == 20 and len(tr) == 80
    assert not set(tr.tolist()) & set(va.tolist())
    assert len(split_validation(100, 30, seed=0)[1]) == 30 and len(split_validation(100, 0, 0)[1]) == 0
    assert not torch.equal(split_validation(100, 0.2, seed=4)[1], va)
    with pytest.raises(UsageError, match="leaves no training images"):
        split_validation(100, 100, 0)


def test_loader_covers_every_sample_and_is_reproducible():
    x = torch.arange(10, dtype=torch.float32).view(10, 1, 1, 1)
    y = torch.arange(10)
    loader = TensorLoader(x, y, batch_size=3, shuffle=True, seed=1)
    ep1 = [b[1] for b in loader.batches(1)]
    assert len(ep1) == len(loader) == 4 and sorted(torch.cat(ep1).tolist()) == list(range(10))
    assert all(torch.equal(a, b[1]) for a, b in zip(ep1, loader.batches(1), strict=True))
    assert not torch.equal(torch.cat(ep1), torch.cat([b[1] for b in loader.batches(2)]))
    tail = [b[1] for b in loader.batches(1, start_step=2)]
    assert all(torch.equal(a, b) for a, b in zip(ep1[2:], tail, strict=True))  # exact mid-epoch resume
    full = TensorLoader(x, y, batch_size=0, shuffle=False)
    assert len(full) == 1 and torch.equal(next(iter(full))[1], y)


def test_random_translate_moves_content():
    x = torch.zeros(64, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    g = torch.Generator().manual_seed(0)
    out = random_translate(x, 2, g)
    assert out.shape == x.shape and torch.all(out.sum((1, 2, 3)) == 1)
    pos = out.view(64, -1).argmax(1)
    rows, cols = pos // 9, pos % 9
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6 and len(set(pos.tolist())) > 5


def test_torch_data_order_replays_a_dataloader():
    """data_order='torch' gives the batches a tutorial's DataLoader(shuffle=True) gives, epoch by epoch."""
    from smallvision.data.loader import torch_order_seed

    x = torch.arange(20, dtype=torch.float32).view(20, 1, 1, 1)
    y = torch.arange(20)
    torch.manual_seed(420)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6, shuffle=True)
    expected = [[b[1].tolist() for b in dl] for _ in range(3)]
    torch.manual_seed(420)
    loader = TensorLoader(x, y, batch_size=6, shuffle=True)
    got = [[b[1].tolist() for b in loader.batches(e, perm_seed=torch_order_seed())] for e in range(1, 4)]
    assert got == expected


def test_full_batch_is_not_copied_every_step():
    # one batch per epoch: shuffling would only copy the whole set each step (seed 001/004: 50 000 steps)
    x, y = torch.randn(50, 1, 4, 4), torch.arange(50)
    xb, yb = next(TensorLoader(x, y, batch_size=0, shuffle=True, seed=3).batches(7))
    assert xb.data_ptr() == x.data_ptr() and torch.equal(yb, y)


def test_normalized_view_rows_match_the_normalized_tensor():
    """A big image set is held as uint8 and normalised per slice (NormalizedView); one row by an
    int index is (C, H, W) like a tensor's (the report's top-loss grid reads rows one by one)."""
    from smallvision.data.loader import NormalizedView, normalize

    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    full = normalize(x, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])
    view = NormalizedView(x, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3], channels_last=False)
    assert view[2].shape == (3, 4, 4) and torch.allclose(view[2], full[2])
    assert torch.allclose(view[1:3], full[1:3]) and torch.allclose(view[torch.tensor([4, 0])], full[[4, 0]])
