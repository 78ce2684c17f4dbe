"""Image folders: ``folder:PATH[,size=S]``.

Layouts, tried in this order:
  PATH/train/<class>/* and PATH/val|valid|test/<class>/*   (the held-out folder is the test split)
  PATH/<class>/*                                         (one sub-folder per class)
  PATH/<class>.<n>.jpg                                   (flat, label = file-name prefix: Kaggle's cat.123.jpg)
Without a held-out folder a fixed seeded share of the images is the test split (1/7, or
``holdout=F``; the draw is the same on every machine and run, so the test set never changes). The user's files
are never moved or copied: images are decoded once (DataLoader worker processes) into uint8
tensors at S×S (shorter side resized to S, centre crop), then trained on in memory. A training
set bigger than STREAM_BYTES decoded (or ``stream=yes``) is streamed instead: worker processes
decode each batch's files every epoch (data/stream.py). A JPEG is decoded at a reduced scale
(libjpeg's DCT scaling: 1/2, 1/4 or 1/8, its shorter side kept at S or more), so a 24-MP phone
photo costs little more than a small one. Which files are images, and the HEIC/AVIF readers, are
data/formats.py's. What is left out (unreadable, not an image, or a format whose reader is not
installed) is named and counted in one warning line and in the report; a class folder that
holds only photos whose reader is missing is an error naming the package to install.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from smallvision.data import formats
from smallvision.data.datasets import DATASETS, ImageData, channel_stats, make_data
from smallvision.data.formats import IMAGE_EXTS, NOT_AN_IMAGE, MissingReader
from smallvision.data.info import DatasetInfo, looks_like_digits
from smallvision.errors import DataError, UsageError

HELD_OUT = ("val", "valid", "validation", "test")
STREAM_BYTES = 3 << 30  # decoded uint8 training images above this are streamed from the files (stream=auto)


@dataclass
class FolderIndex:
    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    layout: str
    ignored: list[Path] = field(default_factory=list)  # files that are not images
    no_reader: list[Path] = field(default_factory=list)  # images whose reader is not installed (HEIC without pillow-heif)

    def left_out(self) -> list[str]:
        """The files found but not used, as ``"PATH (REASON)"`` entries (ImageData.skipped's form)."""
        return ([f"{p} ({NOT_AN_IMAGE})" for p in self.ignored]
                + [f"{p} ({formats.missing_reader(p)})" for p in self.no_reader])

    def files_found(self) -> int:
        return len(self.train) + len(self.test) + len(self.ignored) + len(self.no_reader)


def _images_under(folder: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(images, files that are not images, images whose reader is not installed); hidden files
    (.DS_Store, ._IMG_1.jpg) are passed over silently."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in IMAGE_EXTS]
    no_reader = [p for p in images if formats.missing_reader(p)]
    missing = set(no_reader)
    return [p for p in images if p not in missing], [p for p in files if p.suffix.lower() not in IMAGE_EXTS], no_reader


def _only_unreadable_formats(where: str, images: list[Path], no_reader: list[Path]) -> None:
    """A class folder of photos that all need a reader that is not installed: training without
    the class would be silently wrong, so it is an error naming the package."""
    if images or not no_reader:
        return
    kinds = sorted({formats.kind(p) for p in no_reader})
    raise DataError(f"{where}: its {len(no_reader)} photo(s) are all {'/'.join(kinds)} and the "
                    f"{formats.missing_reader(no_reader[0])}; install it and run again")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_items(root: Path, split_dir: Path, classes: list[str], strict: bool, ignored: list[Path],
                 no_reader: list[Path]) -> list[tuple[Path, int]]:
    """(photo, class index) for each class folder of `split_dir` (a class may be absent from a
    split); files that are not images and photos with no reader go to `ignored` / `no_reader`."""
    items = []
    for ci, c in enumerate(classes):
        if not (split_dir / c).is_dir():
            continue
        imgs, other, missing = _images_under(split_dir / c)
        if strict:
            where = f"{split_dir.name}/{c}/" if split_dir != root else f"{c}/"
            _only_unreadable_formats(f"folder:{root}: class folder {where}", imgs, missing)
        items += [(p, ci) for p in imgs]
        ignored += other
        no_reader += missing
    return items


def index_folder(root: str | Path, holdout: float | None = None, strict: bool = True) -> FolderIndex:
    """The folder's layout, classes and splits. `strict`: a class whose photos all need a reader
    that is not installed is an error (train); `check` passes False and lists them instead."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"folder:{root}: no such folder")
    subdirs = {p.name.lower(): p for p in _class_dirs(root)}
    ignored: list[Path] = []
    no_reader: list[Path] = []
    held = next((subdirs[n] for n in HELD_OUT if n in subdirs), None)
    if "train" in subdirs and held is not None:
        classes = [p.name for p in _class_dirs(subdirs["train"])]
        splits = [_class_items(root, split_dir, classes, strict, ignored, no_reader)
                  for split_dir in (subdirs["train"], held)]
        extra = sorted({p.name for p in _class_dirs(held)} - set(classes))
        if extra:
            raise DataError(f"folder:{root}: {held.name}/ has classes missing from train/: {', '.join(extra)}")
        train, test, layout = splits[0], splits[1], f"train/ + {held.name}/"
    elif subdirs:
        classes = [p.name for p in _class_dirs(root)]
        items = _class_items(root, root, classes, strict, ignored, no_reader)
        train, test, layout = _hold_out(items, holdout), None, "one sub-folder per class"
    else:
        imgs, other, missing = _images_under(root)
        ignored += other
        no_reader += missing
        prefix = lambda p: p.name.split(".")[0].split("_")[0]  # noqa: E731
        if strict:
            for c in sorted({prefix(p) for p in missing} - {prefix(p) for p in imgs}):
                _only_unreadable_formats(f"folder:{root}: class {c} (file-name prefix)", [],
                                         [p for p in missing if prefix(p) == c])
        prefixes = [prefix(p) for p in imgs]
        classes = sorted(set(prefixes))
        items = [(p, classes.index(c)) for p, c in zip(imgs, prefixes, strict=True)]
        train, test, layout = _hold_out(items, holdout), None, "flat, label = file-name prefix"
    if test is None:
        train, test = train  # type: ignore[misc]
    if not train and no_reader:
        raise DataError(f"folder:{root}: no readable images found ({layout}): {len(no_reader)} photo(s) whose "
                        f"{formats.missing_reader(no_reader[0])}")
    if not train:
        raise DataError(f"folder:{root}: no images found ({layout}; looked for {', '.join(sorted(IMAGE_EXTS))})")
    if len(classes) < 2:
        raise DataError(f"folder:{root}: only one class ({classes[0] if classes else 'none'}); a classifier needs "
                        "at least two sub-folders (or file-name prefixes)")
    return FolderIndex(root, classes, train, test, layout, ignored, no_reader)


def _hold_out(items: list[tuple[Path, int]], share: float | None) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]]]:
    perm = np.random.default_rng(0).permutation(len(items))  # fixed: the test set never changes
    n_test = len(items) // 7 if share is None else round(len(items) * share)
    return [items[i] for i in sorted(perm[n_test:])], [items[i] for i in sorted(perm[:n_test])]


def open_image(path: Path, channels: int, size: int | None = None):  # type: ignore[no-untyped-def]
    """Decode fully (a JPEG cut short inside its data only fails here), turn it upright by its
    EXIF orientation (phone photos; HEIC files come upright from libheif), and convert the mode:
    palette/alpha images are composited on white; 16-bit and 32-bit grayscale are scaled to 8
    bits (not clipped); CMYK, YCbCr, ... go through PIL's conversion; 1 channel = luminance, 3 = RGB.

    `size`: the side the image will be resized to (its shorter side, then a centre crop). A JPEG
    is then decoded at the largest reduction (1/2, 1/4, 1/8: JPEG draft mode, done inside
    libjpeg's inverse DCT) that keeps both sides at `size` or more: a 6000 × 4000 photo for 224
    px decodes at 750 × 500, and the resize that follows gives nearly the same pixels. Other
    formats decode whole. A format whose reader is not installed raises MissingReader."""
    from PIL import Image, ImageOps

    formats.register()
    if why := formats.missing_reader(path):
        raise MissingReader(why)
    with Image.open(path) as im:
        if size:
            im.draft(None, (size, size))  # JPEG only; a no-op for other formats
        im.load()
        im = ImageOps.exif_transpose(im)
        if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            a = np.asarray(im, dtype=np.float64)
            top = 65535.0 if a.max(initial=0) > 255 else 255.0
            im = Image.fromarray(np.clip(a / top * 255 + 0.5, 0, 255).astype(np.uint8), "L")
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        return im.convert("L" if channels == 1 else "RGB")


def resize_hv(im, size: tuple[int, int], resample: int):  # type: ignore[no-untyped-def]
    """Pillow's ``im.resize(size, resample)`` with the horizontal pass always first. Pillow 13 picks
    the order of its two passes from the image's shape, and the 8-bit rounding between them moves
    a pixel by one level: pinned here, training, `predict` and the exported web page (which does
    the same in JavaScript, smallvision/web/preprocess.js) give the same pixels on any Pillow."""
    w, h = size
    if im.width != w:
        im = im.resize((w, im.height), resample)
    if im.height != h:
        im = im.resize((w, h), resample)
    return im


def resize_center_crop(im, size: int):  # type: ignore[no-untyped-def]
    from PIL import Image

    w, h = im.size
    s = size / min(w, h)
    im = resize_hv(im, (max(size, round(w * s)), max(size, round(h * s))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


class _Decode(torch.utils.data.Dataset):
    def __init__(self, items: list[tuple[Path, int]], channels: int, size: int) -> None:
        self.items, self.channels, self.size = items, channels, size

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):  # type: ignore[no-untyped-def]
        path, _ = self.items[i]
        try:
            im = resize_center_crop(open_image(path, self.channels, self.size), self.size)
        except Exception as e:  # PIL raises many types for broken files; each is "unreadable"
            return (torch.zeros(self.channels, self.size, self.size, dtype=torch.uint8), False,
                    formats.failure_reason(path, e))
        a = np.asarray(im, dtype=np.uint8)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(a)), True, ""


def decode_all(items: list[tuple[Path, int]], channels: int, size: int, workers: int, warn: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Decode every image with DataLoader worker processes; skip (and name) unreadable ones,
    as ``"PATH (REASON)"`` entries; `warn`: one warning per skipped file (the folder loader
    warns once for all of them instead)."""
    # batches of 16: the workers share even a small folder's photos (24-MP JPEGs take 0.1 s each)
    loader = torch.utils.data.DataLoader(_Decode(items, channels, size), batch_size=16, num_workers=workers,
                                         collate_fn=lambda b: b)
    xs, keep, skipped = [], [], []
    i = 0
    for batch in loader:
        for x, ok, err in batch:
            if ok:
                xs.append(x)
                keep.append(items[i][1])
            else:
                skipped.append(f"{items[i][0]} ({err})")
                if warn:
                    warnings.warn(f"skipping {items[i][0]}: {err}", stacklevel=2)
            i += 1
    if not xs:
        return torch.zeros(0, channels, size, size, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), skipped
    return torch.stack(xs), torch.tensor(keep, dtype=torch.long), skipped


def probe_mode(items: list[tuple[Path, int]], sample: int = 64) -> tuple[int, int]:
    """(channels, native max side) from a sample: grayscale only if every sampled image is."""
    from PIL import Image

    formats.register()
    gray, side = True, 0
    for p, _ in items[:: max(1, len(items) // sample)][:sample]:
        try:
            with Image.open(p) as im:
                side = max(side, *im.size)
                if im.mode not in ("L", "1", "LA", "I", "I;16") and not (im.mode == "P" and _gray_palette(im)):
                    gray = False
        except Exception:  # unreadable files are reported when decoded
            continue
    return (1 if gray else 3), side


def _gray_palette(im) -> bool:  # type: ignore[no-untyped-def]
    pal = np.array(im.getpalette() or [], dtype=np.int64).reshape(-1, 3)
    return bool(len(pal)) and bool(np.all(pal[:, 0] == pal[:, 1]) and np.all(pal[:, 1] == pal[:, 2]))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_folder_options(arg: str | None, size: int | None, workers: int, stream: str,
                         holdout: float | None = None) -> Path:
    """The folder's path, once its options are known to be sane."""
    if not arg:
        raise UsageError("folder needs a path: --dataset folder:PATH [--data-arg size=S]")
    if stream not in ("auto", "yes", "no"):
        raise UsageError(f"folder: stream takes auto, yes or no, got {stream!r}")
    if size is not None and not 8 <= size <= 1024:
        raise UsageError(f"folder: size must be 8-1024 pixels, got {size}")
    if workers < 0:
        raise UsageError(f"folder: workers must be ≥ 0, got {workers}")
    if holdout is not None and not 0 < holdout < 1:
        raise UsageError(f"folder: holdout is the test share of a folder without a held-out folder, between 0 and 1; got {holdout:g}")
    return Path(arg)


class ImageFiles:
    """A folder's training images, not yet decoded: what ``folder:PATH,stream=yes`` trains from.

    Indexing with an int decodes that image, (C, S, S) uint8; indexing with a tensor, list or
    slice selects a subset, still undecoded (the seeded subset and validation split use this);
    `load()` decodes all of them at once. Training streams them with `StreamLoader`.
    """

    def __init__(self, items: list[tuple[Path, int]], channels: int, size: int, workers: int) -> None:
        self.items, self.channels, self.size, self.workers = items, channels, size, workers
        self.shape = (len(items), channels, size, size)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx):  # type: ignore[no-untyped-def]
        if isinstance(idx, int):
            x, ok, err = _Decode(self.items, self.channels, self.size)[idx]
            if not ok:
                raise DataError(f"{self.items[idx][0]}: unreadable image ({err})")
            return x
        picked = (self.items[idx] if isinstance(idx, slice)
                  else [self.items[int(i)] for i in (idx.tolist() if torch.is_tensor(idx) else idx)])
        return ImageFiles(picked, self.channels, self.size, self.workers)

    def load(self) -> torch.Tensor:
        """Every image decoded, (N, C, S, S) uint8; unreadable ones are skipped with a warning."""
        return decode_all(self.items, self.channels, self.size, self.workers)[0]

    def labels(self) -> torch.Tensor:
        return torch.tensor([c for _, c in self.items], dtype=torch.long)


def _folder_fixture(tmp: Path) -> dict[str, object]:
    from smallvision.data.synthetic import write_image_folder

    return {"dataset": f"folder:{write_image_folder(tmp / 'pets, small')}", "data_args": {"workers": 0}}


@DATASETS.register("folder", "folder:PATH — image folders (class sub-folders, train/+val/, or cat.1.jpg prefixes); "
                   "--data-arg size=S, workers=W, stream=auto|yes|no, holdout=F (the seeded test share when the "
                   "folder has no val/ or test/; 1/7 if not given)",
                   options={"size": int, "workers": int, "stream": str, "holdout": float},
                   fixture=_folder_fixture, portable=("size", "workers", "stream"))
def _folder(arg: str | None, data_dir: str | Path | None, size: int | None = None, workers: int = 2,
            stream: str = "auto", holdout: float | None = None) -> ImageData:
    path = check_folder_options(arg, size, workers, stream, holdout)
    idx = index_folder(path, holdout)
    channels, native = probe_mode(idx.train)
    if size is None:  # small images (digits, icons) keep their size; photos default to 224
        size = native if 0 < native <= 64 else 224
    if stream == "yes" or (stream == "auto" and len(idx.train) * channels * size * size > STREAM_BYTES):
        return _streamed_folder(idx, channels, size, workers)
    tx, ty, skipped = decode_all(idx.train, channels, size, workers, warn=False)
    vx, vy, skipped_test = decode_all(idx.test, channels, size, workers, warn=False)
    test_files = [str(p) for p, _ in idx.test]
    if skipped_test:
        bad = {formats.split_entry(s)[0] for s in skipped_test}
        test_files = [f for f in test_files if f not in bad]
    data = make_data(f"folder:{idx.root.name}", (tx.numpy(), ty.numpy()), (vx.numpy(), vy.numpy()), idx.classes,
                     f"{idx.root} ({idx.layout})")
    data.test_files = test_files
    bad_train = {formats.split_entry(s)[0] for s in skipped}
    data.train_files = [str(p) for p, _ in idx.train if str(p) not in bad_train]
    data.skipped = idx.left_out() + skipped + skipped_test
    warn_skipped(data.skipped, idx)
    return data


def warn_skipped(skipped: list[str], idx: FolderIndex) -> None:
    """The one line naming and counting what a folder's loading left out (the CLI prints a
    warning as ``warning: skipped 3 of 120 files: ...``); the report lists every file."""
    if skipped:
        warnings.warn(formats.skip_summary(skipped, idx.files_found(), idx.root), stacklevel=3)


def _streamed_folder(idx, channels: int, size: int, workers: int) -> ImageData:  # type: ignore[no-untyped-def]
    """Training images stay files (decoded per batch while training); the test split is decoded
    now. Normalisation statistics come from a fixed sample of 2 000 training images."""
    files = ImageFiles(idx.train, channels, size, workers)
    sample = files[np.random.default_rng(0).permutation(len(files))[:2000].tolist()].load()
    vx, vy, skipped_test = decode_all(idx.test, channels, size, workers, warn=False)
    if len(torch.unique(files.labels())) < 2:
        raise DataError(f"folder:{idx.root.name}: the training set holds a single class; a classifier needs at least two")
    mean, std = channel_stats(sample)
    info = DatasetInfo(f"folder:{idx.root.name}", len(idx.classes), channels, size, size, mean, std, tuple(idx.classes),
                       looks_like_digits(idx.root.name, channels))
    bad = {formats.split_entry(s)[0] for s in skipped_test}
    left_out = idx.left_out() + skipped_test
    warn_skipped(left_out, idx)  # training images found unreadable while streaming are named as they are met
    return ImageData(info, files, files.labels(), vx, vy, f"{idx.root} ({idx.layout}, streamed)",  # type: ignore[arg-type]
                     [str(p) for p, _ in idx.test if str(p) not in bad], left_out,
                     [str(p) for p, _ in idx.train])
