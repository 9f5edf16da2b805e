"""Sequential.fit/evaluate with the regression and multilabel losses, sample and class
weights, validation_split and scikit-learn's L2 penalty, on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import rtol_for

import xpnet


def _data(rng, n=64, d=5):
    return rng.standard_normal((n, d))


def _model(be, sizes, loss=None, seed=0, lr=0.05):
    return xpnet.Sequential.mlp(sizes, backend=be, loss=loss, seed=seed, learning_rate=lr,
                                init="he_normal")


def _weights(model):
    return [model.backend.to_numpy(layer.weights) for layer in model.layers
            if layer.param_names]


@pytest.mark.parametrize("loss,targets", [("mse", "float"), ("binary_crossentropy", "01")])
def test_regression_and_multilabel_losses_train_and_evaluate(backend, rng, loss, targets):
    Xh = _data(rng)
    Yh = rng.standard_normal((64, 2)) if targets == "float" else \
        (rng.random((64, 2)) < 0.5).astype(np.float64)
    X, Y = backend.asarray(Xh), backend.asarray(Yh)
    model = _model(backend, [5, 16, 2], loss=loss)
    hist = model.fit(X, Y, epochs=8, batch_size=16, seed=1)
    assert hist["loss"][-1] < hist["loss"][0]
    assert ("train_acc" in hist) == (loss != "mse")
    got = model.evaluate(X, Y)
    # Reference: the float64 NumPy loss of the model's own outputs.
    z = backend.to_numpy(model.predict_logits(X)).astype(np.float64)
    if loss == "mse":
        ref = ((z - Yh) ** 2).mean(axis=1).mean()
        assert set(got) == {"loss"}
        np.testing.assert_allclose(backend.to_numpy(model.predict(X)), z, rtol=1e-5, atol=1e-6)
    else:
        p = 1 / (1 + np.exp(-z))
        ref = -(Yh * np.log(p) + (1 - Yh) * np.log(1 - p)).sum(axis=1).mean()
        assert got["accuracy"] == pytest.approx(((z > 0) == (Yh > 0.5)).mean(), abs=1e-6)
        np.testing.assert_allclose(backend.to_numpy(model.predict_proba(X)), p, rtol=1e-4)
    assert got["loss"] == pytest.approx(ref, rel=max(rtol_for(backend), 1e-9))


def test_integer_weights_equal_repeated_rows(backend64, rng):
    """Full-batch steps: weight k is the same as the row repeated k times."""
    be = backend64
    Xh = _data(rng, n=24)
    y = rng.integers(0, 3, 24)
    w = rng.integers(0, 4, 24).astype(np.float64)
    w[0] = 1.0
    a = _model(be, [5, 8, 3])
    b = _model(be, [5, 8, 3])
    ha = a.fit(be.asarray(Xh), be.asarray(y, dtype=be.index_dtype), epochs=3,
               batch_size=24, shuffle=False, sample_weight=be.asarray(w))
    rep = np.repeat(np.arange(24), w.astype(int))
    hb = b.fit(be.asarray(Xh[rep]), be.asarray(y[rep], dtype=be.index_dtype), epochs=3,
               batch_size=len(rep), shuffle=False)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-10)
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_allclose(wa, wb, rtol=1e-9, atol=1e-12)
    w_eval = a.evaluate(be.asarray(Xh), be.asarray(y, dtype=be.index_dtype),
                        sample_weight=be.asarray(w))
    r_eval = a.evaluate(be.asarray(Xh[rep]), be.asarray(y[rep], dtype=be.index_dtype))
    assert w_eval["loss"] == pytest.approx(r_eval["loss"], rel=1e-10)
    assert w_eval["accuracy"] == pytest.approx(r_eval["accuracy"], rel=1e-10)


def test_unit_weights_follow_the_unweighted_path(backend, rng):
    Xh, y = _data(rng), rng.integers(0, 3, 64)
    X, yd = backend.asarray(Xh), backend.asarray(y, dtype=backend.index_dtype)
    a, b = _model(backend, [5, 8, 3]), _model(backend, [5, 8, 3])
    ha = a.fit(X, yd, epochs=2, batch_size=16)
    hb = b.fit(X, yd, epochs=2, batch_size=16, sample_weight=backend.zeros((64,)) + 1.0)
    np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=rtol_for(backend) * 10)
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_allclose(wa, wb, rtol=1e-3 if backend.dtype_name == "float32"
                                   else 1e-9, atol=1e-6)


def test_balanced_class_weight_is_the_matching_sample_weight(backend64, rng):
    be = backend64
    Xh, y = _data(rng), (rng.random(64) < 0.2).astype(np.int64) * 2  # classes 0 and 2
    X, yd = be.asarray(Xh), be.asarray(y, dtype=be.index_dtype)
    a, b = _model(be, [5, 8, 3]), _model(be, [5, 8, 3])
    a.fit(X, yd, epochs=2, batch_size=16, class_weight="balanced")
    counts = {c: (y == c).sum() for c in (0, 2)}
    sw = np.asarray([64 / (2 * counts[c]) for c in y])
    b.fit(X, yd, epochs=2, batch_size=16, sample_weight=be.asarray(sw))
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_allclose(wa, wb, rtol=1e-10)


def test_validation_split_holds_out_the_last_rows_and_drives_early_stopping(backend, rng):
    Xh, y = _data(rng, n=80), rng.integers(0, 3, 80)
    X, yd = backend.asarray(Xh), backend.asarray(y, dtype=backend.index_dtype)
    model = _model(backend, [5, 8, 3], lr=0.5)
    stop = xpnet.EarlyStopping(monitor="val_loss", patience=1)
    hist = model.fit(X, yd, epochs=40, batch_size=16, validation_split=0.25, callbacks=[stop])
    assert len(hist) < 40  # random labels: the validation loss soon stops improving
    # The same as training on the first 60 rows and validating on the last 20.
    twin = _model(backend, [5, 8, 3], lr=0.5)
    ref = twin.fit(X[:60, ...], yd[:60], epochs=2, batch_size=16,
                   validation_data=(X[60:, ...], yd[60:]))
    np.testing.assert_allclose(hist["val_loss"][:2], ref["val_loss"], rtol=1e-6)
    np.testing.assert_allclose(hist["loss"][:2], ref["loss"], rtol=1e-6)


def test_alpha_is_scikit_learns_l2_penalty(backend64, rng):
    """One full-batch SGD step of a linear model: W -= lr * (X^T g + alpha W) / n."""
    be = backend64
    Xh, Yh = _data(rng, n=10, d=3), rng.standard_normal((10, 2))
    model = _model(be, [3, 2], loss="mse", lr=0.1)
    W0 = be.to_numpy(model.layers[0].weights)
    b0 = be.to_numpy(model.layers[0].biases)
    model.fit(be.asarray(Xh), be.asarray(Yh), epochs=1, batch_size=10, shuffle=False,
              alpha=0.3)
    g = 2 * (Xh @ W0 + b0 - Yh) / 2  # d mean_j (z - t)^2 / dz for 2 outputs
    W1 = W0 - 0.1 * (Xh.T @ g + 0.3 * W0) / 10
    b1 = b0 - 0.1 * g.sum(axis=0) / 10  # biases are not penalised
    np.testing.assert_allclose(be.to_numpy(model.layers[0].weights), W1, rtol=1e-10)
    np.testing.assert_allclose(be.to_numpy(model.layers[0].biases), b1, rtol=1e-10)
    assert model.layers[0].optimizer is None  # the penalty is detached after fit


def test_alpha_with_an_optimizer_of_its_own_update(rng):
    """An Optimizer subclass overriding update(layer, grads) (the old two-argument form)
    still gets the penalised gradient: the penalty passes decay= only to Optimizer.update."""
    from xpnet.optimizers import SGD

    class Logged(SGD):
        def update(self, layer, grads):
            self.seen = np.array(grads["weights"])
            super().update(layer, grads)

    be = xpnet.get_backend("numpy", dtype="float64")
    Xh, Yh = _data(rng, n=10, d=3), rng.standard_normal((10, 2))
    logged = Logged(0.1)
    results = []
    for opt in (logged, SGD(0.1)):
        model = _model(be, [3, 2], loss="mse", lr=0.1)
        W0, b0 = (be.to_numpy(p) for p in (model.layers[0].weights, model.layers[0].biases))
        model.fit(be.asarray(Xh), be.asarray(Yh), epochs=1, batch_size=10, shuffle=False,
                  alpha=0.3, optimizer=opt)
        results.append(be.to_numpy(model.layers[0].weights))
    g = Xh @ W0 + b0 - Yh  # d mean_j (z - t)^2 / dz for 2 outputs
    np.testing.assert_allclose(logged.seen, (Xh.T @ g + 0.3 * W0) / 10, rtol=1e-12)
    np.testing.assert_array_equal(results[0], results[1])  # the same penalised step


@pytest.mark.parametrize("bad,error,pattern", [
    (dict(sample_weight=np.full(16, -1.0)), ValueError, r"sample_weight must be >= 0.*16 neg"),
    (dict(sample_weight=np.where(np.arange(16) == 2, np.nan, 1.0)), ValueError,
     r"sample_weight contains NaN or infinite values \(1 of 16\)"),
    (dict(sample_weight=np.ones(15)), ValueError, r"sample_weight must have shape \(16,\)"),
    (dict(sample_weight=np.zeros(16)), ValueError, r"sample_weight is zero everywhere"),
    (dict(class_weight="heavy"), ValueError, r"class_weight must be 'balanced', a dict"),
    (dict(class_weight={7: 1.0}), ValueError, r"class_weight keys must be classes in \[0, 2\]"),
    (dict(validation_split=1.0), ValueError, r"validation_split must be"),
    (dict(validation_split=0.99), ValueError, r"leaves 0 for training and 16 for validation"),
    (dict(alpha=-1.0), ValueError, r"alpha must be"),
])
def test_bad_weights_and_splits(bad, error, pattern):
    be = xpnet.get_backend("numpy", dtype="float64")
    X = be.asarray(np.random.default_rng(0).random((16, 5)))
    y = be.asarray(np.arange(16) % 3, dtype=be.index_dtype)
    model = _model(be, [5, 4, 3])
    kwargs = {k: be.asarray(v) if isinstance(v, np.ndarray) else v for k, v in bad.items()}
    with pytest.raises(error, match=pattern):
        model.fit(X, y, batch_size=4, **kwargs)


def test_loss_specific_target_errors():
    be = xpnet.get_backend("numpy", dtype="float64")
    X = be.asarray(np.zeros((4, 3)))
    with pytest.raises(xpnet.DTypeError, match="floating-point targets for the mean squared"):
        _model(be, [3, 1], loss="mse").fit(X, be.asarray(np.arange(4), dtype=be.index_dtype),
                                            batch_size=2)
    with pytest.raises(ValueError, match="only 0 and 1 for the binary cross-entropy"):
        _model(be, [3, 1], loss="bce").fit(X, be.asarray(np.arange(4.0)), batch_size=2)
    with pytest.raises(ValueError, match="class_weight needs a classification loss"):
        _model(be, [3, 1], loss="mse").fit(X, be.asarray(np.zeros(4)), batch_size=2,
                                            class_weight="balanced")
    with pytest.raises(ValueError, match="either validation_data or validation_split"):
        _model(be, [3, 2]).fit(X, be.asarray(np.zeros(4), dtype=be.index_dtype), batch_size=2,
                               validation_split=0.5,
                               validation_data=(X, be.asarray(np.zeros(4), dtype=be.index_dtype)))
    with pytest.raises(TypeError, match="predict_proba needs a classification loss"):
        _model(be, [3, 1], loss="mse").predict_proba(X)


@pytest.mark.parametrize("loss", ["mse", "binary_crossentropy"])
def test_cli_trains_with_another_loss(loss, capsys, tmp_path):
    from xpnet import cli
    from xpnet import datasets as ds

    if ds._files_in(ds._checkout_dir())[0] is None:
        pytest.skip("no MNIST copy in data/mnist")
    save = tmp_path / "m.npz"
    code = cli.main(["train", "--epochs", "1", "--hidden", "16", "--loss", loss, "--quiet",
                     "--save", str(save)])
    out = capsys.readouterr().out
    assert code == 0
    test_acc = float(out.split("test_acc=")[1].split()[0])
    assert test_acc > 0.8  # argmax of the outputs against the labels
    from xpnet import checkpoint as ckpt

    assert ckpt.read_metadata(save)["metadata"]["training"]["loss"] == loss


def test_the_loss_survives_a_checkpoint(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float64")
    model = _model(be, [3, 4, 2], loss="binary_crossentropy")
    model.save(tmp_path / "m.npz")
    loaded = xpnet.Sequential.load(tmp_path / "m.npz", backend="array_api_strict")
    assert isinstance(loaded.loss, xpnet.losses.BinaryCrossEntropy)
    X = np.random.default_rng(0).random((5, 3))
    np.testing.assert_allclose(be.to_numpy(model.predict_proba(be.asarray(X))),
                               loaded.backend.to_numpy(loaded.predict_proba(
                                   loaded.backend.asarray(X))), rtol=1e-6)
    default = _model(be, [3, 2])
    default.save(tmp_path / "d.npz")
    assert "loss" not in xpnet.Sequential.load(tmp_path / "d.npz").config
