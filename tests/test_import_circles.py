"""No import circles among lightning_reg's modules: not at the top, not inside functions, not under TYPE_CHECKING.

The imports are read from the source (``ast``), so an import inside a function counts like one at the top: a
circle that only closes when a function runs is still one, and it makes the two modules one unit to read. A module
that imports a package's submodule depends on that submodule; ``from package import name`` depends on the submodule
``name`` when there is one, else on the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lightning_reg

PACKAGE_ROOT = Path(lightning_reg.__file__).parent

# Circles left for a reason, each with it; checked to be still present, so an entry goes when its circle does.
KNOWN: list[list[str]] = []


def _modules(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package under ``root``: dotted name -> file."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = _modules(root, package)
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)


def test_lightning_reg_has_no_import_circle() -> None:
    graph = import_graph(PACKAGE_ROOT, "lightning_reg")
    assert len(graph) >= 50 and graph["lightning_reg.train"], "the walk should see the package and its imports"
    found = circles(graph)
    gone = [c for c in KNOWN if c not in found]
    assert not gone, f"{gone} no longer form a circle: remove them from KNOWN in {__file__}"
    new = [c for c in found if c not in KNOWN]
    assert not new, "import circles (each list imports itself round): " + "; ".join(" <-> ".join(c) for c in new)


def test_the_finder_sees_circles_inside_functions_and_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n")
    (pkg / "sub" / "c.py").write_text("from .. import d\n")
    (pkg / "d.py").write_text("import pkg.sub.c\n")
    (pkg / "e.py").write_text("import pkg.a\n")  # imports into a circle, is not part of it
    assert circles(import_graph(pkg, "pkg")) == [["pkg.a", "pkg.b"], ["pkg.d", "pkg.sub.c"]]
