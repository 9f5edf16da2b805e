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


#: The same list without JAX: for API-only tests that compare nothing numerically.
#: JAX dispatches slowly when eager and compiles steps; it stays in the parity,
#: fast-path, optimizer and gradient-check tests, where there is a reference.
API_BACKEND_SPECS = [s for s in BACKEND_SPECS if s[1] != "jax"]


@pytest.fixture(params=API_BACKEND_SPECS, ids=[s[0] for s in API_BACKEND_SPECS])
def api_backend_spec(request):
    spec_id, name, device = request.param
    if not _selected(spec_id, name):
        pytest.skip(f"{spec_id} not selected by XPNET_TEST_BACKENDS")
    return name, device


@pytest.fixture
def api_backend(api_backend_spec, dtype):
    """Like ``backend`` but without JAX (see API_BACKEND_SPECS)."""
    name, device = api_backend_spec
    return make_backend(name, device, dtype)


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
