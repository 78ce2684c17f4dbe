"""Where data files are looked for, in order, and how a missing set is obtained.

Order: ``--data-dir``, ``$SMALLVISION_DATA`` (``os.pathsep``-separated), the user cache
(``$XDG_CACHE_HOME/smallvision`` or ``~/.cache/smallvision``), Debian's
``/usr/share/datasets``, then torchvision's download code into the cache. When every place
fails, one error lists them all and says how to obtain the files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from smallvision.errors import DataError

DEBIAN_ROOT = Path("/usr/share/datasets")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smallvision"


def search_roots(data_dir: str | Path | None) -> list[Path]:
    """Folders holding one sub-folder per data set (``<root>/mnist/...``). ``--data-dir`` comes
    first and may also hold the files themselves (see `find_files`)."""
    roots: list[Path] = []
    if data_dir:
        roots.append(Path(data_dir).expanduser())
    for part in os.environ.get("SMALLVISION_DATA", "").split(os.pathsep):
        if part.strip():
            roots.append(Path(part.strip()).expanduser())
    roots += [cache_dir(), DEBIAN_ROOT]
    return roots


def downloads_allowed() -> bool:
    return os.environ.get("SMALLVISION_OFFLINE", "").lower() not in ("1", "true", "yes")


def find_files(
    name: str,
    filenames: Sequence[str],
    data_dir: str | Path | None,
    extra_subdirs: Sequence[str] = (),
) -> tuple[dict[str, Path] | None, list[Path]]:
    """Look for every file of `filenames` (each also as ``.gz``) in one folder of the search path.

    Returns ({filename: path}, places tried); the dict is None when no folder holds them all.
    """
    tried: list[Path] = []
    for i, root in enumerate(search_roots(data_dir)):
        # Only an explicit --data-dir may hold the files directly: MNIST and KMNIST share file
        # names, so a shared root must keep one sub-folder per data set.
        direct = [root] if (data_dir and i == 0) else []
        for folder in [root / name, *direct, *(root / s for s in extra_subdirs)]:
            if folder in tried:
                continue
            tried.append(folder)
            found: dict[str, Path] = {}
            for fn in filenames:
                for cand in (folder / fn, folder / f"{fn}.gz"):
                    if cand.is_file():
                        found[fn] = cand
                        break
            if len(found) == len(filenames):
                return found, tried
    return None, tried


def locate_or_download(
    name: str,
    filenames: Sequence[str],
    data_dir: str | Path | None,
    download: Callable[[Path], Path] | None,
    how_to_get: str,
    extra_subdirs: Sequence[str] = (),
) -> dict[str, Path]:
    """Find the files, else download them with `download(cache_root) -> folder`, else raise one error."""
    found, tried = find_files(name, filenames, data_dir, extra_subdirs)
    if found:
        return found
    reason = "downloads disabled (SMALLVISION_OFFLINE)"
    if download is not None and downloads_allowed():
        try:
            folder = download(cache_dir())
            got, _ = find_files(name, filenames, folder, ())
            if got:
                return got
            reason = f"download finished but the files were not in {folder}"
        except Exception as e:  # network errors come in many types; all mean "not downloadable now"
            reason = f"download failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    places = ", ".join(str(p) for p in tried)
    raise DataError(
        f"data set {name!r} not found (files {', '.join(filenames)}[.gz]); looked in: {places}; {reason}. "
        f"{how_to_get}"
    )
