"""MkDocs hooks (mkdocs.yml ``hooks:``): the API reference and the command-line page, generated.

Nothing here is written to disk: at every build the pages are made from the
package as it is, so a new public module gets its page and a new command-line
option its help text without anyone editing the docs.

* ``api/<module>.md`` for every public module of ``xpnet`` (no path part
  starting with ``_``), each one mkdocstrings ``:::`` directive;
* ``api/index.md``, the list of those pages;
* ``cli.md``, the ``--help`` of ``xpnet`` and of each of its commands.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
from pathlib import Path

from mkdocs.structure.files import File, Files

PACKAGE = "xpnet"
ROOT = Path(__file__).resolve().parent.parent


def public_modules(package_dir: Path = ROOT / PACKAGE) -> list[str]:
    """Dotted names of the package's public modules and subpackages, sorted.

    Parameters
    ----------
    package_dir : pathlib.Path
        The package's source directory.

    Returns
    -------
    list of str
        ``["xpnet", "xpnet.backends", "xpnet.backends.cupy", ...]``.
    """
    names = []
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(part.startswith("_") for part in parts):
            continue
        names.append(".".join(parts))
    return sorted(names)


#: Per-module mkdocstrings options. The package page shows its docstring only: its
#: members are re-exports documented on their own modules' pages.
MODULE_OPTIONS = {PACKAGE: ["members: false"]}

#: Known docstring findings that the build tolerates until their owner fixes them, as
#: (file, text in the message). None now: the estimators' docstrings were rewritten.
KNOWN_FINDINGS: tuple[tuple[str, str], ...] = ()


def _module_page(name: str) -> str:
    options = MODULE_OPTIONS.get(name)
    block = "" if options is None else "    options:\n" + "".join(
        f"      {line}\n" for line in options)
    return f"# `{name}`\n\n::: {name}\n{block}"


class _KnownFindings(logging.Filter):
    """Drop exactly the warnings listed in KNOWN_FINDINGS (nothing else)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(path in message and text in message for path, text in KNOWN_FINDINGS)


def on_config(config):
    """Filter the known findings and complete the navigation.

    The filter goes on griffe's logger, through which mkdocstrings reports docstrings.
    The navigation gets every module page under "API reference" and every page of
    docs/ that mkdocs.yml does not list (a new guide appears without editing it).
    """
    for name in ("griffe", "mkdocs.plugins.griffe", "mkdocs.plugins.mkdocstrings"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _KnownFindings) for f in logger.filters):
            logger.addFilter(_KnownFindings())
    if config.nav:
        config.nav = _completed_nav(config.nav, Path(config.docs_dir))
    return config


def _nav_paths(nav) -> set[str]:
    """Every page path a (nested) mkdocs nav names."""
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, dict):
        return set().union(*(_nav_paths(v) for v in nav.values()))
    return set().union(set(), *(_nav_paths(item) for item in nav))


def _completed_nav(nav: list, docs_dir: Path) -> list:
    api = [{f"{name}": f"api/{name}.md"} for name in public_modules()]
    listed = _nav_paths(nav)
    extra = sorted(p.name for p in docs_dir.glob("*.md") if p.name not in listed)
    out = []
    for item in nav:
        if isinstance(item, dict) and list(item.values()) == ["api/index.md"]:
            out += extra  # new guides before the reference
            out.append({next(iter(item)): ["api/index.md", *api]})
        else:
            out.append(item)
    return out


def _index_page(names: list[str]) -> str:
    lines = ["# API reference", "",
             "One page per public module, generated from the docstrings (numpydoc style).",
             "The command line: [`xpnet` commands](../cli.md).", ""]
    lines += [f"* [`{name}`]({name}.md)" for name in names]
    return "\n".join(lines) + "\n"


def _help_text(parser: argparse.ArgumentParser) -> str:
    # A fixed width keeps the page identical whatever terminal builds it.
    with _columns(88), contextlib.redirect_stdout(io.StringIO()) as out:
        parser.print_help()
    return out.getvalue()


@contextlib.contextmanager
def _columns(width: int):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse offers no public accessor for subcommands
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_page() -> str:
    """Markdown of ``xpnet --help`` and ``xpnet COMMAND --help`` for every command."""
    from xpnet.cli import build_parser

    parser = build_parser()
    parts = ["# Command line", "",
             "`xpnet` (also `python -m xpnet`) after installing the package. Errors exit "
             "with status 1 (2 for a wrong command line or an unusable data file) and one "
             "line on stderr.", "", "```text", _help_text(parser).rstrip(), "```"]
    for name, sub in _subparsers(parser).items():
        parts += ["", f"## `xpnet {name}`", "", "```text", _help_text(sub).rstrip(), "```"]
    return "\n".join(parts) + "\n"


def on_files(files: Files, config) -> Files:
    """Add the generated pages to the build."""
    names = public_modules()
    pages = {f"api/{name}.md": _module_page(name) for name in names}
    pages["api/index.md"] = _index_page(names)
    pages["cli.md"] = cli_page()
    for uri, content in pages.items():
        files.append(File.generated(config, uri, content=content))
    return files
