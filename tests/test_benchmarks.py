"""Benchmarks are users of the library: they call public functions and pass callbacks, never a
private name and never a library function replaced at run time (a benchmark that patches the loop
measures code no user runs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).parent.parent / "benchmarks").glob("*.py"))


def _root(node: ast.AST) -> ast.AST:
    """The name at the bottom of a dotted expression (`a` of `a.b.c`)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node


def _dotted(node: ast.AST) -> str:
    return f"{_dotted(node.value)}.{node.attr}" if isinstance(node, ast.Attribute) else getattr(node, "id", "?")


def _offences(tree: ast.Module) -> list[str]:
    """Private smallvision names imported or read, and assignments to attributes of smallvision
    modules (monkeypatching, by assignment, `setattr` or `mock.patch`), found in one benchmark's syntax
    tree. A name bound to a smallvision module or function, or re-bound from one (`g = gan`), counts."""
    modules: set[str] = set()  # local names bound to smallvision modules (or their functions)
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
    for _ in range(3):  # aliases of aliases
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(_root(node.value), ast.Name) \
                    and _root(node.value).id in modules:
                modules.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(_root(node), ast.Name) and _root(node).id in modules:
            if isinstance(node.ctx, ast.Store):
                out.append(f"replaces {_dotted(node)}")
            elif node.attr.startswith("_"):
                out.append(f"reads private {_dotted(node)}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        first = node.args[0] if node.args else None
        on_module = first is not None and isinstance(_root(first), ast.Name) and _root(first).id in modules
        if func == "setattr" and on_module:
            out.append(f"setattr on {_dotted(first)}")
        if func == "getattr" and on_module and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and str(node.args[1].value).startswith("_"):
            out.append(f"reads private {_dotted(first)}.{node.args[1].value}")
        if func in ("patch", "setattr") and isinstance(first, ast.Constant) and str(first.value).startswith("smallvision"):
            out.append(f"patches {first.value}")  # unittest.mock.patch("smallvision..."), monkeypatch.setattr("smallvision...")
        if func == "object" and getattr(node.func, "value", None) is not None and getattr(node.func.value, "attr", getattr(
                node.func.value, "id", "")) == "patch" and on_module:
            out.append(f"patches {_dotted(first)}")  # mock.patch.object(module, ...)
    return out


@pytest.mark.parametrize("path", BENCHMARKS, ids=[p.name for p in BENCHMARKS])
def test_a_benchmark_uses_the_public_library_only(path):
    assert _offences(ast.parse(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize(("code", "offence"), [
    ("from smallvision.generative import gan\ngan.train_gan = lambda *a: None", "replaces gan.train_gan"),
    ("from smallvision.generative.gan import _noise", "imports private smallvision.generative.gan._noise"),
    ("import smallvision.engine.run as r\nx = r._private", "reads private r._private"),
    ("import smallvision.generative.gan\nsmallvision.generative.gan.train_gan = print",
     "replaces smallvision.generative.gan.train_gan"),
    ("from smallvision.generative import gan\nsetattr(gan, 'train_gan', print)", "setattr on gan"),
    ("from smallvision.generative import gan\ng = gan\ng.train_gan = print", "replaces g.train_gan"),
    ("from smallvision import generative\nx = getattr(generative.gan, '_noise')", "reads private generative.gan._noise"),
    ("from unittest import mock\nwith mock.patch('smallvision.generative.gan.train_gan'): pass",
     "patches smallvision.generative.gan.train_gan"),
    ("from unittest import mock\nfrom smallvision.generative import gan\nmock.patch.object(gan, 'train_gan')",
     "patches gan"),
])
def test_the_rule_catches_each_way_of_patching_or_reading_a_private_name(code, offence):
    assert offence in _offences(ast.parse(code))


def test_the_rule_leaves_public_use_alone():
    code = ("import smallvision\nfrom smallvision.generative import gan\nr = gan.train_gan(None, callbacks=[print])\n"
            "x = smallvision.api.train\nsetattr(object(), 'a', 1)\n")
    assert _offences(ast.parse(code)) == []
