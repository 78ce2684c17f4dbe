"""The README stays a page a newcomer reads top to bottom, and every link in it leads somewhere.
(The documentation pages themselves are checked by `make docs`: mkdocs --strict fails on a broken
link or anchor.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_is_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\(([^)#\s]+)", text)
    assert links, "the README links to its documentation pages"
    missing = [link for link in links if not link.startswith("http") and not (ROOT / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_every_page_is_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert [p for p in pages if f": {p}" not in nav] == []


PICTURES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")
RESULTS = ROOT / "benchmarks" / "results"


def _pages() -> dict[str, str]:
    return {p.name: p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}


def test_docs_pictures_are_few_and_each_is_shown():
    """docs/ holds at most 12 pictures (one current picture per generative family), and each is
    shown by a page: a picture nothing links to is residue."""
    pictures = sorted(p.name for p in (ROOT / "docs").iterdir() if p.suffix.lower() in PICTURES)
    assert len(pictures) <= 12, f"{len(pictures)} pictures in docs/ (at most 12): {pictures}"
    shown = "\n".join(_pages().values())
    unshown = [name for name in pictures if f"]({name})" not in shown and f"](docs/{name})" not in shown]
    assert not unshown, f"pictures in docs/ that no page shows: {unshown}"


def test_results_files_are_few_and_every_quoted_one_exists():
    """benchmarks/results/ keeps the current table for each question (at most 45 files; git keeps
    the history), and every results file the README and the pages name is there. A name written as
    `git show COMMIT:benchmarks/results/...` points into history and is not checked; `<recipe>` and
    `*` are placeholders."""
    files = {p.name for p in RESULTS.iterdir() if p.is_file()}
    assert len(files) <= 45, f"{len(files)} files in benchmarks/results/ (at most 45)"
    pages = _pages()
    missing = []
    for page, text in pages.items():
        quoted = re.findall(r"(?<![\w:])benchmarks/results/([\w.<>*-]+\.(?:md|jsonl|csv|json))", text)
        # a bare results file name in backticks (`generative-v2.md`), not a page or a run-folder file
        quoted += [name for name in re.findall(r"`([\w.-]+\.(?:md|jsonl))`", text)
                   if name not in pages and name != "report.md"]
        for name in quoted:
            pattern = re.sub(r"<[^>]*>", "*", name)
            if not list(RESULTS.glob(pattern)):
                missing.append(f"{page}: {name}")
    assert not missing, f"results files named by the docs but not in benchmarks/results/: {missing}"
