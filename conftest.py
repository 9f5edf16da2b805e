"""Every ``python`` code block of README.md and docs/*.md runs as a test (Sybil).

Blocks of one file share one namespace, top to bottom, as a reader would run them;
an HTML comment ``<!-- invisible-code-block: python ... -->`` after a block checks
its result without showing in the rendered page, and ``<!-- skip: next ... -->``
skips a block that needs what the machine may lack (see docs/distributed.md).
A new page under docs/ is picked up without any change here. Only fenced
``python`` blocks run: shell commands are ``bash`` blocks, output ``text``.
"""

from __future__ import annotations

import importlib.util

import pytest
from sybil import Sybil
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser


@pytest.fixture(scope="module")
def docs_workdir(tmp_path_factory):
    """Run each page in a fresh directory (examples save files, and later blocks of the
    same page read them) with one BLAS thread.

    One thread: the examples' matrices are small, and on a shared CI machine
    BLAS threads contending with other jobs can make them ten times slower.
    """
    workdir = tmp_path_factory.mktemp("docs")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        for name in ("XPNET_BACKEND", "XPNET_DEVICE", "XPNET_DTYPE", "XPNET_DATA_DIR"):
            patch.delenv(name, raising=False)
        import numpy  # noqa: F401  (loads its BLAS, so that the limit below reaches it)

        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - threadpoolctl is in the test extra
            yield workdir
            return
        with threadpool_limits(limits=1, user_api="blas"):
            yield workdir


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _setup(namespace: dict) -> None:
    """Names the pages' ``skip: next if(...)`` conditions use."""
    namespace["HAVE_MPI4PY"] = _available("mpi4py")
    namespace["HAVE_CUPY"] = _available("cupy")


pytest_collect_file = Sybil(
    parsers=[PythonCodeBlockParser(), SkipParser()],
    patterns=["README.md", "docs/*.md", "docs/*/*.md"],
    fixtures=["docs_workdir"],
    setup=_setup,
).pytest()
