"""Host data and batch iterables with another loss, sample and class weights, alpha and
validation_split: the same weights, losses and scores as the same data in memory, and the
same errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest
from test_streaming import _logs, _memmap, _params, _small_chunks, _step_by_step

import xpnet
from xpnet import distributed

N, D = 300, 12

# (loss, n_outputs, fit options); weights are float32 numbers, so that a float32 model's
# device copy holds exactly the host values (the logged loss divides by their float64 sum).
CASES = {
    "xent-weights": ("softmax_crossentropy", 4, {"sample_weight": True}),
    "xent-balanced": ("softmax_crossentropy", 4, {"class_weight": "balanced"}),
    "xent-alpha-split": ("softmax_crossentropy", 4, {"alpha": 0.05, "validation_split": 0.2}),
    "xent-all": ("softmax_crossentropy", 4, {"sample_weight": True, "class_weight": {1: 3.0},
                                             "alpha": 0.01, "validation_split": 0.25}),
    "mse": ("mse", 2, {}),
    "mse-weights-alpha-split": ("mse", 2, {"sample_weight": True, "alpha": 0.1,
                                           "validation_split": 0.2}),
    "bce-multilabel-weights": ("binary_crossentropy", 3, {"sample_weight": True}),
    "bce-one-output-classes": ("binary_crossentropy", 1, {"class_weight": "balanced",
                                                           "validation_split": 0.1}),
}


def _targets(loss, k, rng, n=N):
    if loss == "softmax_crossentropy":
        return rng.integers(0, k, n)
    if loss == "mse":
        return rng.normal(size=(n, k))
    return (rng.random(n) < 0.3).astype(np.int64) if k == 1 else \
        (rng.random((n, k)) < 0.4).astype(np.float64)


def _data(backend, loss, k, seed=0, n=N):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D)).astype(backend.dtype_name)
    return X, _targets(loss, k, rng, n), rng.random(n).astype(np.float32).astype(np.float64)


def _on_device(backend, loss, array):
    """The in-memory twin of a host array: labels in the index dtype, others as stored."""
    if loss == "softmax_crossentropy" and array.dtype.kind in "iu":
        return backend.asarray(array, dtype=backend.index_dtype)
    if array.dtype.kind in "iu":  # 0/1 integer targets of the binary cross-entropy
        return backend.asarray(array, dtype=backend.index_dtype)
    return backend.asarray(array)


def _model(backend, loss, k):
    return xpnet.Sequential.mlp([D, 16, k], backend=backend, seed=1, loss=loss,
                                learning_rate=0.05)


@pytest.mark.parametrize("case", list(CASES))
def test_streamed_fit_equals_in_memory_bit_for_bit(backend, tmp_path, case):
    loss, k, options = CASES[case]
    X, Y, w = _data(backend, loss, k)
    host_kw = {**options, "sample_weight": w if options.get("sample_weight") else None}
    device_kw = {**host_kw, "sample_weight": None if host_kw["sample_weight"] is None
                 else backend.asarray(w)}
    in_memory, streamed = _model(backend, loss, k), _model(backend, loss, k)
    with _step_by_step(backend):
        h1 = in_memory.fit(backend.asarray(X), _on_device(backend, loss, Y), epochs=2,
                           batch_size=16, seed=7, **device_kw)
    h2 = streamed.fit(_memmap(tmp_path, "X", X), _memmap(tmp_path, "Y", Y), epochs=2,
                      batch_size=16, seed=7, chunk_bytes=_small_chunks(16), **host_kw)
    for a, b in zip(_params(in_memory), _params(streamed)):
        np.testing.assert_array_equal(a, b)
    assert _logs(h1) == _logs(h2)
    assert ("val_loss" in h2.history) == ("validation_split" in options)
    assert ("train_acc" in h2.history) == (loss != "mse")


def test_host_validation_data_of_another_loss_is_scored_as_in_memory(backend, tmp_path):
    X, Y, _ = _data(backend, "mse", 2)
    Xm, Ym = _memmap(tmp_path, "X", X), _memmap(tmp_path, "Y", Y)
    a, b = _model(backend, "mse", 2), _model(backend, "mse", 2)
    with _step_by_step(backend):
        h1 = a.fit(backend.asarray(X), backend.asarray(Y), batch_size=16,
                   validation_data=(backend.asarray(X[:50]), backend.asarray(Y[:50])))
    h2 = b.fit(Xm, Ym, batch_size=16, validation_data=(Xm[:50], Ym[:50]),
               chunk_bytes=_small_chunks(16))
    assert _logs(h1) == _logs(h2) and set(h2.history) == {"epoch", "loss", "seconds",
                                                          "val_loss"}
    with pytest.raises(ValueError, match="X and y are empty"):
        b.evaluate(Xm[:0], Ym[:0], sample_weight=np.ones(0))
    assert b.predict(Xm[:0]).shape == (0, 2)


def test_validation_split_drives_early_stopping_as_in_memory(backend, tmp_path):
    X, y, _ = _data(backend, "softmax_crossentropy", 4, n=160)
    runs = []
    for data in ((backend.asarray(X), backend.asarray(y, dtype=backend.index_dtype)),
                 (_memmap(tmp_path, "X", X), y)):
        model = xpnet.Sequential.mlp([D, 16, 4], backend=backend, seed=1, learning_rate=0.5)
        stop = xpnet.EarlyStopping(monitor="val_loss", patience=1)
        with _step_by_step(backend):
            runs.append(model.fit(*data, epochs=40, batch_size=16, validation_split=0.25,
                                  callbacks=[stop], chunk_bytes=_small_chunks(16)))
    assert len(runs[1]) < 40  # random labels: the validation loss soon stops improving
    assert _logs(runs[0]) == _logs(runs[1])


@pytest.mark.parametrize("loss,k", [("softmax_crossentropy", 4), ("mse", 2),
                                    ("binary_crossentropy", 3)])
def test_evaluate_and_predict_from_host_equal_device_results(backend, tmp_path, loss, k):
    X, Y, w = _data(backend, loss, k, n=2600)  # several 1024-row blocks, a short last one
    model = _model(backend, loss, k)
    Xm, Ym = _memmap(tmp_path, "X", X), _memmap(tmp_path, "Y", Y)
    Xd, Yd = backend.asarray(X), _on_device(backend, loss, Y)
    small = 1024 * (D * 8 + 8 * k + 8)  # one block per chunk
    for weights in (None, w):
        device_w = None if weights is None else backend.asarray(weights)
        got = model.evaluate(Xm, Ym, chunk_bytes=small, sample_weight=weights)
        assert got == model.evaluate(Xd, Yd, sample_weight=device_w)
        assert set(got) == ({"loss"} if loss == "mse" else {"loss", "accuracy"})
    np.testing.assert_array_equal(backend.to_numpy(model.predict(Xm, chunk_bytes=small)),
                                  backend.to_numpy(model.predict(Xd)))
    if loss != "mse":
        np.testing.assert_array_equal(backend.to_numpy(model.predict_proba(Xm)),
                                      backend.to_numpy(model.predict_proba(Xd)))
    else:  # the raw outputs, as in memory
        np.testing.assert_array_equal(backend.to_numpy(model.predict(Xm)),
                                      backend.to_numpy(model.predict_logits(Xd)))


def test_weights_change_the_streamed_result(tmp_path):
    """The comparison above could pass if both paths ignored the weights: they do not."""
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y, w = _data(be, "softmax_crossentropy", 4)
    Xm = _memmap(tmp_path, "X", X)
    plain, weighted = _model(be, "softmax_crossentropy", 4), _model(be, "softmax_crossentropy", 4)
    plain.fit(Xm, y, batch_size=16, chunk_bytes=_small_chunks(16))
    weighted.fit(Xm, y, batch_size=16, chunk_bytes=_small_chunks(16), sample_weight=w)
    assert any(not np.array_equal(a, b) for a, b in zip(_params(plain), _params(weighted)))
    assert plain.evaluate(Xm, y) != plain.evaluate(Xm, y, sample_weight=w)


# -- bad input: the in-memory errors -------------------------------------------------------

BAD = [
    (dict(sample_weight=np.full(N, -1.0)), ValueError, rf"sample_weight must be >= 0.*{N} neg"),
    (dict(sample_weight=np.where(np.arange(N) == 2, np.nan, 1.0)), ValueError,
     rf"sample_weight contains NaN or infinite values \(1 of {N}\)"),
    (dict(sample_weight=np.ones(N - 1)), ValueError, rf"sample_weight must have shape \({N},\)"),
    (dict(sample_weight=np.zeros(N)), ValueError, r"sample_weight is zero everywhere"),
    (dict(class_weight="heavy"), ValueError, r"class_weight must be 'balanced', a dict"),
    (dict(class_weight={7: 1.0}), ValueError, r"class_weight keys must be classes in \[0, 3\]"),
    (dict(validation_split=1.0), ValueError, r"validation_split must be"),
    (dict(validation_split=0.999), ValueError, rf"leaves 0 for training and {N} for val"),
    (dict(alpha=-1.0), ValueError, r"alpha must be"),
]


@pytest.mark.parametrize("bad,error,pattern", BAD)
def test_bad_weights_and_splits_give_the_in_memory_errors(backend, tmp_path, bad, error,
                                                          pattern):
    X, y, _ = _data(backend, "softmax_crossentropy", 4)
    model = _model(backend, "softmax_crossentropy", 4)
    device_kw = {k: backend.asarray(v) if isinstance(v, np.ndarray) else v
                 for k, v in bad.items()}
    with pytest.raises(error, match=pattern):
        model.fit(backend.asarray(X), backend.asarray(y, dtype=backend.index_dtype),
                  batch_size=4, **device_kw)
    with pytest.raises(error, match=pattern):
        model.fit(_memmap(tmp_path, "X", X), y, batch_size=4, **bad)
    if "sample_weight" in bad:
        with pytest.raises(error, match=pattern):
            model.evaluate(_memmap(tmp_path, "X", X), y, **bad)


def test_bad_targets_give_the_in_memory_errors(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float64")
    X = _memmap(tmp_path, "X", np.zeros((8, D)))
    mse, bce = _model(be, "mse", 2), _model(be, "binary_crossentropy", 1)
    with pytest.raises(xpnet.DTypeError, match="floating-point targets for the mean squared"):
        mse.fit(X, np.zeros((8, 2), dtype=np.int64), batch_size=2)
    with pytest.raises(ValueError, match="NaN or infinite targets"):
        mse.fit(X, np.where(np.arange(16).reshape(8, 2) == 13, np.inf, 0.0), batch_size=2)
    with pytest.raises(xpnet.ShapeError, match=r"y must have shape \(n, 2\) for a network with "
                                               r"2 outputs, got \(8, 3\)"):
        mse.evaluate(X, np.zeros((8, 3)))
    with pytest.raises(xpnet.ShapeError, match=r"one row per sample: expected 8 rows, got shape "
                                               r"\(7, 2\)"):
        mse.fit(X, np.zeros((7, 2)), batch_size=2)
    with pytest.raises(ValueError, match="only 0 and 1 for the binary cross-entropy"):
        bce.fit(X, np.arange(8.0), batch_size=2)
    with pytest.raises(ValueError, match="class_weight needs a classification loss"):
        mse.fit(X, np.zeros((8, 2)), batch_size=2, class_weight="balanced")
    # A list of targets is host data too, converted as a NumPy array (issue 22); a tensor
    # of another library is not.
    assert len(mse.fit(X, [[0.0, 0.0]] * 8, batch_size=2).history["loss"]) == 1
    aas = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match="y must be a NumPy array of targets when the features "
                                        "are host data"):
        mse.fit(X, aas.zeros((8, 2)), batch_size=2)


def test_weights_of_host_data_must_be_host_arrays(backend, tmp_path):
    X, y, w = _data(backend, "softmax_crossentropy", 4)
    model = _model(backend, "softmax_crossentropy", 4)
    with pytest.raises(TypeError, match="sample_weight must be a NumPy array when the features "
                                        "are host data"):
        model.fit(_memmap(tmp_path, "X", X), y, sample_weight=list(w))


def test_distributed_still_refuses_host_data_with_weights_and_losses(tmp_path):
    """distributed= takes every option with device arrays (tests/test_distributed_weights.py),
    but host data with weights or another loss stays one process's."""
    be = xpnet.get_backend("numpy", dtype="float32")
    comm = distributed.init(require_mpi=False)  # the single-process stand-in
    X, y, w = _data(be, "softmax_crossentropy", 4)
    Xm = _memmap(tmp_path, "X", X)
    model = _model(be, "softmax_crossentropy", 4)
    mse = _model(be, "mse", 2)
    for call in (lambda: model.fit(Xm, y, class_weight="balanced", distributed=comm),
                 lambda: model.fit(Xm, y, sample_weight=w, distributed=comm),
                 lambda: model.evaluate(Xm, y, sample_weight=w, distributed=comm),
                 lambda: mse.predict(Xm, distributed=comm)):
        with pytest.raises(NotImplementedError, match="streamed by one process only"):
            call()


# -- iterables of batches ----------------------------------------------------------------------

def _batches(X, Y, w, size):
    return [(X[i:i + size], Y[i:i + size], *(() if w is None else (w[i:i + size],)))
            for i in range(0, X.shape[0] - size + 1, size)]


@pytest.mark.parametrize("case", ["xent-weights", "mse-weights-alpha-split",
                                  "bce-multilabel-weights", "mse"])
def test_batches_with_weights_equal_unshuffled_in_memory_training(backend, case):
    loss, k, options = CASES[case]
    X, Y, w = _data(backend, loss, k)
    weighted, alpha = bool(options.get("sample_weight")), options.get("alpha", 0.0)
    a, b = _model(backend, loss, k), _model(backend, loss, k)
    with _step_by_step(backend):
        h1 = a.fit(backend.asarray(X), _on_device(backend, loss, Y), epochs=2, batch_size=20,
                   shuffle=False, train_accuracy=False, alpha=alpha,
                   sample_weight=backend.asarray(w) if weighted else None)
    h2 = b.fit(_batches(X, Y, w if weighted else None, 20), epochs=2, shuffle=False,
               alpha=alpha)
    for p, q in zip(_params(a), _params(b)):
        np.testing.assert_array_equal(p, q)
    # The epoch's total weight is summed batch by batch here, all at once in memory.
    np.testing.assert_allclose(h2.history["loss"], h1.history["loss"], rtol=1e-12)


def test_batches_on_the_device_with_weights_and_zero_weight_batches(backend):
    X, y, w = _data(backend, "softmax_crossentropy", 4)
    w[:30] = 0.0  # the first batch weighs nothing: allowed, as a batch of in-memory fit
    Xd, yd, wd = backend.asarray(X), backend.asarray(y, dtype=backend.index_dtype), \
        backend.asarray(w)
    model = _model(backend, "softmax_crossentropy", 4)
    h = model.fit([(Xd[i:i + 30, ...], yd[i:i + 30], wd[i:i + 30]) for i in range(0, N, 30)],
                  validation_data=(Xd, yd))
    assert np.isfinite(h.history["loss"][0]) and "val_acc" in h.history


def test_batches_refuse_what_they_cannot_take(backend):
    X, y, w = _data(backend, "softmax_crossentropy", 4)
    model = _model(backend, "softmax_crossentropy", 4)
    batches = _batches(X, y, None, 30)
    with pytest.raises(TypeError, match=r"takes no sample_weight.*\(X_batch, y_batch, w_batch\)"):
        model.fit(batches, sample_weight=w)
    with pytest.raises(NotImplementedError, match="class_weight=.* is not supported: 'balanced'"):
        model.fit(batches, class_weight="balanced")
    with pytest.raises(NotImplementedError, match="validation_split=.* is not supported"):
        model.fit(batches, validation_split=0.2)
    mixed = _batches(X, y, w, 30)[:2] + batches[2:]
    with pytest.raises(xpnet.ShapeError, match=r"batch 3 of epoch 1 has shapes X \(30, 12\), y "
                                               r"\(30,\), but the first batch had .* w \(30,\)"):
        model.fit(mixed, shuffle=False)
    bad = [(X[:30], y[:30], -np.ones(30))]
    with pytest.raises(ValueError, match=r"w of batch 1 of epoch 1 must be >= 0"):
        model.fit(bad)
    with pytest.raises(TypeError, match="must be a pair .* or a triple"):
        model.fit([(X[:30],)])
