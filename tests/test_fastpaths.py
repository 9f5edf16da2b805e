"""Every backend-specific fast path against its portable twin."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import rel_err, rtol_for, run_in_threads

import xpnet
from xpnet.backends import Backend
from xpnet.losses import one_hot
from xpnet.training import first_trainable_index, make_train_step, portable_train_step


def _twin_runs(be, steps=5):
    """Run `steps` training steps with the backend's step and with the portable twin."""
    rng = np.random.default_rng(1)
    X = be.asarray(rng.random((64, 12)))
    y = be.asarray(rng.integers(0, 4, 64), dtype=be.index_dtype)
    onehot = one_hot(y, 4, dtype=be.dtype)
    results = []
    for make in (lambda layers, first: make_train_step(be, layers, first),
                 lambda layers, first: portable_train_step(be, layers, first)):
        model = xpnet.Sequential.mlp([12, 16, 8, 4], seed=0, backend=be)
        step = make(model.layers, first_trainable_index(model.layers))
        order = np.random.default_rng(2)
        losses = []
        for _ in range(steps):
            idx = be.asarray(order.permutation(64)[:16], dtype=be.index_dtype)
            losses.append(float(step(X, onehot, idx)))
        results.append((losses, [be.to_numpy(p) for layer in model for p in layer.params.values()]))
    return results


def test_train_step_fast_path_matches_portable_twin(backend):
    (fast_losses, fast_params), (twin_losses, twin_params) = _twin_runs(backend)
    tol = rtol_for(backend)
    assert rel_err(fast_losses, twin_losses) < tol
    for a, b in zip(fast_params, twin_params):
        assert rel_err(a, b) < tol


def test_jax_step_is_compiled_and_leaves_no_tracers():
    import pytest

    pytest.importorskip("jax")
    import jax

    be = xpnet.get_backend("jax", dtype="float64")
    model = xpnet.Sequential.mlp([5, 4, 3], seed=0, backend=be)
    step = make_train_step(be, model.layers, 0)
    X = be.asarray(np.ones((4, 5)))
    onehot = one_hot(be.asarray(np.array([0, 1, 2, 0]), dtype=be.index_dtype), 3, dtype=be.dtype)
    step(X, onehot, be.asarray(np.arange(4), dtype=be.index_dtype))
    for layer in model:
        for p in layer.params.values():
            assert isinstance(p, jax.Array) and not isinstance(p, jax.core.Tracer)


def test_compiled_step_is_reused_by_a_second_fit(backend):
    rng = np.random.default_rng(0)
    X = backend.asarray(rng.random((32, 5)))
    y = backend.asarray(rng.integers(0, 3, 32), dtype=backend.index_dtype)
    model = xpnet.Sequential.mlp([5, 4, 3], seed=0, backend=backend)
    model.fit(X, y, epochs=1, batch_size=8, train_accuracy=False)
    model.fit(X, y, epochs=1, batch_size=8, train_accuracy=False)
    assert len(model.train_steps) == 1
    model[0].learning_rate = 0.05  # a new rate is a new (compiled) step...
    model.fit(X, y, epochs=1, batch_size=8, train_accuracy=False)
    # ...except for a compiled epoch, which takes the rates as arguments
    assert len(model.train_steps) == (1 if backend.compiles_loops else 2)


def test_compiled_step_sees_changed_layer_settings(backend):
    """A compiled step bakes in Python numbers: changing one must give a new step."""
    rng = np.random.default_rng(0)
    X = backend.asarray(rng.random((32, 5)))
    y = backend.asarray(rng.integers(0, 3, 32), dtype=backend.index_dtype)
    ref = xpnet.get_backend("numpy", dtype="float64")
    results = []
    for be in (backend, ref):
        model = xpnet.Sequential([xpnet.Dense(5, 4, rng=0, backend=be), xpnet.LeakyReLU(0.1, backend=be),
                                  xpnet.Dense(4, 3, rng=1, backend=be)])
        Xb = be.asarray(backend.to_numpy(X))
        yb = be.asarray(backend.to_numpy(y), dtype=be.index_dtype)
        model.fit(Xb, yb, epochs=1, batch_size=8, train_accuracy=False)
        model[1].negative_slope = 0.5
        model.fit(Xb, yb, epochs=1, batch_size=8, train_accuracy=False)
        results.append(be.to_numpy(model[0].weights))
    assert rel_err(results[0], results[1]) < rtol_for(backend)


def test_affine_and_matmul_update_match_portable_twins(backend):
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    b, g = rng.standard_normal(3), rng.standard_normal((5, 3))
    tol = rtol_for(backend)
    fast = backend.affine(backend.asarray(x), backend.asarray(w), backend.asarray(b))
    twin = Backend.affine(backend, backend.asarray(x), backend.asarray(w), backend.asarray(b))
    assert rel_err(backend.to_numpy(fast), backend.to_numpy(twin)) < tol
    assert rel_err(backend.to_numpy(fast), x @ w + b) < tol
    wd = backend.asarray(w)
    updated = backend.sub_matmul_(wd, backend.asarray(x.T), backend.asarray(g))
    twin = Backend.sub_matmul_(backend, backend.asarray(w), backend.asarray(x.T), backend.asarray(g))
    assert rel_err(backend.to_numpy(updated), backend.to_numpy(twin)) < tol
    assert rel_err(backend.to_numpy(updated), w - x.T @ g) < tol
    if backend.mutable_arrays:
        assert updated is wd  # in place: no temporary the size of the weights


def test_gather_and_relu_match_portable_twins(backend):
    """take_rows (torch: index_select), relu and relu_backward (torch: no scalar/cast wrappers)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 5))
    x[0, :2] = 0.0  # the kink: both conventions give 0 there
    g = rng.standard_normal((6, 5))
    xd, gd = backend.asarray(x), backend.asarray(g)
    idx = backend.asarray(np.array([4, 0, 4, 2]), dtype=backend.index_dtype)
    pairs = [(backend.take_rows(xd, idx), Backend.take_rows(backend, xd, idx), x[[4, 0, 4, 2]]),
             (backend.relu(xd), Backend.relu(backend, xd), np.maximum(x, 0.0)),
             (backend.relu_backward(xd, gd), Backend.relu_backward(backend, xd, gd), g * (x > 0))]
    for fast, twin, want in pairs:
        fast, twin = backend.to_numpy(fast), backend.to_numpy(twin)
        assert fast.dtype == twin.dtype and fast.shape == twin.shape
        np.testing.assert_array_equal(fast, twin)  # exact: no arithmetic differs
        assert rel_err(fast, want) < rtol_for(backend)


def _sklearn_momentum_reference(p, v, g, lr, m, nesterov, decay):
    """scikit-learn's SGDOptimizer update, written out in float64."""
    u = lr * (g + (decay or 0.0) * p)
    v = m * v - u
    return p + (m * v - u if nesterov else v), v


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("decay", [None, 0.25, "0-d"])
def test_momentum_step_matches_portable_twin(backend, nesterov, decay):
    """The velocity-form momentum kernel (NumPy: in place, one scratch buffer) against its
    twin and against scikit-learn's update, with and without the L2 term."""
    rng = np.random.default_rng(5)
    p, v, g = (rng.standard_normal((7, 3)) for _ in range(3))
    coef = backend.asarray(0.25) if decay == "0-d" else decay
    want_p, want_v = _sklearn_momentum_reference(p, v, g, 0.1, 0.9, nesterov,
                                                 None if decay is None else 0.25)
    kwargs = dict(lr=0.1, momentum=0.9, nesterov=nesterov, decay=coef)
    pd, vd, gd = backend.asarray(p), backend.asarray(v), backend.asarray(g)
    fast_p, fast_v = backend.momentum_step_(pd, vd, gd, **kwargs)
    twin_p, twin_v = Backend.momentum_step_(backend, backend.asarray(p), backend.asarray(v),
                                            backend.asarray(g), **kwargs)
    tol = rtol_for(backend)
    for fast, twin, want in ((fast_p, twin_p, want_p), (fast_v, twin_v, want_v)):
        assert rel_err(backend.to_numpy(fast), backend.to_numpy(twin)) < tol
        assert rel_err(backend.to_numpy(fast), want) < tol
    np.testing.assert_array_equal(backend.to_numpy(gd), backend.to_numpy(backend.asarray(g)))
    if type(backend).momentum_step_ is not Backend.momentum_step_:
        assert fast_p is pd and fast_v is vd  # in place: no temporaries of the parameter's size


def test_momentum_step_scratch_is_per_thread_and_bounded():
    """Two threads stepping at once never share the NumPy kernel's scratch buffer, and the
    buffer grows to the largest parameter only."""
    be = xpnet.get_backend("numpy", dtype="float64")
    from xpnet.backends import numpy as numpy_backend

    sizes, errors = {}, []

    def work(seed):
        rng = np.random.default_rng(seed)
        for shape in [(300, 40), (5,), (40, 300), (3, 3)]:
            p, v, g = (rng.standard_normal(shape) for _ in range(3))
            want = _sklearn_momentum_reference(p, v, g, 0.05, 0.5, True, 0.1)
            for _ in range(50):
                got = be.momentum_step_(p.copy(), v.copy(), g, lr=0.05, momentum=0.5,
                                        nesterov=True, decay=0.1)
                if rel_err(got[0], want[0]) > 1e-12 or rel_err(got[1], want[1]) > 1e-12:
                    errors.append(seed)
        sizes[seed] = numpy_backend._scratch.buffers[np.dtype(np.float64), 0].size

    run_in_threads(work, 4)
    assert not errors
    assert sizes == {s: 12000 for s in range(4)}


@pytest.mark.parametrize("decay", [None, 0.25, "0-d"])
def test_adam_step_matches_portable_twin(backend, decay):
    """scikit-learn's Adam update (NumPy: in place, two scratch buffers; torch: addcdiv_)."""
    rng = np.random.default_rng(6)
    p, m, g = (rng.standard_normal((6, 4)) for _ in range(3))
    v = rng.random((6, 4))
    coef = backend.asarray(0.25) if decay == "0-d" else decay
    kwargs = dict(step_size=0.01, beta1=0.9, beta2=0.999, eps=1e-8, decay=coef)
    gg = g + (0.0 if decay is None else 0.25) * p
    want_m = 0.9 * m + 0.1 * gg
    want_v = 0.999 * v + 0.001 * gg * gg
    want = (p - 0.01 * want_m / (np.sqrt(want_v) + 1e-8), want_m, want_v)
    args = [backend.asarray(a) for a in (p, m, v, g)]
    fast = backend.adam_step_(*args, **kwargs)
    twin = Backend.adam_step_(backend, *(backend.asarray(a) for a in (p, m, v, g)), **kwargs)
    tol = rtol_for(backend)
    for f, t, w in zip(fast, twin, want):
        assert rel_err(backend.to_numpy(f), backend.to_numpy(t)) < tol
        assert rel_err(backend.to_numpy(f), w) < tol
    np.testing.assert_array_equal(backend.to_numpy(args[3]), g.astype(backend.to_numpy(args[3]).dtype))
    if type(backend).adam_step_ is not Backend.adam_step_:
        assert all(f is a for f, a in zip(fast, args[:3]))  # in place


def test_dense_sgd_step_matches_portable_twin(backend):
    """The Dense layer's SGD step (torch: the rate as addmm_/sub_ alpha) against its twin."""
    rng = np.random.default_rng(7)
    w, b = rng.standard_normal((5, 3)), rng.standard_normal(3)
    x, g = rng.standard_normal((4, 5)), rng.standard_normal((4, 3))
    fast = backend.dense_sgd_step_(backend.asarray(w), backend.asarray(b), backend.asarray(x),
                                   backend.asarray(g), 0.1)
    twin = Backend.dense_sgd_step_(backend, backend.asarray(w), backend.asarray(b),
                                   backend.asarray(x), backend.asarray(g), 0.1)
    tol = rtol_for(backend)
    for f, t, want in zip(fast, twin, (w - 0.1 * x.T @ g, b - 0.1 * g.sum(0))):
        assert rel_err(backend.to_numpy(f), backend.to_numpy(t)) < tol
        assert rel_err(backend.to_numpy(f), want) < tol


@pytest.mark.parametrize("scale", [5.0, 500.0])  # 500: exp overflows without the max shift
def test_softmax_crossentropy_matches_portable_twin(backend, scale):
    """The training step's loss kernel (torch: log_softmax; NumPy: in place) against its twin
    and float64 math."""
    rng = np.random.default_rng(8)
    z = rng.standard_normal((6, 4)) * scale
    onehot = np.eye(4)[rng.integers(0, 4, 6)]
    fast = backend.softmax_crossentropy(backend.asarray(z), backend.asarray(onehot))
    twin = Backend.softmax_crossentropy(backend, backend.asarray(z), backend.asarray(onehot))
    log_p = z - z.max(axis=1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(axis=1, keepdims=True))
    want = (-(log_p * onehot).sum(), (np.exp(log_p) - onehot) / 6)
    tol = rtol_for(backend)
    for f, t, w in zip(fast, twin, want):
        assert rel_err(backend.to_numpy(f), backend.to_numpy(t)) < tol
        assert rel_err(backend.to_numpy(f), w) < tol
