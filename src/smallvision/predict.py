"""Predict on users' own image files with exactly the preprocessing the model was trained with.

    from smallvision.predict import Predictor
    p = Predictor.from_checkpoint("runs/mnist-fast-.../")
    p.predict(["scan.jpg", pil_image, numpy_array])   # -> [{"label", "probability", "top_k"}, ...]

Everything is rebuilt from the checkpoint's metadata: channels, size, normalisation, class
names. For digit models (trained on MNIST-style data: light strokes on a dark background)
a dark-on-light photo or scan is inverted (``invert="auto"`` looks at the border), and the
digit is cropped to its ink, scaled into a 20/28 box and centred by its centre of mass, as
MNIST itself was made. Other models get resize + centre crop.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from smallvision.data.folder import IMAGE_EXTS, open_image, resize_center_crop, resize_hv
from smallvision.data.info import DatasetInfo
from smallvision.errors import UsageError

NONE_OF_THESE = "none of these"  # the label of an image that scores beyond the model's OOD threshold


def mnist_style(gray: np.ndarray, size: int) -> np.ndarray:
    """Light-on-dark float image in [0, 1] -> (size, size): ink cropped, fitted into a
    size·20/28 box (aspect kept), placed so its centre of mass is the image centre."""
    from PIL import Image

    # paper is never exactly black after inversion: subtract its level (the border median),
    # stretch the ink to 1 and zero the faint noise, so the background is 0 as in MNIST
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    gray = np.clip((gray - np.median(border)) / max(float(gray.max()) - float(np.median(border)), 1e-6), 0, 1)
    gray[gray < 0.15] = 0
    ink = gray > 0.3
    if not ink.any():
        return np.asarray(resize_hv(Image.fromarray((gray * 255).astype(np.uint8)), (size, size), Image.BILINEAR)) / 255.0
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    box = max(1, round(size * 20 / 28))
    h, w = crop.shape
    s = box / max(h, w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    small = np.asarray(resize_hv(Image.fromarray((crop * 255).astype(np.uint8)), (nw, nh), Image.LANCZOS)) / 255.0
    canvas = np.zeros((size, size))
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top : top + nh, left : left + nw] = small
    total = canvas.sum()
    if total > 0:  # shift the centre of mass to the centre
        yy, xx = np.mgrid[:size, :size]
        dy = int(round((size - 1) / 2 - (yy * canvas).sum() / total))
        dx = int(round((size - 1) / 2 - (xx * canvas).sum() / total))
        canvas = np.roll(np.roll(canvas, dy, axis=0), dx, axis=1)
    return canvas


class Predictor:
    def __init__(self, model: torch.nn.Module, meta: dict[str, Any], device: str | torch.device = "cpu") -> None:
        self.model = model.eval()
        self.meta = meta
        self.info = DatasetInfo.from_dict(meta["dataset"])
        self.device = torch.device(device)
        self.classes = list(self.info.class_names) or [str(i) for i in range(self.info.num_classes)]
        self._mean = torch.tensor(self.info.mean).view(-1, 1, 1)
        self._std = torch.tensor(self.info.std).view(-1, 1, 1)
        self.card: dict[str, Any] = {"model": meta.get("model"), "dataset": self.info.name}
        if self.info.multilabel:  # one sigmoid per class; every class at or above its threshold is predicted
            from smallvision.multilabel import thresholds_of

            self.thresholds: list[float] | None = thresholds_of(meta)
        else:
            self.thresholds = None
        self.ood: dict[str, Any] | None = meta.get("ood") if isinstance(meta.get("ood"), dict) else None
        self.ood_threshold = float(self.ood["threshold"]) if self.ood else None

    def accept(self, share: float | None) -> None:
        """Answer "none of these" at another operating point: `share` of the validation images
        accepted (ood.threshold_at); None: the stored threshold."""
        if share is not None and self.ood is None:
            raise UsageError("--accept: this model carries no OOD detector (it was trained with ood=none, or by a "
                             "smallvision without \"none of these\"; train it again to get one)")
        if self.ood is not None:
            from smallvision.ood import threshold_at

            self.ood_threshold = threshold_at(self.ood, share)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", onnx_threads: int = 0) -> Predictor:
        """A run folder, a .safetensors checkpoint, or an exported .onnx file (run by onnxruntime
        on the CPU with `onnx_threads` threads (0: all), the preprocessing stored inside it)."""
        from smallvision.engine.device import resolve_device
        from smallvision.modelfile import load_any, model_card, resolve

        onnx = str(path).lower().endswith(".onnx")
        device = "cpu" if onnx else str(resolve_device(device))  # the same rule as train and evaluate
        model, meta = load_any(path, device, onnx_threads)
        p = cls(model, meta, device)
        p.card = model_card(meta, None if onnx else resolve(path))  # an exported file carries its card
        return p

    def preprocess_files(self, files: Sequence[str | Path]) -> tuple[list[torch.Tensor], list[str], list[str]]:
        """Each readable file's model input; the files read; the unreadable ones as "file: reason"
        (the others still go on: what suggest and calibrate --ood-examples judge)."""
        xs: list[torch.Tensor] = []
        kept: list[str] = []
        skipped: list[str] = []
        for f in files:
            try:
                xs.append(self.preprocess(f))
                kept.append(str(f))
            except UsageError:
                raise
            except Exception as e:  # an unreadable file is named, the others judged
                skipped.append(f"{f}: {type(e).__name__}")
        return xs, kept, skipped

    def preprocess(self, image: Any, invert: str = "auto", center: str = "auto") -> torch.Tensor:
        """A path, PIL image or array -> the model's normalised input (C, H, W)."""
        from PIL import Image

        c, h, w = self.info.input_shape
        if isinstance(image, (str, Path)):
            # a JPEG decodes at the reduction that keeps it ≥ the model's input (draft mode), except
            # for digit models, whose ink is cropped and centred from the whole image
            digits = c == 1 and h == w and (center == "yes" or (center == "auto" and self.info.is_digit_style()))
            im = open_image(Path(image), c, None if digits else min(h, w))
        elif isinstance(image, np.ndarray):
            im = Image.fromarray(image if image.dtype == np.uint8 else (np.clip(image, 0, 1) * 255).astype(np.uint8))
            im = im.convert("L" if c == 1 else "RGB")
        else:
            im = image.convert("L" if c == 1 else "RGB")
        if c == 1:
            g = np.asarray(im, dtype=np.float64) / 255.0
            dark_background = self.info.mean[0] < 0.5
            if invert not in ("auto", "yes", "no") or center not in ("auto", "yes", "no"):
                raise UsageError("--invert and --center take auto, yes or no")
            border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
            flip = invert == "yes" or (invert == "auto" and dark_background and np.median(border) > 0.5)
            if flip:
                g = 1.0 - g
            if h == w and (center == "yes" or (center == "auto" and self.info.is_digit_style())):
                arr = mnist_style(g, h)
            else:
                pim = resize_center_crop(Image.fromarray((g * 255).astype(np.uint8)), min(h, w))
                arr = np.asarray(resize_hv(pim, (w, h), Image.BICUBIC), dtype=np.float64) / 255.0
            x = torch.from_numpy(arr).float()[None]
        else:
            pim = resize_hv(resize_center_crop(im, min(h, w)), (w, h), Image.BICUBIC)
            x = torch.from_numpy(np.asarray(pim, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def predict(self, images: Sequence[Any], top_k: int = 3, invert: str = "auto", center: str = "auto",
                batch_size: int = 256, accept: float | None = None) -> list[dict[str, Any]]:
        """One dict per input: label, probability, top_k [(label, p)...]; or error for unreadable files.
        A multi-label model adds ``labels`` (every class at or above its threshold, most probable
        first; ``label`` is them joined by spaces, fastai's layout) and its probabilities are
        per-class sigmoids, so they do not sum to 1. A model with an OOD detector adds ``ood_score``
        and ``none_of_these`` (then ``label`` is "none of these"), at `accept` (the share of the
        run's validation images accepted) when given, else at the predictor's threshold."""
        out: list[dict[str, Any]] = []
        ready: list[tuple[int, torch.Tensor]] = []
        for i, img in enumerate(images):
            name = str(img) if isinstance(img, (str, Path)) else f"<image {i}>"
            out.append({"file": name})
            try:
                ready.append((i, self.preprocess(img, invert, center)))
            except UsageError:
                raise
            except Exception as e:  # unreadable file: reported for this file, the others still predicted
                out[i]["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        k = max(1, min(top_k, len(self.classes)))
        threshold = self.ood_threshold
        if accept is not None:
            from smallvision.ood import threshold_at

            if self.ood is None:
                raise UsageError("accept: this model carries no OOD detector")
            threshold = threshold_at(self.ood, accept)
        for start in range(0, len(ready), batch_size):
            chunk = ready[start : start + batch_size]
            x = torch.stack([t for _, t in chunk]).to(self.device)
            from smallvision.ood import scores

            logits, strange = scores(self.model, x)
            logits = logits.float().cpu()
            probs = logits.sigmoid() if self.thresholds is not None else logits.softmax(1)
            p, idx = probs.topk(k, dim=1)
            for n, ((i, _), pi, ii) in enumerate(zip(chunk, p, idx, strict=True)):
                out[i].update(label=self.classes[int(ii[0])], probability=round(float(pi[0]), 4),
                              top_k=[(self.classes[int(j)], round(float(q), 4)) for q, j in zip(pi, ii, strict=True)])
                if strange is not None and threshold is not None:
                    # "none of these": the image scores beyond what the run accepted of its validation images
                    s = float(strange[n])
                    out[i].update(ood_score=round(s, 4), none_of_these=s > threshold, ood_threshold=round(threshold, 6))
                    if s > threshold:
                        out[i]["label"] = NONE_OF_THESE
            if self.thresholds is not None:
                from smallvision.multilabel import predicted_labels

                for (i, _), names in zip(chunk, predicted_labels(probs, self.thresholds, self.classes), strict=True):
                    out[i].update(labels=names, label=" ".join(names))
        return out


def expand_inputs(inputs: Iterable[str]) -> list[str]:
    """Files, folders (searched recursively for images) and glob patterns -> file list."""
    files: list[str] = []
    for item in inputs:
        p = Path(item)
        if any(ch in item for ch in "*?["):
            matched = sorted(glob.glob(item, recursive=True))
            if not matched:
                raise UsageError(f"{item}: the pattern matches no files")
            files += matched
        elif p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith("."))
            if not found:
                raise UsageError(f"{item}: no images in this folder")
            files += found
        else:
            files.append(item)  # missing files are reported per file
    return files
