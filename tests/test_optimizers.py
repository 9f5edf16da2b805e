"""Optimizers and learning-rate schedules.

* Against PyTorch's ``torch.optim`` (an independent implementation, with
  autograd gradients): the first 10 updates of SGD, momentum, Nesterov, Adam
  and AdamW on a fixed problem agree to float64 rounding, on every backend.
  Skipped when torch is absent.
* Against a plain NumPy float64 reference written here: parity on every
  backend in float32 and float64.
* ``SGD()`` reproduces the seed's in-backward step; the decoupled
  ``step(layers)`` flow equals the in-backward flow.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _helpers import rel_err, rtol_for

import xpnet
from xpnet.layers import Dense, Tanh
from xpnet.optimizers import (
    SGD,
    Adam,
    AdamW,
    CosineSchedule,
    KeepGrads,
    StepSchedule,
    get_optimizer,
    get_schedule,
)

SIZES = [(4, 5), (5, 3)]
N_STEPS = 10
BATCH = 6

# name -> (xpnet optimizer factory, torch.optim class name, torch kwargs)
CONFIGS = {
    "sgd": (lambda: SGD(0.1), "SGD", dict(lr=0.1)),
    "sgd-wd": (lambda: get_optimizer("sgd", 0.1, weight_decay=0.01), "SGD",
               dict(lr=0.1, weight_decay=0.01)),
    "momentum": (lambda: get_optimizer("momentum", 0.1), "SGD", dict(lr=0.1, momentum=0.9)),
    "momentum-dampening-wd": (lambda: SGD(0.05, momentum=0.8, dampening=0.1, weight_decay=0.02),
                              "SGD", dict(lr=0.05, momentum=0.8, dampening=0.1,
                                          weight_decay=0.02)),
    "nesterov": (lambda: get_optimizer("nesterov", 0.1, weight_decay=1e-3), "SGD",
                 dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "adam": (lambda: get_optimizer("adam", 0.01), "Adam", dict(lr=0.01)),
    "adam-l2": (lambda: Adam(0.01, weight_decay=0.1), "Adam", dict(lr=0.01, weight_decay=0.1)),
    "adam-betas": (lambda: Adam(0.02, beta1=0.8, beta2=0.99, eps=1e-6), "Adam",
                   dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
    "adamw": (lambda: get_optimizer("adamw", 0.01, weight_decay=0.1), "AdamW",
              dict(lr=0.01, weight_decay=0.1)),
    "adamw-default": (lambda: AdamW(0.01), "AdamW", dict(lr=0.01)),
}


@pytest.fixture(scope="module")
def problem():
    """Fixed initial parameters (non-zero biases) and N_STEPS batches, on the host."""
    gen = np.random.default_rng(2024)
    params = [(gen.standard_normal(s) * 0.7, gen.standard_normal(s[1]) * 0.2) for s in SIZES]
    batches = [(gen.standard_normal((BATCH, 4)), gen.integers(0, 3, BATCH))
               for _ in range(N_STEPS)]
    return params, batches


def _xpnet_net(be, params, lr=0.1):
    (w1, b1), (w2, b2) = params
    d1, d2 = Dense(4, 5, lr, backend=be), Dense(5, 3, lr, backend=be)
    d1.weights, d1.biases = be.asarray(w1), be.asarray(b1)
    d2.weights, d2.biases = be.asarray(w2), be.asarray(b2)
    return [d1, Tanh(backend=be), d2]


def _host_params(be, layers) -> list:
    return [be.to_numpy(p).astype(np.float64)
            for layer in layers for p in layer.params.values()]


def _run_xpnet(be, opt, problem, *, deferred=False, n_steps=N_STEPS):
    """Train with ``xpnet.train`` (one step per batch); params after each step."""
    params, batches = problem
    layers = _xpnet_net(be, params)
    if opt is not None:
        opt.attach(layers, deferred=deferred)
    trace = []
    for X, y in batches[:n_steps]:
        xpnet.train(layers, be.asarray(X), be.asarray(y, dtype=be.index_dtype))
        if deferred:
            opt.step(layers)
        trace.append(_host_params(be, layers))
    return trace


# --------------------------------------------------------------------------
# Against torch.optim (float64, every backend)
# --------------------------------------------------------------------------


def _run_torch(cls_name, kwargs, problem):
    torch = pytest.importorskip("torch")
    params, batches = problem
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True)
               for pair in params for a in pair]
    w1, b1, w2, b2 = tensors
    opt = getattr(torch.optim, cls_name)(tensors, **kwargs)
    trace = []
    for X, y in batches:
        opt.zero_grad()
        logits = torch.tanh(torch.tensor(X) @ w1 + b1) @ w2 + b2
        torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
        opt.step()
        trace.append([t.detach().numpy().copy() for t in tensors])
    return trace


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_first_10_updates_equal_torch_optim(backend64, problem, name):
    make, cls_name, kwargs = CONFIGS[name]
    want = _run_torch(cls_name, kwargs, problem)
    got = _run_xpnet(backend64, make(), problem)
    start = [a for pair in problem[0] for a in pair]
    for step, (g, w) in enumerate(zip(got, want)):
        for k, (a, b) in enumerate(zip(g, w)):
            # compare the accumulated update (param - initial), not just the param,
            # so a difference in the step would not hide behind the large weights
            assert rel_err(a - start[k], b - start[k]) < 1e-13, (step, k)
            assert rel_err(a, b) < 1e-14, (step, k)
    assert rel_err(got[-1][0], start[0]) > 1e-3  # the parameters really moved


# --------------------------------------------------------------------------
# Against a NumPy float64 reference (every backend, float32 and float64)
# --------------------------------------------------------------------------


def _ref_grads(p, X, y):
    w1, b1, w2, b2 = p
    h = np.tanh(X @ w1 + b1)
    z = h @ w2 + b2
    e = np.exp(z - z.max(axis=1, keepdims=True))
    s = e / e.sum(axis=1, keepdims=True)
    s[np.arange(len(y)), y] -= 1.0
    gz = s / len(y)
    gh = gz @ w2.T * (1 - h ** 2)
    return [X.T @ gh, gh.sum(0), h.T @ gz, gz.sum(0)]


def _ref_train(problem, kind, hp, n_steps):
    """Plain NumPy training with the textbook update rules."""
    params, batches = problem
    p = [a.copy() for pair in params for a in pair]
    state = [dict(buf=None, m=np.zeros_like(a), v=np.zeros_like(a)) for a in p]
    trace = []
    for t, (X, y) in enumerate(batches[:n_steps], start=1):
        grads = _ref_grads(p, X, y)
        for i, g in enumerate(grads):
            lr, wd, st = hp["lr"], hp.get("wd", 0.0), state[i]
            if kind == "sgd":
                d = g + wd * p[i]
                mu = hp.get("momentum", 0.0)
                if mu:
                    st["buf"] = d.copy() if st["buf"] is None else mu * st["buf"] + d
                    d = d + mu * st["buf"] if hp.get("nesterov") else st["buf"]
                p[i] = p[i] - lr * d
            else:
                if kind == "adamw":
                    p[i] = p[i] * (1 - lr * wd)
                else:
                    g = g + wd * p[i]
                b1, b2, eps = 0.9, 0.999, 1e-8
                st["m"] = b1 * st["m"] + (1 - b1) * g
                st["v"] = b2 * st["v"] + (1 - b2) * g * g
                mhat = st["m"] / (1 - b1 ** t)
                vhat = st["v"] / (1 - b2 ** t)
                p[i] = p[i] - lr * mhat / (np.sqrt(vhat) + eps)
        trace.append([a.copy() for a in p])
    return trace


PARITY = {
    "sgd": ("sgd", dict(lr=0.1)),
    "momentum": ("sgd", dict(lr=0.1, momentum=0.9, wd=0.01)),
    "nesterov": ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True)),
    "adam": ("adam", dict(lr=0.01, wd=0.01)),
    "adamw": ("adamw", dict(lr=0.01, wd=0.1)),
}


@pytest.mark.parametrize("name", sorted(PARITY))
def test_optimizer_parity_with_numpy_reference(backend, problem, name):
    kind, hp = PARITY[name]
    opt = get_optimizer(name, hp["lr"], weight_decay=hp.get("wd", 0.0),
                        momentum=hp.get("momentum", 0.9))
    want = _ref_train(problem, kind, hp, 4)
    got = _run_xpnet(backend, opt, problem, n_steps=4)
    for step, (g, w) in enumerate(zip(got, want)):
        for k, (a, b) in enumerate(zip(g, w)):
            assert rel_err(a, b) < rtol_for(backend), (step, k)


# --------------------------------------------------------------------------
# The seed's step, and the decoupled flow
# --------------------------------------------------------------------------


@pytest.mark.parametrize("lr", [0.5, 0.1])
def test_sgd_reproduces_the_seed_step(backend, problem, lr):
    """``SGD()`` takes each layer's learning_rate; bit for bit when lr is a power of two.

    The seed scales ``grad_output`` by the rate before ``X^T @ g``; an
    optimizer gets ``X^T @ g`` and scales after, so for other rates the two
    agree to rounding only. (Bit for bit in eager steps on backends whose seed
    step is a plain subtract; ``fit`` may compile the optimizer-less step,
    e.g. ``jax.jit``, and torch fuses the seed update into one ``addmm_``
    that accumulates into the weights inside BLAS: both round differently.)
    """
    be = backend
    params, batches = problem

    def run_steps(opt):
        layers = _xpnet_net(be, params, lr=lr)
        if opt is not None:
            opt.attach(layers)
        for X, y in batches[:5]:
            xpnet.train(layers, be.asarray(X), be.asarray(y, dtype=be.index_dtype))
        return _host_params(be, layers)

    def run_fit(opt):
        layers = _xpnet_net(be, params, lr=lr)
        model = xpnet.Sequential(layers)
        X = be.asarray(np.concatenate([b[0] for b in batches[:4]]))
        y = be.asarray(np.concatenate([b[1] for b in batches[:4]]), dtype=be.index_dtype)
        model.fit(X, y, epochs=2, batch_size=BATCH, optimizer=opt, train_accuracy=False)
        return _host_params(be, layers)

    seed, sgd = run_steps(None), run_steps(SGD())
    fused_update = type(be).sub_matmul_ is not xpnet.backends.Backend.sub_matmul_
    for a, b in zip(sgd, seed):
        if lr == 0.5 and not fused_update:
            np.testing.assert_array_equal(a, b)
        else:
            assert rel_err(a, b) < rtol_for(be)
    for a, b in zip(run_steps(SGD(lr)), sgd):  # an explicit rate == the layers' rate
        np.testing.assert_array_equal(a, b)
    for a, b in zip(run_fit(SGD()), run_fit(None)):
        assert rel_err(a, b) < rtol_for(be)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_decoupled_step_equals_update_in_backward(backend, problem, name):
    immediate = _run_xpnet(backend, get_optimizer(name, 0.05), problem, n_steps=3)
    deferred = _run_xpnet(backend, get_optimizer(name, 0.05), problem, n_steps=3, deferred=True)
    for a, b in zip(immediate[-1], deferred[-1]):
        np.testing.assert_array_equal(a, b)


def test_keep_grads_records_without_updating(backend, problem):
    be = backend
    params, batches = problem
    layers = _xpnet_net(be, params)
    before = _host_params(be, layers)
    KeepGrads().step(layers)  # a no-op
    for layer in layers:
        layer.optimizer = KeepGrads()
    X, y = batches[0]
    xpnet.train(layers, be.asarray(X), be.asarray(y, dtype=be.index_dtype))
    for a, b in zip(_host_params(be, layers), before):
        np.testing.assert_array_equal(a, b)
    want = _ref_grads([a for pair in params for a in pair], X, y)
    got = [be.to_numpy(g) for layer in (layers[0], layers[2]) for g in layer.grads.values()]
    for a, b in zip(got, want):
        assert rel_err(a, b) < rtol_for(be)
    SGD.zero_grad(layers)
    assert all(layer.grads == {} for layer in layers)


def test_state_is_per_parameter_and_follows_the_layer(problem):
    """Two layers never share state; moving a layer moves its state."""
    be = xpnet.get_backend("numpy", dtype="float64")
    params, batches = problem
    opt = Adam(0.01)
    layers = _xpnet_net(be, params)
    opt.attach(layers)
    X, y = batches[0]
    xpnet.train(layers, be.asarray(X), be.asarray(y, dtype=be.index_dtype))
    assert len(opt.state) == 4 and all(st["step"] == 1 for st in opt.state.values())
    other = xpnet.get_backend("array_api_strict", device="device1", dtype="float64")
    for layer in layers:
        layer.to(other)
    xpnet.train(layers, other.asarray(X), other.asarray(y, dtype=other.index_dtype))
    st = opt.state[(id(layers[0]), "weights")]
    assert st["step"] == 2 and st["backend"] == other and other.owns(st["exp_avg"])
    opt.reset()
    assert opt.state == {}


def test_fit_restores_previous_optimizers(backend32):
    be = backend32
    model = xpnet.Sequential.mlp([3, 4, 2], backend=be, seed=0)
    X = be.asarray(np.ones((4, 3)))
    y = be.asarray([0, 1, 0, 1], dtype=be.index_dtype)
    model.fit(X, y, epochs=1, batch_size=2, optimizer=Adam())
    assert all(layer.optimizer is None for layer in model.layers)


# --------------------------------------------------------------------------
# Names, validation, schedules
# --------------------------------------------------------------------------


def test_get_optimizer_names():
    assert type(get_optimizer("SGD", 0.1)) is SGD and get_optimizer("sgd", 0.1).momentum == 0
    m = get_optimizer("momentum", 0.1, momentum=0.5)
    assert (m.momentum, m.nesterov) == (0.5, False)
    n = get_optimizer("nesterov", 0.1)
    assert (n.momentum, n.nesterov) == (0.9, True)
    a = get_optimizer("adam", 1e-3, weight_decay=0.1)
    assert type(a) is Adam and a.weight_decay == 0.1
    w = get_optimizer("adamw", 1e-3)
    assert type(w) is AdamW and w.weight_decay == 0.0
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; choose one of sgd"):
        get_optimizer("rmsprop", 0.1)


@pytest.mark.parametrize("call, match", [
    (lambda: SGD(-0.1), r"learning_rate must be in \[0.0"),
    (lambda: SGD(float("nan")), "learning_rate must be a finite number"),
    (lambda: SGD(0.1, momentum=1.0), r"momentum must be in \[0.0, 1.0\)"),
    (lambda: SGD(0.1, nesterov=True), "Nesterov momentum needs momentum > 0"),
    (lambda: Adam(0.1, beta2=1.0), r"beta2 must be in \[0.0, 1.0\)"),
    (lambda: Adam(0.1, eps=0.0), r"eps must be in \(0.0"),
    (lambda: AdamW(0.1, weight_decay=-1), "weight_decay must be in"),
    (lambda: StepSchedule(0), "step_size must be a positive int"),
    (lambda: CosineSchedule(0), "epochs must be a positive int"),
    (lambda: get_schedule("linear", epochs=3), "unknown schedule 'linear'"),
])
def test_validation_messages(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_sgd_without_rate_needs_layer_rates(backend32):
    layer = Tanh(backend=backend32)
    layer.param_names = ("w",)
    layer.w = backend32.zeros((2,))
    with pytest.raises(ValueError, match="pass SGD\\(learning_rate=...\\)"):
        SGD().update(layer, {"w": backend32.zeros((2,))})


def test_schedules():
    assert get_schedule("none", epochs=5) is None and get_schedule(None, epochs=5) is None
    step = get_schedule("step", epochs=10, step_size=3, gamma=0.5)
    assert [step(e) for e in range(7)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25]
    assert get_schedule("step", epochs=10).step_size == 3
    assert get_schedule("step", epochs=2).step_size == 1
    cos = get_schedule("cosine", epochs=10)
    vals = [cos(e) for e in range(11)]
    assert vals[0] == 1.0 and vals[5] == pytest.approx(0.5) and vals[10] == pytest.approx(0.0)
    assert all(a > b for a, b in zip(vals, vals[1:]))
    assert cos(20) == cos(10)
    floor = CosineSchedule(4, min_multiplier=0.1)
    assert floor(0) == 1.0 and floor(4) == pytest.approx(0.1)


def test_schedules_match_torch_lr_schedulers():
    torch = pytest.importorskip("torch")

    def torch_lrs(make_sched, epochs):
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.3)
        sched = make_sched(opt)
        lrs = []
        for _ in range(epochs):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return lrs

    ours = get_schedule("step", epochs=12, step_size=4, gamma=0.3)
    want = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, 4, gamma=0.3), 12)
    np.testing.assert_allclose([0.3 * ours(e) for e in range(12)], want, rtol=1e-13)
    ours = get_schedule("cosine", epochs=12)
    want = torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=12), 12)
    np.testing.assert_allclose([0.3 * ours(e) for e in range(12)], want, rtol=1e-12)


def test_optimizer_repr_and_config():
    assert repr(Adam(0.01)) == (
        "Adam(learning_rate=0.01, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-08)")
    assert AdamW().get_config()["weight_decay"] == 0.01
    assert math.isclose(get_optimizer("momentum", 0.2).get_config()["momentum"], 0.9)


def test_state_is_not_inherited_by_a_new_layer_with_a_reused_id():
    """id() values are recycled: a fresh model must start with fresh moments."""
    import gc

    be = xpnet.get_backend("numpy", dtype="float64")
    X = be.asarray(np.ones((4, 4)))
    y = be.asarray([0, 1, 2, 3], dtype=be.index_dtype)
    opt = Adam(0.01)
    finals = []
    for _ in range(4):
        model = xpnet.Sequential.mlp([4, 4, 4], backend=be, seed=0)
        model.fit(X, y, epochs=1, batch_size=2, optimizer=opt, train_accuracy=False)
        finals.append(be.to_numpy(model[0].weights))
        del model
        gc.collect()
    for w in finals[1:]:
        np.testing.assert_array_equal(w, finals[0])
