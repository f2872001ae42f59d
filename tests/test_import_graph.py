"""Claims about how the package's modules import each other.

Every ``import`` counts, inside functions too (a function-level import is still a dependency,
only a later one); imports under ``if TYPE_CHECKING:`` do not (they never run). On that graph:
no module imports itself back, and the package is layered: each folder (``drafters/``) and
each top-level module (``forward``) has a place in :data:`LAYERS`, imports only from its own
layer or the ones below, and no two of them import each other.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import specviz

ROOT = Path(specviz.__file__).parent

#: Where each folder and top-level module of ``specviz/`` sits, bottom first: (layer, its parts).
#: A module may import from its own layer (no two parts importing each other) or a lower one,
#: never a higher one.
LAYERS: tuple[tuple[str, str], ...] = (
    (
        "foundations",
        "__init__ errors hub resources precision supports cost threads stopping chat clock "
        "records model_source",
    ),
    (
        "configuration, workloads and the run directory",
        "config workloads rundir recorder",
    ),
    ("analysis", "metrics plots"),
    ("models and forwards", "lean models forward sampling verify calibrate"),
    ("drafting", "drafters hybrid drafter_factory policies"),
    ("decoding loops", "limits engine batch replay reuse"),
    ("running", "runner codecode serve endpoint"),
    ("studies and reports", "study report specbench llama_bench"),
    ("interfaces", "cli __main__"),
)

Graph = Mapping[str, Mapping[str, int]]  # module -> {imported module: line of its first import}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement at or below ``node``, at any depth, except under ``if
    TYPE_CHECKING:`` (its ``else:`` branch runs, so that counts)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
        return
    children = ast.iter_child_nodes(node)
    if isinstance(node, ast.If) and _type_checking(node.test):
        children = iter(node.orelse)
    for child in children:
        yield from import_nodes(child)


def imports_in(source: str, me: str, modules: set[str]) -> dict[str, int]:
    """The package modules that code ``source`` (module ``me``) imports, each with the line of
    its first import."""
    found: dict[str, int] = {}
    for node in import_nodes(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif node.module and node.level == 0:
            # `from a.b import c` imports a.b.c when c is a module, else a.b
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            while name and name != "specviz":  # importing a.b.c runs a.b's __init__ first
                found.setdefault(name, node.lineno)
                name = name.rpartition(".")[0]
    return {m: line for m, line in found.items() if m != me and not me.startswith(m + ".")}


def import_graph() -> dict[str, dict[str, int]]:
    paths = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_in(p.read_text(), module_name(p), modules) for p in paths}


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (node -> its children), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for child in sorted(graph.get(node, ())):
            if state.get(child) == 1:
                return [*stack[stack.index(child) :], child]
            if child not in state and (cycle := visit(child)) is not None:
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def all_cycles(graph: Graph) -> list[list[str]]:
    """Cycles of ``graph`` until none is left: after each, its first arrow is dropped and the
    search starts again, so every cycle is reported through at least one of its arrows."""
    left = {node: dict(children) for node, children in graph.items()}
    cycles = []
    while (cycle := find_cycle(left)) is not None:
        cycles.append(cycle)
        del left[cycle[0]][cycle[1]]
    return cycles


def where(module: str) -> str:
    """The file of ``module``, relative to the checkout."""
    path = ROOT.parent.joinpath(*module.split("."))
    file = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return str(file.relative_to(ROOT.parent))


def chain(cycle: list[str], graph: Graph) -> str:
    """``a -> b (a.py:12) -> a (b.py:40)``: each arrow with the import that makes it."""
    steps = [cycle[0]]
    for a, b in itertools.pairwise(cycle):
        steps.append(f"{b} ({where(a)}:{graph[a][b]})")
    return " -> ".join(steps)


def part(module: str) -> str:
    """The folder or top-level module ``module`` belongs to: ``specviz.drafters.base`` ->
    ``drafters``, ``specviz.forward`` -> ``forward``, ``specviz`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def part_graph(graph: Graph) -> dict[str, dict[str, str]]:
    """Folder-level arrows: part -> {imported part: the first import making it, ``file:line``}."""
    parts: dict[str, dict[str, str]] = {}
    for module, imported in sorted(graph.items()):
        mine = parts.setdefault(part(module), {})
        for other, line in sorted(imported.items()):
            if part(other) != part(module):
                mine.setdefault(part(other), f"{where(module)}:{line} imports {other}")
    return parts


def arrows_up(graph: Graph, layers: tuple[tuple[str, str], ...]) -> list[str]:
    """Every import from a part to a part in a higher layer, as ``file:line imports module:
    part (layer) is below part (layer)``."""
    rank = {p: (i, name) for i, (name, parts) in enumerate(layers) for p in parts.split()}
    wrong = []
    for module, imported in sorted(graph.items()):
        for other, line in sorted(imported.items()):
            if part(module) not in rank or part(other) not in rank:
                continue  # not placed: test_every_folder_and_top_level_module_has_one_layer
            (mine, my_layer), (theirs, their_layer) = rank[part(module)], rank[part(other)]
            if theirs > mine:
                wrong.append(
                    f"{where(module)}:{line} imports {other}: {part(module)} ({my_layer}) is "
                    f"below {part(other)} ({their_layer})"
                )
    return wrong


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    two = {"a": {"b": 1}, "b": {"a": 2}, "c": {"d": 3}, "d": {"c": 4}}
    assert all_cycles(two) == [["a", "b", "a"], ["c", "d", "c"]]


def test_imports_inside_functions_count_and_type_checking_imports_do_not():
    source = """
from typing import TYPE_CHECKING
import specviz.a
if TYPE_CHECKING:
    from specviz.b import B
else:
    import specviz.e
def f():
    if True:
        from specviz.c import g
class K:
    def m(self):
        import specviz.d.x
"""
    modules = {"specviz", "specviz.a", "specviz.b", "specviz.c", "specviz.d", "specviz.d.x"}
    modules |= {"specviz.e"}
    got = imports_in(source, "specviz.me", modules)
    assert got == {
        "specviz.a": 3,
        "specviz.e": 7,
        "specviz.c": 10,
        "specviz.d.x": 13,
        "specviz.d": 13,
    }


def test_the_layer_check_names_the_import_that_runs_up():
    graph = {"specviz.low.x": {"specviz.high": 7}, "specviz.high": {"specviz.low.x": 3}}
    layers = (("bottom", "low"), ("top", "high"))
    assert arrows_up(graph, layers) == [
        "specviz/low/x.py:7 imports specviz.high: low (bottom) is below high (top)"
    ]


def test_no_package_module_imports_itself_back():
    graph = import_graph()
    cycles = [chain(c, graph) for c in all_cycles(graph)]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_every_folder_and_top_level_module_has_one_layer():
    placed = [p for _, parts in LAYERS for p in parts.split()]
    assert sorted(p for p in placed if placed.count(p) > 1) == []
    unplaced = sorted({part(m) for m in import_graph()} - set(placed))
    assert not unplaced, f"place these in LAYERS: {', '.join(unplaced)}"
    assert sorted(set(placed) - {part(m) for m in import_graph()}) == []


def test_no_import_runs_up_the_layers():
    wrong = arrows_up(import_graph(), LAYERS)
    assert not wrong, "imports that run up the layers:\n" + "\n".join(wrong)


def test_no_two_folders_or_top_level_modules_import_each_other():
    parts = part_graph(import_graph())
    found = []
    for cycle in all_cycles({p: dict.fromkeys(children, 0) for p, children in parts.items()}):
        arrows = (f"{b} ({parts[a][b]})" for a, b in itertools.pairwise(cycle))
        found.append(" -> ".join([cycle[0], *arrows]))
    assert not found, "folders or top-level modules importing each other:\n" + "\n".join(found)


def test_planning_a_study_does_not_import_torch():
    code = (
        "import sys, specviz.study.units, specviz.study.spec; "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
