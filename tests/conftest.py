"""Shared fixtures: every test that takes ``backend`` runs once per available backend.

Select backends with ``XPNET_TEST_BACKENDS`` (comma separated names or ids, e.g.
``numpy,torch`` or ``array_api_strict-device1``); default: all of them. A
backend that is not installed, or has no device, is skipped with the reason.
"""

from __future__ import annotations

import os

# Must happen before jax is imported anywhere: float64 on JAX.
os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# Every fit on one BLAS thread unless a test asks otherwise: the bit-for-bit and parity
# tests must not depend on xpnet's per-fit default (tests/test_blas_threads.py tests it).
os.environ.setdefault("XPNET_BLAS_THREADS", "1")

import numpy as np
import pytest
from _helpers import make_backend

# (id, backend name, device)
BACKEND_SPECS = [
    ("numpy", "numpy", None),
    ("array_api_strict", "array_api_strict", None),
    # array-api-strict's fake second device catches arrays created on the default device.
    ("array_api_strict-device1", "array_api_strict", "device1"),
    ("torch", "torch", "cpu"),
    ("torch-cuda", "torch", "cuda"),
    ("jax", "jax", None),
    ("cupy", "cupy", None),
]


def _selected(spec_id: str, name: str) -> bool:
    wanted = os.environ.get("XPNET_TEST_BACKENDS", "").strip()
    if not wanted:
        return True
    items = {w.strip() for w in wanted.split(",") if w.strip()}
    return spec_id in items or name in items


@pytest.fixture(params=[s for s in BACKEND_SPECS], ids=[s[0] for s in BACKEND_SPECS])
def backend_spec(request):
    spec_id, name, device = request.param
    if not _selected(spec_id, name):
        pytest.skip(f"{spec_id} not selected by XPNET_TEST_BACKENDS")
    return name, device


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "api_only: exercises the API and compares nothing numerically; not run on "
                   "JAX (see tests/README.md)")


def pytest_collection_modifyitems(config, items):
    """Deselect the JAX variants of ``api_only`` tests.

    JAX dispatches slowly when eager and compiles training steps; it stays in the
    parity, fast-path, optimizer and gradient-check tests, where there is a
    reference to compare with, and is left out of API smoke tests.
    """
    keep, dropped = [], []
    for item in items:
        spec = getattr(item, "callspec", None)
        on_jax = spec is not None and spec.params.get("backend_spec", (None, None, None))[0] == "jax"
        (dropped if on_jax and item.get_closest_marker("api_only") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def backend(backend_spec, dtype):
    """A Backend for every (backend, device) x (float32, float64)."""
    name, device = backend_spec
    return make_backend(name, device, dtype)


@pytest.fixture
def backend64(backend_spec):
    """A float64 Backend for every (backend, device): gradient checks."""
    name, device = backend_spec
    return make_backend(name, device, "float64")


@pytest.fixture
def backend32(backend_spec):
    name, device = backend_spec
    return make_backend(name, device, "float32")


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
