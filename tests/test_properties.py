"""Property-based tests: for random shapes, dtypes and values, layers and the loss
either compute the float64 reference answer or raise a clear, typed error."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import make_backend, ref_xent, ref_xent_grad, rel_err, rtol_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xpnet

# Property tests run on NumPy and on array-api-strict's second device: together they
# cover the real library and the strictest reading of the standard.
SPECS = [("numpy", None), ("array_api_strict", "device1")]
SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

dims = st.integers(1, 6)
dtypes = st.sampled_from(["float32", "float64"])


@pytest.mark.parametrize("spec", SPECS, ids=[s[0] for s in SPECS])
@SETTINGS
@given(n=dims, d_in=dims, d_out=dims, dtype=dtypes, seed=st.integers(0, 2**32 - 1),
       extra_cols=st.integers(-2, 2))
def test_dense_matches_reference_or_names_the_shape(spec, n, d_in, d_out, dtype, seed, extra_cols):
    be = make_backend(*spec, dtype)
    rng = np.random.default_rng(seed)
    layer = xpnet.Dense(d_in, d_out, rng=rng, backend=be)
    w = be.to_numpy(layer.weights).astype(np.float64)
    cols = d_in + extra_cols
    if cols < 1:
        return
    x = rng.standard_normal((n, cols))
    if cols != d_in:
        with pytest.raises(xpnet.ShapeError, match=rf"\(n, {d_in}\).*got \({n}, {cols}\)"):
            layer.forward(be.asarray(x))
        return
    g = rng.standard_normal((n, d_out))
    out = be.to_numpy(layer.forward(be.asarray(x)))
    assert rel_err(out, x @ w) < rtol_for(be)
    gi = be.to_numpy(layer.backward(be.asarray(x), be.asarray(g)))
    assert rel_err(gi, g @ w.T) < rtol_for(be) or np.max(np.abs(g @ w.T)) < 1e-30


@pytest.mark.parametrize("spec", SPECS, ids=[s[0] for s in SPECS])
@SETTINGS
@given(n=dims, c=st.integers(2, 8), dtype=dtypes, seed=st.integers(0, 2**32 - 1),
       scale=st.sampled_from([1e-3, 1.0, 30.0, 1000.0]), label_shift=st.integers(-2, 2))
def test_loss_matches_reference_or_rejects_labels(spec, n, c, dtype, seed, scale, label_shift):
    be = make_backend(*spec, dtype)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, c)) * scale
    y = rng.integers(0, c, n)
    y[0] += label_shift * c  # sometimes out of range
    zd, yd = be.asarray(z), be.asarray(y, dtype=be.index_dtype)
    if label_shift:
        with pytest.raises(ValueError, match=rf"\[0, {c - 1}\]"):
            xpnet.softmax_crossentropy_with_logits(zd, yd)
        return
    loss = be.to_numpy(xpnet.softmax_crossentropy_with_logits(zd, yd))
    grad = be.to_numpy(xpnet.grad_softmax_crossentropy_with_logits(zd, yd))
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    # Absolute error scaled to the logits' magnitude: float32 keeps ~7 digits of |z|.
    eps = 1e-12 if dtype == "float64" else 1e-5
    assert np.max(np.abs(loss - ref_xent(z, y))) <= eps * max(1.0, np.max(np.abs(z)))
    assert np.max(np.abs(grad - ref_xent_grad(z, y))) <= eps
    # A gradient row sums to zero: softmax sums to one, the one-hot too.
    assert np.max(np.abs(grad.sum(axis=1))) <= 10 * eps


@pytest.mark.parametrize("spec", SPECS, ids=[s[0] for s in SPECS])
@SETTINGS
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), dtype=dtypes,
       seed=st.integers(0, 2**32 - 1))
def test_relu_any_shape(spec, shape, dtype, seed):
    be = make_backend(*spec, dtype)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    relu = xpnet.ReLU(backend=be)
    np.testing.assert_allclose(be.to_numpy(relu.forward(be.asarray(x))), np.maximum(x, 0),
                               rtol=rtol_for(be))
    np.testing.assert_allclose(be.to_numpy(relu.backward(be.asarray(x), be.asarray(g))),
                               g * (x > 0), rtol=rtol_for(be))


@pytest.mark.parametrize("spec", SPECS, ids=[s[0] for s in SPECS])
@SETTINGS
@given(n=st.integers(0, 4), d=dims, bad_dtype=st.sampled_from(["uint8", "int64", "other-float"]))
def test_model_input_dtype_errors_or_conversion(spec, n, d, bad_dtype):
    be = make_backend(*spec, "float32")
    model = xpnet.Sequential.mlp([d, 3, 2], backend=be, seed=0)
    if bad_dtype == "other-float":
        X = be.with_dtype("float64").asarray(np.zeros((n, d)))
    else:
        X = be.asarray(np.zeros((n, d)), dtype=getattr(be.xp, bad_dtype))
    if spec[0] == "numpy":  # NumPy arrays are host data there: converted, as scikit-learn does
        expected = model.predict(be.asarray(np.zeros((n, d)), dtype=be.xp.float32))
        np.testing.assert_array_equal(be.to_numpy(model.predict(X)), be.to_numpy(expected))
        return
    with pytest.raises(xpnet.DTypeError, match=r"X must have dtype float32.*got"):
        model.predict(X)
