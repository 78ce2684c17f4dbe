"""Every kind of bad input we promise to answer with one line and exit status 2.

Shared by tests/test_bad_inputs.py (which checks each case) and scripts/bad_input_table.py
(which prints the table of the messages actually produced, in docs/runs.md).
"""

from __future__ import annotations

import gzip
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FAKE = "fake:1x12x12,classes=3,train=120,test=30"


@dataclass
class Case:
    what: str  # the bad input, in words
    args: Callable[[Path], list[str]]  # command-line arguments, given a scratch folder with the fixtures
    expect: str  # a fragment the one-line message must contain


def fixtures(d: Path) -> None:
    """Write every malformed file the cases refer to into `d`."""
    from smallvision.data.csvdata import write_csv
    from smallvision.data.idx import write_idx

    def idx_set(folder: Path, n_img: int = 20, n_lab: int = 20) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "t10k"):
            write_idx(folder / f"{split}-images-idx3-ubyte", np.zeros((n_img, 12, 12), np.uint8))
            write_idx(folder / f"{split}-labels-idx1-ubyte", (np.arange(n_lab) % 3).astype(np.uint8))
        return folder

    bad_magic = idx_set(d / "idx-magic")
    (bad_magic / "train-images-idx3-ubyte").write_bytes(b"\x08\x03\x00\x00" + b"\x00" * 64)
    trunc = idx_set(d / "idx-truncated")
    data = (trunc / "train-images-idx3-ubyte").read_bytes()
    (trunc / "train-images-idx3-ubyte").write_bytes(data[: len(data) // 2])
    idx_set(d / "idx-count", n_img=20, n_lab=19)
    gz = idx_set(d / "idx-gzip")
    (gz / "train-images-idx3-ubyte").unlink()
    blob = gzip.compress((trunc / "t10k-images-idx3-ubyte").read_bytes())
    (gz / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 2])
    nolab = idx_set(d / "idx-missing")
    (nolab / "t10k-labels-idx1-ubyte").unlink()
    (d / "cols.csv").write_text("1,0,0,0,0\n2,0,0,0\n")
    (d / "text.csv").write_text("1,0,0,0,0\n2,0,zero,0,0\n")
    (d / "label.csv").write_text("1,0,0,0,0\n-3,0,0,0,0\n")
    (d / "pixel.csv").write_text("1,0,0,0,0\n2,0,999,0,0\n")
    (d / "empty.csv").write_text("")
    write_csv(d / "oneclass.csv", np.zeros((10, 1, 2, 2), np.uint8), np.zeros(10, np.int64))

    class Payload:
        def __reduce__(self):
            return (print, ("PAYLOAD RAN",))

    (d / "evil.pt").write_bytes(pickle.dumps({"state_dict": Payload()}))
    (d / "empty-run").mkdir(exist_ok=True)
    (d / "typo.toml").write_text("[train]\nlearning_rate = 0.1\n")


def _run(d: Path) -> str:
    return str(d / "runs" / "ok")


CASES: list[Case] = [
    Case("unknown model name", lambda d: ["train", "--dataset", FAKE, "--model", "resnet-smal"], "did you mean resnet-small"),
    Case("unknown recipe", lambda d: ["train", "--recipe", "mnist-fsat"], "unknown recipe 'mnist-fsat'; did you mean mnist-fast"),
    Case("unknown data set", lambda d: ["train", "--dataset", "fashion"], "unknown data set 'fashion'"),
    Case("unknown optimiser", lambda d: ["train", "--dataset", FAKE, "--optimizer", "adamm"], "unknown optimizer 'adamm'; did you mean adam"),
    Case("unknown scheduler", lambda d: ["train", "--dataset", FAKE, "--scheduler", "cosin"], "unknown scheduler 'cosin'; did you mean cosine"),
    Case("learning rate 0", lambda d: ["train", "--dataset", FAKE, "--lr", "0"], "--lr must be > 0"),
    Case("negative learning rate", lambda d: ["train", "--dataset", FAKE, "--lr", "-0.1"], "--lr must be > 0"),
    Case("negative batch size", lambda d: ["train", "--dataset", FAKE, "--batch-size", "-1"], "--batch-size must be ≥ 1"),
    Case("epochs 0", lambda d: ["train", "--dataset", FAKE, "--epochs", "0"], "--epochs must be ≥ 1"),
    Case("epochs not a number", lambda d: ["train", "--epochs", "ten"], "Invalid value for '--epochs'"),
    Case("validation split as big as the data", lambda d: ["train", "--dataset", FAKE, "--val-size", "500"], "leaves no training images"),
    Case("label smoothing ≥ 1", lambda d: ["train", "--dataset", FAKE, "--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
    Case("unknown device", lambda d: ["train", "--dataset", FAKE, "--device", "tpu"], "--device must be auto, cpu, cuda or mps"),
    Case("fp16 on the CPU", lambda d: ["train", "--dataset", FAKE, "--device", "cpu", "--precision", "fp16"], "fp16 needs a GPU"),
    Case("unknown model option", lambda d: ["train", "--dataset", FAKE, "--model-arg", "depth=3"], "unexpected keyword argument 'depth'"),
    Case("model too big for the image size", lambda d: ["train", "--dataset", "digits", "--model", "seed-digit-cnn"], "input 1×8×8 is too small"),
    Case("malformed --normalize", lambda d: ["train", "--dataset", FAKE, "--normalize", "0.5"], "--normalize takes 2 numbers"),
    Case("malformed --checkpoint-every", lambda d: ["train", "--dataset", FAKE, "--checkpoint-every", "often"], "--checkpoint-every takes STEPS"),
    Case("bad fake-data option", lambda d: ["train", "--dataset", "fake:colour=red"], "unknown option 'colour'"),
    Case("IDX file with a wrong magic number", lambda d: ["train", "--dataset", f"idx:{d / 'idx-magic'}"], "not an IDX file (magic bytes 08030000"),
    Case("truncated IDX file", lambda d: ["train", "--dataset", f"idx:{d / 'idx-truncated'}"], "truncated: header promises"),
    Case("IDX images/labels count mismatch", lambda d: ["train", "--dataset", f"idx:{d / 'idx-count'}"], "count mismatch"),
    Case("truncated gzip IDX download", lambda d: ["train", "--dataset", f"idx:{d / 'idx-gzip'}"], "cannot decompress"),
    Case("IDX folder without test labels", lambda d: ["train", "--dataset", f"idx:{d / 'idx-missing'}"], "missing IDX files for test labels"),
    Case("IDX folder that does not exist", lambda d: ["train", "--dataset", f"idx:{d / 'nope'}"], "no such folder"),
    Case("CSV with a short row", lambda d: ["train", "--dataset", f"csv:{d / 'cols.csv'}"], "number of columns changed"),
    Case("CSV with a non-numeric cell", lambda d: ["train", "--dataset", f"csv:{d / 'text.csv'}"], "could not convert string 'zero'"),
    Case("CSV with a negative label", lambda d: ["train", "--dataset", f"csv:{d / 'label.csv'}"], "label -3 is not a class index"),
    Case("CSV with a pixel above 255", lambda d: ["train", "--dataset", f"csv:{d / 'pixel.csv'}"], "pixel 999 outside 0-255"),
    Case("empty CSV file", lambda d: ["train", "--dataset", f"csv:{d / 'empty.csv'}"], "empty CSV file"),
    Case("missing CSV file", lambda d: ["train", "--dataset", f"csv:{d / 'none.csv'}"], "file not found"),
    Case("a data set with one class", lambda d: ["train", "--dataset", f"csv:{d / 'oneclass.csv'}"], "a single class"),
    Case("named data set found nowhere", lambda d: ["train", "--dataset", "kmnist", "--data-dir", str(d / "nowhere")], "looked in:"),
    Case("checkpoint that does not exist", lambda d: ["evaluate", str(d / "missing.safetensors")], "no such checkpoint"),
    Case("a pickle given as a checkpoint", lambda d: ["evaluate", str(d / "evil.pt")], "pickled checkpoints are refused"),
    Case("a run folder without checkpoints", lambda d: ["evaluate", str(d / "empty-run")], "no best.safetensors"),
    Case("evaluate on data of another image size", lambda d: ["evaluate", _run(d), "--dataset", "fake:1x16x16,classes=3"], "images are 1×16×16 but the model takes 1×12×12"),
    Case("evaluate on data with more classes", lambda d: ["evaluate", _run(d), "--dataset", "fake:1x12x12,classes=5"], "5 classes but the model predicts 3"),
    Case("evaluate an unknown split", lambda d: ["evaluate", _run(d), "--split", "train"], "--split must be test or val"),
    Case("resume a folder with no state", lambda d: ["train", "--resume", str(d / "empty-run")], "nothing to resume"),
    Case("resume with a changed batch size", lambda d: ["train", "--resume", _run(d), "--batch-size", "7"], "cannot resume with a changed 'batch_size'"),
    Case("resume a finished run", lambda d: ["train", "--resume", _run(d)], "already finished"),
    Case("compare with nothing to compare", lambda d: ["compare"], "compare needs --recipes"),
    Case("compare with 0 seeds", lambda d: ["compare", "--recipes", "mnist-fast", "--seeds", "0"], "--seeds must be ≥ 1"),
    Case("unknown flag", lambda d: ["train", "--epoch", "3"], "No such option: --epoch"),
    Case("unknown command", lambda d: ["trian"], "No such command 'trian'"),
    Case("unknown augmentation preset", lambda d: ["train", "--dataset", FAKE, "--augment", "digit"], "unknown augmentation 'digit'; did you mean digits"),
    Case("an ensemble of one", lambda d: ["train", "--dataset", FAKE, "--ensemble", "1"], "--ensemble takes K ≥ 2"),
    Case("folder stream option not yes/no/auto", lambda d: ["train", "--dataset", f"folder:{d},stream=maybe"], "stream takes auto, yes or no"),
    Case("unknown --set key", lambda d: ["lr-find", "--dataset", FAKE, "--set", "learning_rate=0.1"], "unknown setting 'learning_rate'"),
    Case("validation size neither a fraction nor a count", lambda d: ["train", "--dataset", FAKE, "--val-size", "1.5"], "--val-size must be a fraction in [0, 1) or a whole count"),
    Case("unknown setting in a --config file", lambda d: ["train", "--config", str(d / "typo.toml")], "unknown setting 'learning_rate'; did you mean lr"),
    Case("a data-set option the set does not take", lambda d: ["train", "--dataset", "digits", "--data-arg", "size=32"], "digits: unknown option 'size'; known: none"),
    Case("a GAN asked of an autoencoder model", lambda d: ["gan", "train", "--dataset", "digits", "--model", "ae-mlp"], "'ae-mlp' is an autoencoder, not a GAN"),
]
