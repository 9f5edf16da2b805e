"""Helpers shared by the test files: backend construction, tolerances, plain NumPy
float64 references and finite differences.

Test files import from here (``from _helpers import ...``); ``conftest.py`` holds
only fixtures and hooks. See tests/README.md.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.errors import BackendUnavailableError


def make_backend(name, device, dtype):
    """The Backend, or a pytest skip naming what is missing."""
    try:
        return xpnet.get_backend(name, device=device, dtype=dtype)
    except BackendUnavailableError as exc:
        pytest.skip(f"{name} unavailable: {exc}")


def rtol_for(be) -> float:
    """Relative tolerance scaled to the dtype (see tests/README.md)."""
    return 1e-10 if be.dtype_name == "float64" else 2e-4


def cast_like(be, x):
    """What the backend holds for host x: float64 data rounded to its dtype, as float64."""
    return x.astype(np.float32 if be.dtype_name == "float32" else np.float64).astype(np.float64)


class RecordingOptimizer:
    """Stores the gradients a layer hands over instead of stepping."""

    def __init__(self):
        self.grads = {}

    def update(self, layer, grads):
        self.grads = dict(grads)


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of scalar f at x (float64)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        fp = f(x)
        x[i] = old - eps
        fm = f(x)
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def ref_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def ref_xent(z, y):
    """The tutorial's per-sample loss, with fancy indexing (fine on the host)."""
    return -ref_log_softmax(z)[np.arange(len(z)), y]


def ref_xent_grad(z, y):
    p = np.exp(ref_log_softmax(z))
    p[np.arange(len(z)), y] -= 1.0
    return p / len(z)


def rel_err(a, b) -> float:
    """Norm-wise relative error max|a-b| / max|b| (robust near zeros)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def ref_softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def mpiexec_path() -> str | None:
    """The mpiexec next to this Python (the mpich wheel installs it there), else on PATH."""
    here = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    return here or shutil.which("mpiexec")


def mpi_skip_reason() -> str | None:
    """Why the real-MPI tests cannot run here, or None."""
    if importlib.util.find_spec("mpi4py") is None:
        return 'mpi4py is not installed (pip install "xpnet[mpi]")'
    if mpiexec_path() is None:
        return 'no mpiexec next to the Python or on PATH (pip install "xpnet[mpi]")'
    return None


def mpi_env(root) -> dict:
    """The environment of an MPI test job: loopback/shared memory, one BLAS thread per rank."""
    import os

    return dict(os.environ, UCX_TLS="self,sm", HYDRA_IFACE="lo", OMP_NUM_THREADS="1",
                OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", JAX_ENABLE_X64="1",
                JAX_PLATFORMS="cpu", PYTHONPATH=str(root))


def run_mpi(n: int, *args: str, root, timeout: float, cwd=None):
    """``mpiexec -n n python -m mpi4py ARGS`` on loopback, in ``cwd`` (default ``root``,
    the checkout xpnet is imported from), with a timeout.

    Through ``-m mpi4py`` an exception on one rank aborts the job instead of
    leaving the others waiting; the timeout turns any hang into a failure.
    """
    import subprocess

    cmd = [mpiexec_path(), "-n", str(n), sys.executable, "-m", "mpi4py", *args]
    return subprocess.run(cmd, env=mpi_env(root), cwd=root if cwd is None else cwd,
                          capture_output=True, text=True, timeout=timeout)


def assert_ranks_ok(proc, n: int) -> None:
    """The job succeeded and each of its ``n`` ranks printed ``OK <rank>``."""
    import re

    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # Ranks' lines may interleave in the launcher's output: count markers, not lines.
    assert sorted(map(int, re.findall(r"OK (\d+)", proc.stdout))) == list(range(n)), out[-4000:]


def run_in_threads(work, n: int, timeout: float = 60.0) -> None:
    """``work(i)`` for ``i`` in ``range(n)``, each in its own thread, all at once; waits for them."""
    import threading

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a thread is still running"
