"""Linear probe: how far the ImageNet features of a backbone go on their own, as a baseline for
the photo recipes. The frozen backbone's pooled features of every photo (centre crop at S px,
its own statistics), then scikit-learn's logistic regression on the training photos, scored on
the held-out ones — the same split the folder loader makes (a held-out folder, or the seeded
`holdout` share).

    SMALLVISION_DATA=../shared/data .venv/bin/python benchmarks/linear_probe.py \
        --sets hymenoptera,flowers-128 --sizes 224,128 --holdout 0.2 --out benchmarks/results/linear-probe.md

C (the inverse L2 strength) is chosen by 5-fold cross-validation on the training photos only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name, emit  # noqa: E402


def features(net: torch.nn.Module, items: list, size: int, mean: tuple, std: tuple) -> np.ndarray:
    from smallvision.data.folder import open_image, resize_center_crop

    m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for i in range(0, len(items), 64):
            x = torch.stack([torch.from_numpy(np.asarray(resize_center_crop(open_image(p, 3), size)).copy()).permute(2, 0, 1)
                             for p, _ in items[i : i + 64]]).float() / 255
            out.append(net.forward_head(net.forward_features((x - m) / s), pre_logits=True))
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="hymenoptera,flowers-128")
    ap.add_argument("--sizes", default="224")
    ap.add_argument("--holdout", type=float, default=0.2, help="test share of a folder without a held-out folder")
    ap.add_argument("--model", default="efficientnet-lite0", help="efficientnet-lite0, -lite1 or -lite2")
    ap.add_argument("--out")
    a = ap.parse_args()
    from sklearn.linear_model import LogisticRegressionCV

    from smallvision.data.folder import index_folder
    from smallvision.models.efficientnet_lite import timm_net, to_timm_layout
    from smallvision.models.pretrained import BACKBONES, imagenet_state

    torch.manual_seed(0)
    net = timm_net(1000, 0.0, int(a.model.removeprefix("efficientnet-lite")))
    net.load_state_dict(to_timm_layout(imagenet_state(a.model), net, a.model))
    net.eval()
    b = BACKBONES[a.model]
    root = Path(os.environ.get("SMALLVISION_DATA", "../shared/data")) / "photos"
    lines = [f"Linear probe of {a.model}'s pooled ImageNet features, {cpu_name()}, {os.cpu_count()} cores, "
             f"{time.strftime('%Y-%m-%d')}; command: benchmarks/linear_probe.py --sets {a.sets} --sizes {a.sizes} "
             f"--holdout {a.holdout:g}" + (f" --model {a.model}" if a.model != "efficientnet-lite0" else ""), "",
             "| set | split | px | train / held out | C (5-fold CV) | held-out accuracy | feature pass s |",
             "|---|---|---:|---|---:|---:|---:|"]
    for name in a.sets.split(","):
        idx = index_folder(root / name, a.holdout)
        split = idx.layout if "+" in idx.layout else f"seeded {a.holdout:.0%} held out"
        ytr, yte = np.array([y for _, y in idx.train]), np.array([y for _, y in idx.test])
        for size in map(int, a.sizes.split(",")):
            t0 = time.perf_counter()
            ftr, fte = features(net, idx.train, size, b.mean, b.std), features(net, idx.test, size, b.mean, b.std)
            secs = time.perf_counter() - t0
            clf = LogisticRegressionCV(Cs=[0.03, 0.1, 0.3, 1.0, 3.0], cv=5, max_iter=3000).fit(ftr, ytr)
            lines.append(f"| {name} | {split} | {size} | {len(ytr)} / {len(yte)} | {clf.C_[0]:g} "
                         f"| {100 * clf.score(fte, yte):.2f} % | {secs:.0f} |")
            print(lines[-1], flush=True)
    emit(lines, a.out)


if __name__ == "__main__":
    main()
