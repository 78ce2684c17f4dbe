"""Which image files smallvision reads, in one place: `check`, `train` (data/folder.py,
data/stream.py), `predict`, `explain` and `serve` all ask here.

Pillow reads JPEG, PNG, GIF, BMP, TIFF and WebP itself, and AVIF from Pillow 11.3 on (its wheels
carry libavif; `pillow-avif-plugin` stands in on an older Pillow). HEIC/HEIF, an iPhone's default
format, needs pillow-heif's opener: `register()` adds it once per process (DataLoader worker
processes started by spawn call it again through `open_image`). A photo whose reader is not
installed is not "unreadable" and not "not an image": `missing_reader` names the package to
install, so train and check can say so.

Skipped files travel as ``"PATH (REASON)"`` strings (ImageData.skipped, the report's
``skipped_files``); the reason starts with one of `UNREADABLE`, `NOT_AN_IMAGE` or a
"... reader is not installed" phrase, and `skip_summary` turns a list of them into one line.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

BUILTIN_EXTS = {".png", ".jpg", ".jpeg", ".jpe", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# extensions whose reader is a separate library: extension -> (reader, what the user calls the files)
OPTIONAL_EXTS = {".heic": ("HEIF", "HEIC"), ".heif": ("HEIF", "HEIF"), ".hif": ("HEIF", "HEIF"),
                 ".avif": ("AVIF", "AVIF")}
INSTALL = {"HEIF": "pip install pillow-heif", "AVIF": "pip install -U 'pillow>=11.3' (or pip install pillow-avif-plugin)"}
IMAGE_EXTS = BUILTIN_EXTS | set(OPTIONAL_EXTS)  # every extension looked at as an image

UNREADABLE, NOT_AN_IMAGE = "unreadable", "not an image"


class MissingReader(Exception):  # noqa: N818 - read as "the reader is missing"
    """The file's format needs a reader that is not installed (its message names the package)."""


@functools.cache
def readers() -> dict[str, bool]:
    """Register the optional readers with Pillow (once per process); which ones are available."""
    from PIL import Image, features

    heif = avif = False
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        heif = True
    except ImportError:
        pass
    try:
        avif = bool(features.check("avif"))
    except Exception:  # an older Pillow that does not know the feature name
        avif = False
    if not avif:
        try:
            import pillow_avif  # noqa: F401  pillow-avif-plugin registers itself on import

            avif = True
        except ImportError:
            pass
    Image.init()
    return {"HEIF": heif, "AVIF": avif and "AVIF" in Image.OPEN}


def register() -> None:
    """Call before opening a user's image: adds the HEIF (and, where needed, AVIF) openers."""
    readers()


def pil_formats(names: Sequence[str]) -> tuple[str, ...]:
    """Those of Pillow's format `names` that can be read here, the optional readers registered
    first (serve's allow-list of decoders: HEIF only where pillow-heif is installed)."""
    from PIL import Image

    readers()
    return tuple(n for n in names if n in Image.OPEN)


def kind(path: str | Path) -> str:
    """What the user calls the file's format: HEIC, AVIF, JPEG, ..."""
    ext = Path(path).suffix.lower()
    if ext in OPTIONAL_EXTS:
        return OPTIONAL_EXTS[ext][1]
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".tif": "TIFF"}.get(ext, ext.lstrip(".").upper() or "file")


def missing_reader(path: str | Path) -> str | None:
    """None when the file's format can be read here; else the reason it cannot, with the install
    command: ``"HEIC reader is not installed (pip install pillow-heif)"``."""
    ext = Path(path).suffix.lower()
    if ext not in OPTIONAL_EXTS:
        return None
    reader = OPTIONAL_EXTS[ext][0]
    if readers()[reader]:
        return None
    return f"{OPTIONAL_EXTS[ext][1]} reader is not installed ({INSTALL[reader]})"


def failure_reason(path: str | Path, exc: BaseException) -> str:
    """Why a file did not decode, short: ``"unreadable: truncated JPEG (OSError: image file is truncated ...)"``."""
    if isinstance(exc, MissingReader):
        return str(exc)
    msg = str(exc).splitlines()[0] if str(exc) else ""
    detail = f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__
    try:
        empty = Path(path).stat().st_size == 0
    except OSError:
        empty = False
    if empty:
        what = "empty file"
    elif "truncated" in msg.lower() or "premature end" in msg.lower():
        what = f"truncated {kind(path)}"
    elif type(exc).__name__ == "UnidentifiedImageError":
        what = f"not a {kind(path)} file inside"
    elif type(exc).__name__ == "DecompressionBombError":
        what = "too many pixels (Pillow's decompression-bomb limit)"
    elif isinstance(exc, FileNotFoundError):
        what = "no such file"
    else:
        return f"{UNREADABLE}: {detail}"
    return f"{UNREADABLE}: {what} ({detail})" if what not in ("empty file", "no such file") else f"{UNREADABLE}: {what}"


_ENTRY = re.compile(r"^(.*?) \((unreadable: .*|unreadable|not an image|\w+ reader is not installed \(.*\)|\w+: .*)\)$",
                    re.DOTALL)


def split_entry(entry: str) -> tuple[str, str]:
    """``"PATH (REASON)"`` -> (PATH, REASON); a path holding " (" is kept whole."""
    m = _ENTRY.match(entry)
    if m:
        return m.group(1), m.group(2)
    path, sep, rest = entry.partition(" (")
    return (path, rest[:-1] if rest.endswith(")") else rest) if sep else (entry, "")


def _category(reason: str) -> tuple[str, str]:
    """(what the group is called, its hint)"""
    if reason == NOT_AN_IMAGE:
        return NOT_AN_IMAGE, ""
    if " reader is not installed (" in reason:
        what, _, hint = reason.partition(" reader is not installed (")
        return f"{what} without its reader", hint.removesuffix(")")
    return UNREADABLE, ""  # "unreadable: ...", or an older "Type: message" entry: a decoder failure


def skip_summary(skipped: Sequence[str], total: int | None = None, root: str | Path | None = None,
                 names: int = 3) -> str:
    """One line for what was left out: ``skipped 3 of 120 files: 1 unreadable (a/x.jpg: truncated
    JPEG); 1 not an image (a/notes.txt); 1 HEIC without its reader (b/1.heic; pip install pillow-heif)``.
    Up to `names` files per reason are named (relative to `root`), the rest counted; `names=0`
    counts only."""
    if not skipped:
        return ""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for entry in skipped:
        path, reason = split_entry(entry)
        if root is not None:
            try:
                path = str(Path(path).relative_to(root))
            except ValueError:
                pass
        groups.setdefault(_category(reason), []).append((path, reason))
    parts = []
    for (cat, hint), items in groups.items():
        shown = []
        for path, reason in items[:names]:
            short = reason.removeprefix(f"{UNREADABLE}: ").split(" (")[0] if cat == UNREADABLE else ""
            shown.append(f"{path}: {short}" if short and short != UNREADABLE else path)
        more = f" and {len(items) - names} more" if len(items) > names else ""
        inside = [x for x in (f"{', '.join(shown)}{more}" if names else "", hint) if x]
        parts.append(f"{len(items)} {cat}" + (f" ({'; '.join(inside)})" if inside else ""))
    of = f" of {total}" if total is not None else ""
    return f"skipped {len(skipped)}{of} files: " + "; ".join(parts)


__all__ = ["IMAGE_EXTS", "MissingReader", "failure_reason", "kind", "missing_reader", "pil_formats", "readers",
           "register", "skip_summary", "split_entry"]
