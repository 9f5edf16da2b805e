"""Compiled epochs (issue 15): every compiled path against its portable twin.

* ``Backend.compile_loop`` (JAX: ``lax.scan`` in ``jit``) against the portable Python loop;
* :class:`xpnet._compiled.CompiledEpoch` on every backend against the plain
  step-by-step epoch (on backends that do not compile loops it runs the
  portable loop, so the state-swapping machinery is checked everywhere);
* ``fit`` on JAX (which takes the compiled epoch) against ``fit`` with the
  step-by-step loop, with every optimizer and with learning-rate schedules;
* the compiled path is really taken: the layers' Python runs once per trace.
"""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import make_backend, rel_err, rtol_for

import xpnet
import xpnet.training as training
from xpnet._compiled import CompiledEpoch, compiles_epochs
from xpnet.backends import Backend
from xpnet.callbacks import Callback, LearningRateScheduler
from xpnet.losses import one_hot
from xpnet.optimizers import SGD, Adam, AdamW, CosineSchedule, KeepGrads, StepSchedule
from xpnet.training import first_trainable_index, loss_layers, portable_train_step

OPTIMIZERS = {
    "seed-sgd": lambda: None,
    "sgd": lambda: SGD(0.05),
    "momentum": lambda: SGD(0.05, momentum=0.9, dampening=0.1),
    "nesterov-wd": lambda: SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: Adam(1e-2, weight_decay=1e-3),
    "adamw": lambda: AdamW(1e-2),
}


def _tol(be) -> float:
    return 1e-12 if be.dtype_name == "float64" else rtol_for(be)


def _data(be, n=96, d=6, c=3):
    rng = np.random.default_rng(0)
    y = rng.integers(0, c, n)
    X = rng.standard_normal((c, d))[y] + rng.standard_normal((n, d))
    return be.asarray(X), be.asarray(y, dtype=be.index_dtype)


def _model(be, optimizer=None):
    model = xpnet.Sequential.mlp([6, 10, 8, 3], seed=0, backend=be)
    if optimizer is not None:
        optimizer.attach(model.layers)
    return model


def _host_state(be, model) -> list:
    return [be.to_numpy(p) for layer in model for p in layer.params.values()]


def _assert_close(got: list, want: list, tol: float):
    for a, b in zip(got, want, strict=True):
        assert rel_err(a, b) < tol, rel_err(a, b)


# -- the hook --------------------------------------------------------------------

def test_compile_loop_matches_the_portable_loop(backend):
    def body(carry, x, scale):
        w, total = carry
        w = w - x * scale
        total = total + backend.xp.sum(w)
        return (w, total), total

    xs = backend.asarray(np.arange(12.0).reshape(4, 3) / 7)
    results = []
    for run in (backend.compile_loop(body, donate_carry=True), Backend.compile_loop(backend, body)):
        carry = (backend.asarray(np.ones(3)), backend.zeros(()))
        (w, total), ys = run(carry, xs, backend.asarray(0.5))
        results.append((backend.to_numpy(w), float(total), backend.to_numpy(ys)))
    (w1, t1, ys1), (w2, t2, ys2) = results
    assert ys1.shape == (4,)
    assert rel_err(w1, w2) < rtol_for(backend)
    assert rel_err(ys1, ys2) < rtol_for(backend)
    assert t1 == pytest.approx(t2, rel=rtol_for(backend)) and t1 == ys1[-1]


def test_the_jax_loop_donates_its_carry():
    be = make_backend("jax", None, "float64")
    assert be.compiles_loops
    run = be.compile_loop(lambda c, x: (c + x, c), donate_carry=True)
    carry = be.asarray(np.zeros(3))
    new, _ = run(carry, be.asarray(np.ones((2, 3))))
    assert carry.is_deleted() and not new.is_deleted()
    assert be.to_numpy(new).tolist() == [2.0, 2.0, 2.0]


# -- CompiledEpoch (the machinery) on every backend ------------------------------

def _epochs_two_ways(be, make_opt, epochs=2, batch=16):
    """(running loss sums, parameters) from CompiledEpoch and from the plain loop."""
    X, y = _data(be)
    onehot = one_hot(y, 3, dtype=be.dtype)
    out = []
    for compiled in (True, False):
        model = _model(be, make_opt())
        layers = loss_layers(model.layers)
        step = portable_train_step(be, layers, first_trainable_index(layers))
        epoch_fn = CompiledEpoch(be, layers, step)
        orders = np.random.default_rng(3)
        sums = []
        for _ in range(epochs):
            order = be.asarray(orders.permutation(96), dtype=be.index_dtype)
            if compiled:
                sums += epoch_fn(X, onehot, order, 96 // batch, batch)
            else:
                total = be.zeros(())
                for i in range(96 // batch):
                    total = total + step(X, onehot, order[i * batch:(i + 1) * batch])
                    sums.append(float(total))
        out.append((np.asarray(sums), _host_state(be, model)))
    return out


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_compiled_epoch_matches_the_step_loop(backend, opt):
    (sums, params), (want_sums, want_params) = _epochs_two_ways(backend, OPTIMIZERS[opt])
    tol = _tol(backend)
    assert rel_err(sums, want_sums) < tol
    _assert_close(params, want_params, tol)


def test_compiled_epoch_keeps_the_optimizer_state_and_gradients(backend):
    """After an epoch the state is concrete, on the layers, and as the loop leaves it."""
    be = backend
    X, y = _data(be)
    onehot = one_hot(y, 3, dtype=be.dtype)
    states = []
    for compiled in (True, False):
        opt = Adam(1e-2)
        model = _model(be, opt)
        layers = loss_layers(model.layers)
        step = portable_train_step(be, layers, 0)
        order = be.asarray(np.random.default_rng(1).permutation(96), dtype=be.index_dtype)
        if compiled:
            CompiledEpoch(be, layers, step)(X, onehot, order, 6, 16)
        else:
            for i in range(6):
                step(X, onehot, order[i * 16:(i + 1) * 16])
        st = opt.state[(id(model[0]), "weights")]
        assert st["step"] == 6 and isinstance(st["step"], int)
        assert be.owns(st["exp_avg"]) and be.owns(model[0].grads["weights"])
        states.append([be.to_numpy(st["exp_avg"]), be.to_numpy(st["exp_avg_sq"]),
                       be.to_numpy(model[0].grads["weights"])])
    _assert_close(states[0], states[1], _tol(be))


def test_only_loop_compiling_backends_and_pure_layers_compile_epochs(backend):
    model = _model(backend)
    assert compiles_epochs(backend, model.layers) == backend.compiles_loops
    with_dropout = xpnet.Sequential([xpnet.Dense(6, 4, backend=backend),
                                     xpnet.layers.Dropout(0.5, rng=0, backend=backend),
                                     xpnet.Dense(4, 3, backend=backend)])
    assert not compiles_epochs(backend, with_dropout.layers)

    class HostReading(SGD):
        compilable = False

    HostReading(0.1).attach(model.layers)
    assert not compiles_epochs(backend, model.layers)


# -- fit on JAX: the compiled epoch against the step-by-step loop ------------------

@pytest.fixture(params=["float32", "float64"])
def jax_backend(request):
    pytest.importorskip("jax")
    return make_backend("jax", None, request.param)


def _fit_two_ways(monkeypatch, be, make_opt, callbacks=lambda: [], epochs=3, **kw):
    X, y = _data(be)
    out = []
    for compiled in (True, False):
        with monkeypatch.context() as m:
            if not compiled:
                m.setattr(training, "_cached_epoch", lambda *a: None)
            model = _model(be)
            h = model.fit(X, y, epochs=epochs, batch_size=16, optimizer=make_opt(),
                          callbacks=callbacks(), train_accuracy=False, **kw)
            kinds = {key[0] for key in model.train_steps}
            out.append((np.asarray(h["loss"]), _host_state(be, model), kinds))
    (loss, params, kinds), (want_loss, want_params, want_kinds) = out
    assert kinds == {"epoch"} and "epoch" not in want_kinds  # each path was taken
    tol = _tol(be)
    assert rel_err(loss, want_loss) < tol
    _assert_close(params, want_params, tol)


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_jax_fit_compiled_matches_step_by_step(monkeypatch, jax_backend, opt):
    _fit_two_ways(monkeypatch, jax_backend, OPTIMIZERS[opt])


@pytest.mark.parametrize("schedule", [StepSchedule(1, gamma=0.5), CosineSchedule(3)])
@pytest.mark.parametrize("opt", ["seed-sgd", "momentum", "adam"])
def test_jax_fit_with_a_schedule_matches_step_by_step(monkeypatch, jax_backend, opt, schedule):
    make = OPTIMIZERS[opt]
    holder = {}

    def make_opt():
        holder["opt"] = make()
        return holder["opt"]

    def callbacks():  # the scheduler must see the optimizer fit() is about to attach
        return [LearningRateScheduler(schedule, optimizer=holder["opt"])]

    _fit_two_ways(monkeypatch, jax_backend, make_opt, callbacks)


def test_jax_fit_without_shuffle_and_with_a_remainder_matches(monkeypatch, jax_backend):
    """100 rows at batch 16: 6 steps, 4 rows dropped, as in the loop."""
    X, y = _data(jax_backend, n=100)
    out = []
    for compiled in (True, False):
        with monkeypatch.context() as m:
            if not compiled:
                m.setattr(training, "_cached_epoch", lambda *a: None)
            model = _model(jax_backend)
            h = model.fit(X, y, epochs=2, batch_size=16, shuffle=False, train_accuracy=False)
            out.append((np.asarray(h["loss"]), _host_state(jax_backend, model)))
    assert rel_err(out[0][0], out[1][0]) < _tol(jax_backend)
    _assert_close(out[0][1], out[1][1], _tol(jax_backend))


def test_jax_divergence_is_reported_at_the_same_steps(monkeypatch):
    be = make_backend("jax", None, "float64")
    X, y = _data(be)
    messages = []
    for compiled in (True, False):
        with monkeypatch.context() as m:
            if not compiled:
                m.setattr(training, "_cached_epoch", lambda *a: None)
            model = xpnet.Sequential.mlp([6, 8, 3], seed=0, backend=be, learning_rate=1e30)
            with pytest.raises(xpnet.DivergenceError) as err:
                model.fit(X, y, epochs=2, batch_size=8, check_every=5, train_accuracy=False)
            messages.append(str(err.value))
    assert "in epoch 1, between steps" in messages[0] and "(checked every 5 steps)" in messages[0]
    assert messages[0] == messages[1]


def test_a_state_that_never_settles_is_refused_with_a_clear_error():
    be = make_backend("jax", None, "float64")

    class Hoarding(SGD):  # keeps one more array every step: no loop can carry that
        def _update_param(self, be, param, grad, st, lr):
            st[f"grad_{len(st)}"] = grad
            return super()._update_param(be, param, grad, st, lr)

    X, y = _data(be)
    with pytest.raises(xpnet.errors.StateError, match="keeps changing its structure"):
        _model(be).fit(X, y, epochs=1, batch_size=16, optimizer=Hoarding(0.1))


# -- the compiled path is really taken -------------------------------------------

def _count_forward_calls(monkeypatch, be, **fit_kwargs) -> int:
    X, y = _data(be)
    model = _model(be)
    calls = []
    dense = type(model[0])
    real = dense._forward
    monkeypatch.setattr(dense, "_forward", lambda self, x: calls.append(1) or real(self, x))
    model.fit(X, y, batch_size=16, train_accuracy=False, **fit_kwargs)
    monkeypatch.setattr(dense, "_forward", real)
    return len(calls)


def test_jax_epochs_trace_the_layers_once(monkeypatch, jax_backend):
    n_dense = 3
    # 3 epochs of 6 steps: the loop would call Dense._forward 3 * 6 * 3 times.
    assert _count_forward_calls(monkeypatch, jax_backend, epochs=3) == n_dense
    # A schedule changes the rate every epoch: arguments, not a new program.
    scheduler = LearningRateScheduler(StepSchedule(1, gamma=0.5))
    assert _count_forward_calls(monkeypatch, jax_backend, epochs=3, callbacks=[scheduler]) \
        == n_dense
    # An optimizer's first steps (which create its state) run one by one, in
    # every epoch alike so that the loop keeps one length: 2 eager steps per epoch.
    assert _count_forward_calls(monkeypatch, jax_backend, epochs=3, optimizer=Adam()) \
        == n_dense + 3 * 2 * n_dense


def test_a_fresh_optimizer_of_the_same_settings_reuses_the_program(monkeypatch, jax_backend):
    be = jax_backend
    X, y = _data(be)
    model = _model(be)
    calls = []
    dense = type(model[0])
    real = dense._forward
    monkeypatch.setattr(dense, "_forward", lambda self, x: calls.append(1) or real(self, x))
    counts = []
    for _ in range(2):
        model.fit(X, y, epochs=1, batch_size=16, optimizer=Adam(1e-2), train_accuracy=False)
        counts.append(len(calls) - sum(counts))
    assert counts == [3 + 2 * 3, 2 * 3]  # a trace, then only the 2 eager steps of each fit
    assert len(model.train_steps) == 1
    model.fit(X, y, epochs=1, batch_size=16, optimizer=Adam(1e-2, beta1=0.5), train_accuracy=False)
    assert len(model.train_steps) == 2  # other settings: another program


def test_jax_fit_leaves_concrete_state_and_the_step_count(jax_backend):
    import jax

    be = jax_backend
    X, y = _data(be)
    model = _model(be)
    opt = Adam(1e-2)
    model.fit(X, y, epochs=2, batch_size=16, optimizer=opt, train_accuracy=False)
    arrays = [p for layer in model for p in layer.params.values()]
    arrays += [g for layer in model for g in layer.grads.values()]
    arrays += [v for st in opt.state.values() for k, v in st.items()
               if k in ("exp_avg", "exp_avg_sq")]
    assert arrays and all(isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer)
                          and not a.is_deleted() for a in arrays)
    assert {st["step"] for st in opt.state.values()} == {12}


def test_keep_grads_in_a_compiled_epoch_leaves_parameters_alone(jax_backend):
    be = jax_backend
    X, y = _data(be)
    model = _model(be)
    before = _host_state(be, model)
    model.fit(X, y, epochs=1, batch_size=16, optimizer=KeepGrads(), train_accuracy=False)
    for a, b in zip(_host_state(be, model), before):
        np.testing.assert_array_equal(a, b)
    assert set(model[0].grads) == {"weights", "biases"}


def test_a_callback_changing_a_layer_setting_gets_a_new_program(monkeypatch, jax_backend):
    """Python numbers other than learning rates are baked in: a change must recompile."""
    be = jax_backend
    X, y = _data(be)
    results = []
    for compiled in (True, False):
        with monkeypatch.context() as m:
            if not compiled:
                m.setattr(training, "_cached_epoch", lambda *a: None)
            model = xpnet.Sequential([xpnet.Dense(6, 5, rng=0, backend=be),
                                      xpnet.LeakyReLU(0.1, backend=be),
                                      xpnet.Dense(5, 3, rng=1, backend=be)])

            class Steeper(Callback):
                def on_epoch_begin(self, epoch, logs=None):
                    self.model[1].negative_slope = 0.1 * (epoch + 1)

            model.fit(X, y, epochs=3, batch_size=16, callbacks=[Steeper()], train_accuracy=False)
            results.append(_host_state(be, model))
    _assert_close(results[0], results[1], _tol(be))


# -- CUDA graphs (CuPy): recorded once, replayed per batch -------------------------

def test_make_train_step_hands_pure_steps_to_the_capture_hook(monkeypatch):
    be = xpnet.get_backend("numpy", dtype="float64")
    seen = []

    def capture(self, step, params):
        seen.append(params())
        return step

    monkeypatch.setattr(type(be), "captures_graphs", True)
    monkeypatch.setattr(type(be), "capture_step", capture)
    model = _model(be)
    training.make_train_step(be, model.layers, 0)
    assert len(seen) == 1 and [id(a) for a in seen[0]] == [
        id(p) for layer in model for p in layer.params.values()]
    SGD(0.1).attach(model.layers)  # an optimizer rebinds its state: no capture
    training.make_train_step(be, model.layers, 0)
    assert len(seen) == 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cupy_graph_step_matches_the_portable_step(dtype):
    be = make_backend("cupy", None, dtype)  # skips, with the reason, without CuPy or a GPU
    X, y = _data(be)
    onehot = one_hot(y, 3, dtype=be.dtype)
    out = []
    for recorded in (True, False):
        model = _model(be)
        step = portable_train_step(be, model.layers, 0)
        if recorded:
            step = be.capture_step(step, lambda m=model: [p for layer in m for p in layer.params.values()])
        orders = np.random.default_rng(5)
        losses = []
        for i in range(8):
            if i == 5:  # a parameter replaced by another array: recorded again
                model[0].set_param("weights", be.xp.asarray(model[0].weights, copy=True))
            idx = be.asarray(orders.permutation(96)[:16], dtype=be.index_dtype)
            losses.append(float(step(X, onehot, idx)))
        if recorded:
            assert step.reason == ""  # the graph was recorded and replayed
        out.append((np.asarray(losses), _host_state(be, model)))
    assert rel_err(out[0][0], out[1][0]) < _tol(be)
    _assert_close(out[0][1], out[1][1], _tol(be))
