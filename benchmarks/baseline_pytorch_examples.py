"""A faithful pytorch/examples-style MNIST baseline, for time-to-accuracy comparisons.

Written from the recipe of pytorch/examples' mnist/main.py (not copied): conv 1→32→64 (k3),
max-pool, dropout 0.25, fc 9216→128, dropout 0.5, fc 128→10, log-softmax + NLL; Adadelta lr 1.0,
StepLR(1, γ=0.7), batch 64 (test 1000), ToTensor + Normalize(0.1307, 0.3081) through a
torchvision dataset and DataLoader (per-sample PIL transforms, as users run it), 14 epochs,
the test set evaluated after every epoch.

    .venv/bin/python benchmarks/baseline_pytorch_examples.py --data ../shared/data/mnist [--epochs 3] [--target 99]
Prints one JSON line per epoch and a final JSON line with seconds to reach --target test accuracy
(training time only: the per-epoch test passes are excluded from the clock).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.drop1, self.drop2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv2(F.relu(self.conv1(x)))), 2)
        x = self.drop2(F.relu(self.fc1(torch.flatten(self.drop1(x), 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True, help="folder with the four MNIST IDX .gz files")
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--target", type=float, default=99.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    from torchvision import datasets, transforms

    torch.manual_seed(a.seed)
    root = Path(tempfile.mkdtemp())
    (root / "MNIST" / "raw").mkdir(parents=True)
    import gzip

    for f in a.data.glob("*-ubyte.gz"):  # torchvision's layout: it wants the files decompressed
        (root / "MNIST" / "raw" / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = torch.utils.data.DataLoader(datasets.MNIST(root, train=True, transform=tf),
                                        batch_size=64, shuffle=True)
    test = torch.utils.data.DataLoader(datasets.MNIST(root, train=False, transform=tf), batch_size=1000)
    model = Net()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7)
    clock, reached = 0.0, None
    for epoch in range(1, a.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        for x, y in train:
            opt.zero_grad()
            F.nll_loss(model(x), y).backward()
            opt.step()
        sched.step()
        clock += time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test:
                correct += int((model(x).argmax(1) == y).sum())
        acc = 100.0 * correct / len(test.dataset)
        print(json.dumps({"epoch": epoch, "test_accuracy": acc, "train_seconds": round(clock, 2)}), flush=True)
        if reached is None and acc >= a.target:
            reached = clock
            break
    print(json.dumps({"baseline": "pytorch/examples mnist", "target": a.target, "seconds_to_target": reached,
                      "epochs": epoch, "test_accuracy": acc, "train_seconds": round(clock, 2)}))


if __name__ == "__main__":
    main()
