"""Benchmarks are users of the library: they call public functions and pass callbacks, never a
private name and never a library function replaced at run time (a benchmark that patches the loop
measures code no user runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("*.py"))


def _offences(tree: ast.Module) -> list[str]:
    """Private smallvision names imported or read, and assignments to attributes of smallvision
    modules (monkeypatching), found in one benchmark's syntax tree."""
    modules: set[str] = set()  # local names bound to smallvision modules
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("smallvision"):
            for a in node.names:
                if a.name.startswith("_"):
                    out.append(f"imports private {node.module}.{a.name}")
                modules.add(a.asname or a.name)  # a module or a function; either may not be patched
            if any(part.startswith("_") for part in node.module.split(".")):
                out.append(f"imports from private module {node.module}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("smallvision"):
                    modules.add((a.asname or a.name).split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            if isinstance(node.ctx, ast.Store):
                out.append(f"replaces {node.value.id}.{node.attr}")
            elif node.attr.startswith("_"):
                out.append(f"reads private {node.value.id}.{node.attr}")
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr" and node.args \
                and isinstance(node.args[0], ast.Name) and node.args[0].id in modules:
            out.append(f"setattr on {node.args[0].id}")
    return out


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_a_benchmark_uses_the_public_library_only(path):
    assert _offences(ast.parse(path.read_text(encoding="utf-8"))) == []


def test_the_rule_catches_a_patch_and_a_private_import():
    code = ("from smallvision.generative import gan\nfrom smallvision.generative.gan import _noise\n"
            "gan.train_gan = lambda *a: None\nimport smallvision.engine.run as r\nx = r._private\n")
    found = _offences(ast.parse(code))
    assert "replaces gan.train_gan" in found and any("_noise" in f for f in found) and "reads private r._private" in found
