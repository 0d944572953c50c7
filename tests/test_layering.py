"""The layering rule, read from the source: spec → builder → trainer → scorer → search →
analysis, and nothing lower imports anything higher.

Every ``import`` in ``ganarch/`` counts, at any depth (a function-local import is still a
dependency), except under ``if TYPE_CHECKING:`` (never run). The built-in plugins
(``plugins/``, imported as ``ganarch_plugins``) sit beside the floor of what they register.
Also: the public function ``ganarch.train`` is not shadowed by a module of that name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ganarch"
PLUGINS = ROOT / "plugins"

#: Lowest first. A module may import its own floor and the floors below, never above.
FLOORS: list[set[str]] = [
    {"errors", "plugin", "plugins", "hookspecs", "registry", "_version", "_lazy"},
    {"spec", "templates", "dcgan", "builder", "networks"},
    {"data", "device", "artifacts"},
    {"training", "stepper", "fused", "settings"},
    {"score", "run"},
    {"search"},
    {"analysis"},
    {"cli", "__init__", "__main__"},  # the façade: imports anything
]
FLOOR = {name: i for i, names in enumerate(FLOORS) for name in names}

#: How high each built-in plugin module may reach: the floor of what it registers.
PLUGIN_CEILING = {
    "__init__": -1,  # gathers its siblings only
    "blocks": FLOOR["builder"],
    "datasets": FLOOR["data"],
    "metrics": FLOOR["score"],
    "search": FLOOR["search"],
    "templates": FLOOR["templates"],
}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_modules(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every runtime import in ``tree``; ``from X import a`` gives
    ``X.a`` (a submodule or a name in ``X``, resolved by :func:`_component`)."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package upwards
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _component(dotted: str) -> str | None:
    """The ganarch component a dotted name lands in (``"__init__"`` for the façade itself),
    or ``None`` outside ganarch."""
    parts = dotted.split(".")
    if parts[0] != "ganarch":
        return None
    if len(parts) == 1:
        return "__init__"
    head = parts[1]
    if (PACKAGE / f"{head}.py").is_file() or (PACKAGE / head / "__init__.py").is_file():
        return head
    return "__init__"  # ``from ganarch import train``: a name of the façade


def _own_component(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _package_of(path: Path, root: Path, name: str) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [name, *rel.parts]
    return ".".join(parts if rel.name == "__init__" else parts[:-1]).removesuffix(".__init__")


def violations(path: Path, source: str | None = None) -> list[str]:
    """Imports in ganarch module ``path`` that reach a higher floor than its own."""
    own = _own_component(path)
    floor = FLOOR[own]
    tree = ast.parse(source if source is not None else path.read_text(), str(path))
    bad = []
    for line, dotted in _imported_modules(tree, _package_of(path, PACKAGE, "ganarch")):
        target = _component(dotted)
        if target is not None and FLOOR[target] > floor:
            bad.append(
                f"{path.relative_to(ROOT)}:{line}: {own} (floor {floor}) imports {dotted} "
                f"({target}, floor {FLOOR[target]})"
            )
    return bad


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_has_a_floor() -> None:
    unplaced = {_own_component(p) for p in _modules(PACKAGE)} - set(FLOOR)
    assert not unplaced, f"place these in FLOORS of {__file__}: {sorted(unplaced)}"


def test_nothing_lower_imports_anything_higher() -> None:
    bad = [v for path in _modules(PACKAGE) for v in violations(path)]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_function_local_and_from_imports() -> None:
    """The checker itself: a late ``import ganarch.search`` in the trainer is caught, the
    façade counts as the top floor, and ``TYPE_CHECKING`` imports are skipped."""
    training = PACKAGE / "training.py"
    late = textwrap.dedent(
        """
        def fit():
            if True:
                import ganarch.search
        """
    )
    assert any("ganarch.search" in v for v in violations(training, late))
    assert violations(training, "from ganarch import search\n")
    assert violations(training, "from ganarch.score import stability\n")
    assert violations(training, "from ganarch import train\n")  # the façade
    assert violations(training, "import ganarch\n")
    assert not violations(training, "from ganarch import artifacts\nimport torch\n")
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ganarch.run\n"
    assert not violations(training, typing_only)
    # and the real tree has the edges the rule is about
    engine = ast.parse((PACKAGE / "search" / "engine.py").read_text())
    assert any(_component(m) == "run" for _, m in _imported_modules(engine, "ganarch.search"))


def test_the_trainer_knows_nothing_of_scoring() -> None:
    tree = ast.parse((PACKAGE / "training.py").read_text())
    reached = {_component(m) for _, m in _imported_modules(tree, "ganarch")} - {None}
    assert not reached & {"score", "run", "search", "analysis", "cli", "__init__"}, reached


@pytest.mark.parametrize("path", _modules(PLUGINS), ids=lambda p: p.name)
def test_builtin_plugins_sit_beside_their_floor(path: Path) -> None:
    name = path.stem
    assert name in PLUGIN_CEILING, f"give plugins/{path.name} a ceiling in PLUGIN_CEILING"
    tree = ast.parse(path.read_text(), str(path))
    for line, dotted in _imported_modules(tree, _package_of(path, PLUGINS, "ganarch_plugins")):
        if dotted.split(".")[0] == "ganarch_plugins":
            continue  # its siblings
        target = _component(dotted)
        if target is None or target == "plugin":
            continue
        assert FLOOR[target] <= PLUGIN_CEILING[name], (
            f"plugins/{path.name}:{line} imports {dotted} ({target}, floor {FLOOR[target]}) "
            f"above its ceiling {PLUGIN_CEILING[name]}"
        )


# --- the public ``ganarch.train`` ---------------------------------------------------------------


def test_ganarch_train_stays_the_function() -> None:
    """``ganarch.train`` is the function before and after the trainer's modules are
    imported (a module named ``ganarch.train`` would replace it on import)."""
    code = textwrap.dedent(
        """
        import inspect
        import ganarch

        first = ganarch.train
        assert inspect.isfunction(first), first
        import ganarch.run
        import ganarch.training
        from ganarch.run import train
        assert ganarch.train is first is train, ganarch.train
        assert inspect.isfunction(ganarch.train_seeds) and inspect.isclass(ganarch.TrainResult)
        print("ok")
        """
    )
    later = textwrap.dedent(
        """
        import inspect
        import ganarch.training
        import ganarch.run
        import ganarch.cli.train
        import ganarch

        assert inspect.isfunction(ganarch.train), ganarch.train
        assert ganarch.train is ganarch.run.train
        print("ok")
        """
    )
    for source in (code, later):
        done = subprocess.run(
            [sys.executable, "-c", source], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_lazy_functions_are_never_shadowed_by_submodules():
    """``ganarch.analysis.ablate`` stays the function after every analysis module is imported."""
    code = (
        "import importlib, pkgutil, ganarch.analysis as a\n"
        "for m in pkgutil.iter_modules(a.__path__): importlib.import_module(f'ganarch.analysis.{m.name}')\n"
        "import ganarch\n"
        "assert callable(a.ablate) and callable(a.write_report), (a.ablate, a.write_report)\n"
        "assert callable(ganarch.ablate) and callable(ganarch.write_report)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- no import loops --------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    return _package_of(path, PACKAGE, "ganarch") + (
        "" if path.name == "__init__.py" else f".{path.stem}"
    )


def _import_graph() -> dict[str, set[str]]:
    """Module -> the ganarch modules it imports at run time (function-local imports count;
    ``from pkg import name`` counts as ``pkg.name`` when that is a module, else as ``pkg``)."""
    modules = {_module_name(p): p for p in _modules(PACKAGE)}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = _package_of(path, PACKAGE, "ganarch")
        edges = set()
        for _, dotted in _imported_modules(ast.parse(path.read_text(), str(path)), package):
            while dotted and dotted not in modules:
                dotted = dotted.rpartition(".")[0]
            if dotted and dotted != name and not name.startswith(dotted + "."):
                edges.add(dotted)  # a package's own __init__ is not a loop of its children
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_loops_among_ganarchs_modules() -> None:
    loops = _cycles(_import_graph())
    assert not loops, "import loops: " + "; ".join(" ↔ ".join(c) for c in loops)


def test_the_loop_finder_finds_a_loop() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
