"""JAX: ``fit`` really runs a compiled step, and it matches the portable twin.

Only public behaviour is used (``fit``, ``jax.disable_jit``), so the test holds
wherever the step builder lives. A compiled step runs the layers' Python
``_forward`` while tracing only (a bounded number of times); the portable twin
runs it on every step. Under ``jax.disable_jit()`` the same ``fit`` is the
portable twin: same math, so the same result to float64 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import rel_err

import xpnet

jax = pytest.importorskip("jax")

N, BATCH, EPOCHS = 40, 8, 3
STEPS = EPOCHS * (N // BATCH)


def _counting_fit(monkeypatch, be):
    """Fit a small MLP; return its final parameters, losses and how often Dense._forward ran."""
    calls = {"n": 0}
    original = xpnet.Dense._forward

    def counting(self, input):
        calls["n"] += 1
        return original(self, input)

    monkeypatch.setattr(xpnet.Dense, "_forward", counting)
    gen = np.random.default_rng(0)
    X = be.asarray(gen.standard_normal((N, 5)))
    y = be.asarray(gen.integers(0, 3, N), dtype=be.index_dtype)
    model = xpnet.Sequential.mlp([5, 8, 3], seed=0, backend=be)
    hist = model.fit(X, y, epochs=EPOCHS, batch_size=BATCH, seed=1, train_accuracy=False)
    monkeypatch.setattr(xpnet.Dense, "_forward", original)
    params = [be.to_numpy(p) for layer in model for p in layer.params.values()]
    return params, hist["loss"], calls["n"]


@pytest.fixture
def jax64():
    try:
        return xpnet.get_backend("jax", dtype="float64")
    except xpnet.errors.BackendUnavailableError as exc:
        pytest.skip(f"jax unavailable: {exc}")


def test_fit_on_jax_traces_its_step_instead_of_running_it_eagerly(monkeypatch, jax64):
    _, _, compiled_calls = _counting_fit(monkeypatch, jax64)
    with jax.disable_jit():
        _, _, eager_calls = _counting_fit(monkeypatch, jax64)
    n_dense = 2
    assert eager_calls == STEPS * n_dense  # the twin runs the Python code every step
    # Compiled: traced once (twice at most, e.g. a retrace for weak types), not per step.
    assert 1 * n_dense <= compiled_calls <= 2 * n_dense < eager_calls


def test_compiled_fit_matches_the_portable_twin(monkeypatch, jax64):
    params, losses, _ = _counting_fit(monkeypatch, jax64)
    with jax.disable_jit():
        twin_params, twin_losses, _ = _counting_fit(monkeypatch, jax64)
    assert rel_err(losses, twin_losses) < 1e-12
    for a, b in zip(params, twin_params):
        assert rel_err(a, b) < 1e-12
