"""The reading side of a model file (predict, export, serve) does not import the training loop,
and the package has no import circle that a fresh interpreter trips over."""

from __future__ import annotations

import subprocess
import sys

LOOP = ("smallvision.engine.trainer", "smallvision.engine.setup", "smallvision.optim", "smallvision.engine.callbacks")


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout.split()
    return set(out)


def test_predicting_from_a_run_does_not_import_the_trainer(mnist_run):
    loaded = _loaded_after(f"from smallvision.predict import Predictor\n"
                           f"p = Predictor.from_checkpoint({str(mnist_run)!r}, device='cpu')\n"
                           "import smallvision.export, smallvision.serve.app")
    assert "smallvision.predict" in loaded and "smallvision.modelfile" in loaded
    assert not loaded & set(LOOP), sorted(loaded & set(LOOP))


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
