"""The package's shape, read from its source with ``ast`` (nothing is imported).

* No import cycle between xpnet's modules, counting module-level imports and
  imports inside functions (a cycle hidden in a function is still a cycle), both
  relative and absolute. A module importing its own package (``from . import x``
  inside ``xpnet/layers/dense.py`` reaching ``xpnet/layers/__init__.py``) is not
  counted: every child does that through Python's import system anyway.
* No function in xpnet/ longer than 100 lines.

The cycle finder is tested on small synthetic graphs first, so a pass on the
package means something.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "xpnet"
MAX_FUNCTION_LINES = 100


# --------------------------------------------------------------------------
# Reading the package
# --------------------------------------------------------------------------


def module_names(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    root = package_dir.parent
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name ``from <level dots><target> import ...`` refers to inside ``module``."""
    base = module.split(".")
    if not is_package:
        base = base[:-1]  # a plain module's dots count from its package
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name the module imports, anywhere in it (also inside functions).

    ``from a import b`` yields both ``a`` and ``a.b`` (b may be a submodule);
    callers keep the names that are modules.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve_relative(module, is_package, node.level, node.module)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _owning_module(name: str, modules) -> str | None:
    """The longest prefix of a dotted name that is one of ``modules``."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a child's import of its own
    package ``__init__`` left out, see the module docstring)."""
    modules = module_names(package_dir)
    graph = {}
    for module, path in modules.items():
        edges = set()
        for name in imported_names(module, path):
            target = _owning_module(name, modules)
            if target is None or target == module:
                continue
            if module.startswith(target + "."):  # a child importing one of its packages
                continue
            edges.add(target)
        graph[module] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component that has one (Tarjan's algorithm).

    Each cycle is a list of nodes ``[a, b, ..., a]`` following edges of ``graph``.
    """
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(set(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    cycles = []
    for component in components:
        start = min(component)
        if len(component) > 1 or start in graph.get(start, ()):
            cycles.append(_cycle_through(graph, component, start))
    return cycles


def _cycle_through(graph, component: set, start: str) -> list[str]:
    """A shortest path start -> ... -> start inside one strongly connected component."""
    previous = {start: None}
    frontier = [start]
    while frontier:
        next_frontier = []
        for node in frontier:
            for succ in sorted(graph.get(node, ())):
                if succ == start:
                    path = [node]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return path[::-1] + [start]
                if succ in component and succ not in previous:
                    previous[succ] = node
                    next_frontier.append(succ)
        frontier = next_frontier
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - caller checked


def long_functions(package_dir: Path = PACKAGE_DIR, limit: int = MAX_FUNCTION_LINES):
    """``(file:line, name, length)`` of every function longer than ``limit`` lines."""
    found = []
    for path in sorted(package_dir.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                length = node.end_lineno - first + 1
                if length > limit:
                    rel = path.relative_to(package_dir.parent)
                    found.append((f"{rel}:{node.lineno}", node.name, length))
    return found


# --------------------------------------------------------------------------
# The checker itself, on synthetic input
# --------------------------------------------------------------------------


def test_find_cycles_on_synthetic_graphs():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}) == []  # a diamond
    assert find_cycles({"a": {"a"}}) == [["a", "a"]]
    assert find_cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]
    cycles = find_cycles({"x": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(),
                          "p": {"q"}, "q": {"p"}})
    assert sorted(map(tuple, cycles)) == [("a", "b", "c", "a"), ("p", "q", "p")]


def test_cycle_found_is_a_real_path():
    graph = {str(i): {str((i + 1) % 7), str((i * 3) % 7)} for i in range(7)}
    (cycle,) = find_cycles(graph)
    assert cycle[0] == cycle[-1]
    assert all(b in graph[a] for a, b in zip(cycle, cycle[1:]))


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_import_graph_sees_relative_absolute_and_hidden_imports(tmp_path):
    pkg = _write_package(tmp_path, {
        "__init__.py": "from .a import f\n",
        "a.py": "import numpy as np\nfrom . import b\n",
        "b.py": "def g():\n    from .sub.c import h\n    return h\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import a\nfrom pkg.sub import d\n",
        "sub/d.py": "from . import c  # a child of pkg.sub importing its own package is fine\n"
                    "import pkg\n",
    })
    graph = import_graph(pkg)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.sub.c"},
                     "pkg.sub": set(), "pkg.sub.c": {"pkg.a", "pkg.sub.d"},
                     "pkg.sub.d": {"pkg.sub.c"}}
    # a, b, c and d form one strongly connected component: one cycle reported for it.
    assert find_cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c", "pkg.a"]]


def test_long_functions_are_found(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(100))
    pkg = _write_package(tmp_path, {"m.py": f"def short():\n    return 1\n\n\ndef long():\n{body}\n"})
    assert long_functions(pkg) == [("pkg/m.py:5", "long", 101)]


# --------------------------------------------------------------------------
# The package
# --------------------------------------------------------------------------


def test_the_package_graph_is_read():
    graph = import_graph()
    assert "xpnet.network" in graph and "xpnet.layers.dense" in graph
    assert "xpnet.errors" in graph["xpnet.network"] or any(
        "xpnet.errors" in targets for targets in graph.values())


def test_no_import_cycle_in_xpnet():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles in xpnet/: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_function_in_xpnet_is_over_100_lines():
    too_long = long_functions()
    listed = ", ".join(f"{where} {name}() {n} lines" for where, name, n in too_long)
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {listed}"


# --------------------------------------------------------------------------
# Sizes, input kinds and private names (the rules of the architecture check)
# --------------------------------------------------------------------------

MAX_CLASS_LINES = 450  # outside xpnet/backends/, whose portable base holds every twin
MAX_MODULE_LINES = 800
MAX_PRIVATE_USES = 10
INPUT_KIND = re.compile(r"\b(is_host_array|HostData|BatchSource|memmap)\b")


def _python_files(package_dir: Path) -> list[Path]:
    return sorted(package_dir.rglob("*.py"))


def oversized(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Modules over ``MAX_MODULE_LINES`` lines and classes (outside backends/) over ``MAX_CLASS_LINES``."""
    found = []
    backends = package_dir / "backends"
    for path in _python_files(package_dir):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            found.append(f"{path.name}: {len(text.splitlines())} lines")
        if backends in path.parents:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                found.append(f"{path.name}: class {node.name}")
    return found


def input_kinds_outside_feeds(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """Code lines outside ``feeds/`` that name an input kind (comments and quoted lines aside)."""
    feeds = package_dir / "feeds"
    found = []
    for path in _python_files(package_dir):
        if feeds in path.parents:
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#")[0]
            if INPUT_KIND.search(code) and not code.lstrip().startswith(("\"", "'")):
                found.append(f"{path.name}:{i}")
    return found


def private_uses(package_dir: Path = PACKAGE_DIR) -> list[str]:
    """``from .x import _y`` and ``x._y`` on an imported xpnet module, across modules."""
    modules = module_names(package_dir)
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = _resolve_relative(module, path.name == "__init__.py", node.level, node.module)
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{path.name}:{node.lineno} imports {alias.name}")
                    if f"{base}.{alias.name}" in modules:
                        aliases[alias.asname or alias.name] = True
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                found.append(f"{path.name}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_rules_find_what_they_look_for(tmp_path):
    pkg = _write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import _hidden\nfrom . import b\nx = b._other\n"
                "def f(x):\n    return is_host_array(x)\n",
        "b.py": "class Big:\n" + "    x = 1\n" * (MAX_CLASS_LINES + 1),
        "feeds/__init__.py": "def is_host_array(x):\n    return True\n",
    })
    assert oversized(pkg) == ["b.py: class Big"]
    assert input_kinds_outside_feeds(pkg) == ["a.py:5"]
    assert private_uses(pkg) == ["a.py:1 imports _hidden", "a.py:3 uses b._other"]


def test_no_oversized_module_or_class():
    assert not oversized(), oversized()


def test_input_kinds_are_named_only_in_feeds():
    assert not input_kinds_outside_feeds(), input_kinds_outside_feeds()


def test_few_uses_of_other_modules_private_names():
    uses = private_uses()
    assert len(uses) <= MAX_PRIVATE_USES, uses
