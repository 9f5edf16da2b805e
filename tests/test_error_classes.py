"""Every error xpnet raises is of a built-in type a user would catch (issue 11, item 3).

``xpnet/errors.py`` promises that each xpnet error also derives from the matching
built-in (``ValueError``, ``TypeError``, ``ImportError``, ...), so that ``except
ValueError`` keeps working for people who never heard of xpnet's classes. This
test walks every ``raise`` statement of the package with ``ast`` and checks the
class it raises; a new ``raise XpnetError(...)`` (caught only by ``except
Exception``) fails here.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import inspect
from pathlib import Path

import pytest

import xpnet.errors

PACKAGE = Path(xpnet.errors.__file__).parent
#: Exceptions a raise may name that are neither built-ins nor xpnet's: argparse's own
#: convention for a ``type=`` converter, which argparse turns into a usage message.
ALLOWED_FOREIGN = {"argparse.ArgumentTypeError"}
#: Built-in bases too broad to count as "the matching built-in".
TOO_BROAD = {BaseException, Exception}


def _raised_names(tree: ast.Module):
    """``(lineno, dotted name)`` of the class or factory each ``raise X(...)`` names."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(target, ast.Name):
            yield node.lineno, target.id
        elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
            yield node.lineno, f"{target.value.id}.{target.attr}"


def _factory_returns(tree: ast.Module) -> dict:
    """Module-level helpers annotated ``-> SomeError`` (``raise _corrupt(...)``)."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and isinstance(node.returns, ast.Name):
            out[node.name] = node.returns.id
    return out


def _is_bound_variable(tree: ast.Module, name: str) -> bool:
    """``raise exc`` of a caught or built exception (``except E as exc`` / ``exc = ...``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.name == name:
            return True
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return True
    return False


def _problem(cls) -> str | None:
    """Why raising ``cls`` breaks the promise, or None."""
    if not (inspect.isclass(cls) and issubclass(cls, BaseException)):
        return f"{cls!r} is not an exception class"
    builtin_bases = [b for b in cls.__mro__
                     if b.__module__ == "builtins" and b not in TOO_BROAD and b is not object]
    if not builtin_bases:
        return f"{cls.__name__} derives from no specific built-in (only Exception)"
    return None


def _module_of(path: Path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return importlib.import_module(".".join(p for p in parts if p != "__init__"))


def _check_module(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    module = _module_of(path)
    factories = _factory_returns(tree)
    problems = []
    for lineno, name in _raised_names(tree):
        where = f"{path.relative_to(PACKAGE.parent)}:{lineno}"
        if name in ALLOWED_FOREIGN:
            continue
        name = factories.get(name, name)
        cls = getattr(module, name, None) or getattr(builtins, name, None)
        if cls is None:
            if _is_bound_variable(tree, name):
                continue  # a re-raise: its class was checked where it was created
            problems.append(f"{where}: raises {name}, which is neither built-in nor "
                            "defined or imported there")
            continue
        why = _problem(cls)
        if why:
            problems.append(f"{where}: {why}")
    return problems


def test_every_raise_in_xpnet_is_of_a_specific_builtin_type():
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20  # the walk really sees the package
    problems = [p for path in modules for p in _check_module(path)]
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_bare_xpnet_error(tmp_path):
    bad = tmp_path / "xpnet_fake" / "mod.py"
    bad.parent.mkdir()
    bad.write_text("from xpnet.errors import XpnetError\n\ndef f():\n    raise XpnetError('x')\n")
    tree = ast.parse(bad.read_text())
    names = [name for _, name in _raised_names(tree)]
    assert names == ["XpnetError"]
    assert "only Exception" in _problem(xpnet.errors.XpnetError)


@pytest.mark.parametrize("name", [n for n in xpnet.errors.__all__ if n != "XpnetError"])
def test_every_public_error_class_has_a_builtin_base(name):
    cls = getattr(xpnet.errors, name)
    assert issubclass(cls, xpnet.errors.XpnetError)
    assert _problem(cls) is None


def test_backend_selection_errors_are_caught_by_builtin_excepts():
    with pytest.raises(ValueError, match="tensorflow"):
        xpnet.get_backend("tensorflow")
    with pytest.raises(ValueError, match="cuda:0"):
        xpnet.get_backend("numpy", device="cuda:0")
