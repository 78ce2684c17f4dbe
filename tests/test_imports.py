"""The reading side of a model file (predict, export, serve) does not import the training loop,
and the package has no import circle that a fresh interpreter trips over."""

from __future__ import annotations

import subprocess
import sys

import pytest

LOOP = ("smallvision.engine.trainer", "smallvision.engine.setup", "smallvision.optim", "smallvision.engine.callbacks")


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return set(out)


@pytest.mark.slow  # ~9 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_predicting_from_a_run_does_not_import_the_trainer(mnist_run):
    loaded = _loaded_after(f"from smallvision.predict import Predictor\n"
                           f"p = Predictor.from_checkpoint({str(mnist_run)!r}, device='cpu')\n"
                           "import smallvision.export, smallvision.serve.app")
    assert "smallvision.predict" in loaded and "smallvision.modelfile" in loaded
    assert not loaded & set(LOOP), sorted(loaded & set(LOOP))


@pytest.mark.slow  # ~14 CPU-s: the default suite stays under 3 min on 2 cores (CI runs make test-slow)
def test_each_module_imports_on_its_own():
    """A circle shows up as an ImportError when the module in the middle is imported first."""
    import pkgutil

    import smallvision

    names = [m.name for m in pkgutil.walk_packages(smallvision.__path__, "smallvision.") if not m.name.endswith("__main__")]
    assert "smallvision.engine.trainer" in names and "smallvision.data.folder" in names
    code = ("import importlib, sys\nfor n in sys.argv[1:]:\n"
            "    for m in [k for k in sys.modules if k.startswith('smallvision')]: del sys.modules[m]\n"
            "    importlib.import_module(n)\n")
    r = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-1500:]


def test_the_import_graph_has_no_circle_even_through_lazy_imports():
    """Every `import smallvision...` in the source, at module level or inside a function, is an
    edge; the graph has no strongly connected component of two or more modules."""
    import ast
    from pathlib import Path

    import smallvision

    root = Path(smallvision.__path__[0]).parent
    mods = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
            for p in root.joinpath("smallvision").rglob("*.py")}

    def edges(path: Path) -> set[str]:
        out = set()
        for n in ast.walk(ast.parse(path.read_text())):
            names = [n.module, *(f"{n.module}.{a.name}" for a in n.names)] if isinstance(n, ast.ImportFrom) and n.module \
                else [a.name for a in n.names] if isinstance(n, ast.Import) else []
            out |= {m for m in names if m in mods}
        return out

    graph = {m: edges(p) for m, p in mods.items()}
    assert len(graph) > 80 and graph["smallvision.engine.trainer"]  # the walk found the package
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, circles


# The layers, lowest first (docs/ARCHITECTURE.md): a module imports only its own layer and those
# below, at module level or inside a function. The recipes sit with the engine because the photo
# rules time this machine with the engine's speed probe; the package root re-exports the API.
LAYERS = (
    ("base", ("smallvision._version", "smallvision.errors", "smallvision.io", "smallvision.registry",
              "smallvision.config", "smallvision.runfolder", "smallvision.extras")),
    ("parts", ("smallvision.data", "smallvision.models", "smallvision.optim", "smallvision.report",
               "smallvision.calibration", "smallvision.multilabel", "smallvision.modelfile", "smallvision.ood")),
    ("loops", ("smallvision.engine", "smallvision.recipes")),
    ("library", ("smallvision.api", "smallvision.predict", "smallvision.export", "smallvision.explain",
                 "smallvision.compare", "smallvision.tune", "smallvision.cv", "smallvision.clean",
                 "smallvision.bench", "smallvision.serve", "smallvision.generative", "smallvision.suggest",
                 "smallvision.web")),
    ("command line", ("smallvision.cli", "smallvision.__main__", "smallvision")),
)


def _layer(module: str) -> int:
    """The index in LAYERS of the longest prefix naming `module` (every module must have one)."""
    hits = [(len(p), i) for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes
            if module == p or module.startswith(p + ".")]
    assert hits, f"{module} is in no layer: add it to LAYERS (and docs/ARCHITECTURE.md)"
    return max(hits)[1]


def test_no_module_imports_a_layer_above_its_own():
    import ast
    from pathlib import Path

    import smallvision

    root = Path(smallvision.__path__[0]).parent
    mods = {".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
            for p in root.joinpath("smallvision").rglob("*.py")}

    def imported(node: ast.AST) -> list[str]:
        """What an import statement loads: `from smallvision import api` is smallvision.api."""
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.module:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods]
            return subs or [node.module]
        return []

    upward = []
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            for target in imported(node):
                if target.startswith("smallvision") and _layer(target) > _layer(mod):
                    upward.append(f"{mod} ({LAYERS[_layer(mod)][0]}) imports {target} ({LAYERS[_layer(target)][0]})")
    assert len(mods) > 80
    assert not upward, "\n".join(upward)


def test_the_layer_check_can_fail():
    """An import of the engine from the model file is the kind of edge the check must catch."""
    assert _layer("smallvision.engine.run") > _layer("smallvision.modelfile") > _layer("smallvision.runfolder")
    assert _layer("smallvision") > _layer("smallvision.api") > _layer("smallvision.engine.trainer")
