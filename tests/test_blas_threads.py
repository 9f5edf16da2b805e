"""BLAS threads per fit (xpnet._threads): chosen from the work per step, overridable."""

from __future__ import annotations

import os

import numpy as np
import pytest

import xpnet
from xpnet._threads import ENV_VAR, SMALL_STEP_FLOPS, scipy_blas_paths, step_flops, threads_for

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads_now() -> int | None:
    pools = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    return pools[0]["num_threads"] if pools else None


class _Record(xpnet.Callback):
    def __init__(self):
        self.threads = []

    def on_epoch_begin(self, epoch, logs=None):
        self.threads.append(_blas_threads_now())


def _fit(sizes, batch, **kwargs):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2 * batch, sizes[0]))
    y = rng.integers(0, sizes[-1], 2 * batch)
    model = xpnet.Sequential.mlp(sizes, backend="numpy", dtype="float64", seed=0)
    record = _Record()
    model.fit(X, y, epochs=1, batch_size=batch, callbacks=[record], train_accuracy=False,
              **kwargs)
    return model, record.threads[0]


def test_step_flops_counts_three_products_per_dense_layer():
    model = xpnet.Sequential.mlp([784, 100, 200, 10], backend="numpy")
    assert step_flops(model.layers, 32) == 6 * 32 * (784 * 100 + 100 * 200 + 200 * 10)


@pytest.mark.parametrize("flops, requested, expected", [
    (SMALL_STEP_FLOPS / 2, "auto", 1), (SMALL_STEP_FLOPS * 2, "auto", None),
    (SMALL_STEP_FLOPS / 2, 3, 3), (SMALL_STEP_FLOPS * 2, "2", 2)])
def test_threads_for(flops, requested, expected):
    assert threads_for(flops, requested) == expected


def test_environment_is_read_when_not_given(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "4")
    assert threads_for(1.0) == 4
    monkeypatch.setenv(ENV_VAR, "auto")
    assert threads_for(1.0) == 1 and threads_for(SMALL_STEP_FLOPS * 10) is None


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "x", "0"])
def test_bad_thread_counts_are_refused_before_training(bad):
    with pytest.raises(ValueError, match="blas_threads .* must be a positive int or 'auto'"):
        _fit([4, 8, 3], 8, blas_threads=bad)


def test_a_small_step_trains_on_one_blas_thread(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    if _blas_threads_now() is None:
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    _, threads = _fit([4, 8, 3], 8)  # a few hundred flops a step
    assert threads == 1


def test_the_limit_holds_for_the_fit_only(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    before = _blas_threads_now()
    if before is None or before < 2:
        pytest.skip("needs a BLAS with at least two threads")
    _, threads = _fit([4, 8, 3], 8, blas_threads=2)
    assert threads == 2 and _blas_threads_now() == before
    _, threads = _fit([4, 8, 3], 8)
    assert threads == 1 and _blas_threads_now() == before


def test_thread_count_does_not_change_the_weights(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    one, _ = _fit([20, 256, 3], 512, blas_threads=1)
    two, _ = _fit([20, 256, 3], 512, blas_threads=2)
    for a, b in zip(one.layers[::2], two.layers[::2]):
        np.testing.assert_array_equal(a.weights, b.weights)


def test_scipy_blas_paths_picks_only_the_library_scipy_ships(tmp_path):
    site = tmp_path / "site-packages"
    for folder in ("scipy", "scipy.libs", "numpy.libs", "scipy_extra"):
        (site / folder).mkdir(parents=True)
    paths = [str(site / "scipy.libs" / "libscipy_openblas.so"),
             str(site / "numpy.libs" / "libscipy_openblas64_.so"),
             str(site / "scipy_extra" / "libopenblas.so"),  # a sibling package, not scipy
             str(site / "scipy" / "linalg" / "libblas.so")]
    assert scipy_blas_paths(paths, str(site / "scipy")) == [paths[0], paths[3]]
    linked = tmp_path / "venv-link"
    linked.symlink_to(site)  # a venv reached through a link still counts as scipy's
    assert scipy_blas_paths([str(linked / "scipy.libs" / "x.so")], str(site / "scipy")) == [
        str(linked / "scipy.libs" / "x.so")]


def _pools_by_path() -> dict:
    return {p["filepath"]: p["num_threads"] for p in threadpoolctl.threadpool_info()
            if p["user_api"] == "blas"}


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_lbfgs_runs_scipys_blas_on_one_thread_and_leaves_the_rest(monkeypatch):
    pytest.importorskip("sklearn")
    import scipy

    from xpnet.sklearn import MLPClassifier

    before = _pools_by_path()
    scipy_dir = os.path.realpath(os.path.dirname(scipy.__file__))
    own = scipy_blas_paths(list(before), scipy_dir)
    others = [path for path in before if path not in own]
    if not own or before[own[0]] < 2:
        pytest.skip("scipy has no BLAS of its own with two threads here (a shared BLAS is "
                    "left alone)")
    seen = []
    real = MLPClassifier._lbfgs_loss_grad

    def recording(self, *args):
        seen.append(_pools_by_path())
        return real(self, *args)

    monkeypatch.setattr(MLPClassifier, "_lbfgs_loss_grad", recording)
    rng = np.random.default_rng(0)
    MLPClassifier((5,), solver="lbfgs", max_iter=3, random_state=0).fit(
        rng.normal(size=(30, 4)), rng.integers(0, 3, 30))
    assert seen and all(pools[own[0]] == 1 for pools in seen)
    assert all(pools[path] == before[path] for pools in seen for path in others)
    assert _pools_by_path() == before


def test_overlapping_lbfgs_fits_restore_scipys_pool_when_the_last_ends():
    from xpnet._threads import _scipy_blas_controller, scipy_blas_one_thread

    scipys = _scipy_blas_controller()
    if scipys is None or scipys.info()[0]["num_threads"] < 2:
        pytest.skip("scipy has no BLAS of its own with two threads here")
    before = scipys.info()[0]["num_threads"]
    first, second = scipy_blas_one_thread(), scipy_blas_one_thread()
    first.__enter__()
    second.__enter__()  # a second fit (another Python thread) starts during the first
    first.__exit__(None, None, None)
    assert scipys.info()[0]["num_threads"] == 1  # the second fit still runs
    second.__exit__(None, None, None)
    assert scipys.info()[0]["num_threads"] == before
