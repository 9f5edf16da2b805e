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


def test_inplace_relu_fast_paths_match_portable_twins(backend):
    """relu_ and relu_backward_ (NumPy: written into their argument) against their twins,
    bit for bit, and relu_backward (NumPy: no cast temporary) against its twin; on NumPy
    -0.0 and NaN included (torch's own kernels treat those differently from the portable
    twins, documented in TorchBackend)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((6, 5))
    g = rng.standard_normal((6, 5))
    x[0, 0] = 0.0  # the kink
    if backend.name == "numpy":
        x[0, 1:3] = [-0.0, np.nan]
        g[1, 0] = np.nan
    want_fwd = Backend.relu(backend, backend.asarray(x))
    want_bwd = Backend.relu_backward(backend, backend.asarray(x), backend.asarray(g))
    xd, gd = backend.asarray(x), backend.asarray(g)
    fwd = backend.relu_(xd)
    # the backward of the overwritten input is the backward of the original one
    bwd = backend.relu_backward_(fwd, gd)
    twins = [(fwd, Backend.relu_(backend, backend.asarray(x)), want_fwd),
             (bwd, Backend.relu_backward_(backend, backend.asarray(x), backend.asarray(g)),
              want_bwd),
             (backend.relu_backward(backend.asarray(x), backend.asarray(g)), want_bwd, want_bwd)]
    for fast, twin, want in twins:
        fast, twin, want = (backend.to_numpy(a) for a in (fast, twin, want))
        assert fast.dtype == twin.dtype == want.dtype and fast.shape == want.shape
        np.testing.assert_array_equal(fast, twin)  # exact, NaN where NaN
        if backend.name == "numpy":  # bit for bit: the signs of zeros too
            np.testing.assert_array_equal(np.signbit(fast), np.signbit(twin))
        assert rel_err(np.nan_to_num(fast), np.nan_to_num(want)) < rtol_for(backend)
    if type(backend).relu_ is not Backend.relu_:
        assert fwd is xd and bwd is gd  # in place: no new array of the input's size
    if backend.name == "numpy":  # the twins themselves never write into their arguments
        xs, gs = backend.asarray(x), backend.asarray(g)
        Backend.relu_(backend, xs), Backend.relu_backward_(backend, xs, gs)
        np.testing.assert_array_equal(xs, backend.asarray(x))
        np.testing.assert_array_equal(gs, backend.asarray(g))


def test_numpy_fast_paths_leave_arrays_they_do_not_own():
    """Read-only arrays, memmap-like subclasses and mixed dtypes take the twins' way."""
    be = xpnet.get_backend("numpy", dtype="float64")
    rng = np.random.default_rng(10)
    x, g = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    frozen = x.copy()
    frozen.flags.writeable = False
    out = be.relu_(frozen)
    assert out is not frozen
    np.testing.assert_array_equal(frozen, x)
    np.testing.assert_array_equal(out, np.maximum(x, 0.0))
    out = be.relu_backward_(g, frozen)  # frozen as the gradient
    assert out is not frozen
    np.testing.assert_array_equal(out, x * (g > 0))
    # affine: float32 product + float64 biases give float64, as the twin's x @ w + b
    w32, b64 = rng.standard_normal((3, 2)).astype(np.float32), rng.standard_normal(2)
    x32 = x.astype(np.float32)
    fast, twin = be.affine(x32, w32, b64), Backend.affine(be, x32, w32, b64)
    assert fast.dtype == twin.dtype == np.float64
    np.testing.assert_array_equal(fast, twin)


@pytest.mark.parametrize("first", ["relu", "dense"])
def test_train_step_never_overwrites_the_input_or_the_loss_gradient(backend, first):
    """The in-place ReLU runs only on the Dense outputs and input gradients the step owns:
    X (even as a ReLU's input) and the targets stay as they were, the step's result equals
    that of layers without the in-place variants, and the parameters agree too."""
    from xpnet.layers.base import Layer
    from xpnet.training import train_step

    rng = np.random.default_rng(11)
    X = rng.standard_normal((16, 6))
    onehot = np.eye(3)[rng.integers(0, 3, 16)]

    def layers():
        head = [xpnet.ReLU(backend=backend)] if first == "relu" else []
        return head + [xpnet.Dense(6, 8, rng=0, backend=backend), xpnet.ReLU(backend=backend),
                       xpnet.Dense(8, 8, rng=1, backend=backend), xpnet.ReLU(backend=backend),
                       xpnet.Dense(8, 3, rng=2, backend=backend)]

    class PlainReLU(xpnet.ReLU):  # the step as it ran before the in-place variants
        _forward_ = Layer._forward_
        _backward_ = Layer._backward_

    Xd, td = backend.asarray(X), backend.asarray(onehot)
    fast = layers()
    loss_fast = train_step(fast, backend.xp, Xd, td, 0)
    plain = [PlainReLU(backend=backend) if isinstance(layer, xpnet.ReLU) else layer
             for layer in layers()]
    loss_plain = train_step(plain, backend.xp, backend.asarray(X), backend.asarray(onehot), 0)
    np.testing.assert_array_equal(backend.to_numpy(Xd), backend.to_numpy(backend.asarray(X)))
    np.testing.assert_array_equal(backend.to_numpy(td), backend.to_numpy(backend.asarray(onehot)))
    assert rel_err(float(loss_fast), float(loss_plain)) < rtol_for(backend)
    for a, b in zip(fast, plain):
        for name in a.param_names:
            assert rel_err(backend.to_numpy(getattr(a, name)),
                           backend.to_numpy(getattr(b, name))) < rtol_for(backend)
