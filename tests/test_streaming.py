"""Host data (np.memmap, NumPy arrays on other backends) streamed in chunks, and batch iterables.

The central promise: training from a memmap gives exactly the weights of
training from the same data in memory, on every backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import distributed
from xpnet.errors import DTypeError, ShapeError
from xpnet.feeds import host as streaming

N, D, C = 300, 12, 4


def _host_data(dtype_name, n=N, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D)).astype(dtype_name)
    y = rng.integers(0, C, n)
    return X, y


def _memmap(tmp_path, name, array):
    path = tmp_path / f"{name}.npy"
    np.save(path, array)
    out = np.load(path, mmap_mode="r")
    assert isinstance(out, np.memmap)
    return out


def _device(be, X, y):
    return be.asarray(X), be.asarray(y, dtype=be.index_dtype)


def _model(be):
    return xpnet.Sequential.mlp([D, 16, 8, C], backend=be, seed=1)


def _params(model):
    return [model.backend.to_numpy(p) for layer in model.layers for p in layer.params.values()]


def _logs(history):
    return {k: v for k, v in history.history.items() if k != "seconds"}


def _small_chunks(batch_size, rows=3):
    """A chunk_bytes budget of ``rows`` batches of X and y rows (several chunks, a short last one)."""
    return rows * batch_size * (D * 8 + 8)


@contextlib.contextmanager
def _step_by_step(backend):
    """In-memory training with one compiled program per *step*, as the streamed path runs.

    On JAX, in-memory training compiles whole epochs (``lax.scan``; see
    tests/test_compiled_epoch.py), which XLA fuses differently from the
    per-step program that chunked host data runs, so the two agree to rounding
    only. The streamed *batches* are exactly the in-memory ones: against the
    step-by-step in-memory run the weights are bit-for-bit equal. Elsewhere
    this changes nothing (no other backend compiles loops).
    """
    cls = type(backend)
    saved = cls.__dict__.get("compiles_loops", None)
    cls.compiles_loops = False
    try:
        yield
    finally:
        if saved is None:
            del cls.compiles_loops
        else:
            cls.compiles_loops = saved


@pytest.mark.parametrize("shuffle", [True, False])
def test_memmap_training_equals_in_memory_bit_for_bit(backend, tmp_path, shuffle):
    X, y = _host_data(backend.dtype_name)
    in_memory, streamed = _model(backend), _model(backend)
    val = (X[:50], y[:50])
    with _step_by_step(backend):
        h1 = in_memory.fit(*_device(backend, X, y), epochs=2, batch_size=16, seed=7,
                           shuffle=shuffle, validation_data=_device(backend, *val))
    Xm, ym = _memmap(tmp_path, "X", X), _memmap(tmp_path, "y", y)
    h2 = streamed.fit(Xm, ym, epochs=2, batch_size=16, seed=7, shuffle=shuffle,
                      chunk_bytes=_small_chunks(16), validation_data=(Xm[:50], ym[:50]))
    for a, b in zip(_params(in_memory), _params(streamed)):
        np.testing.assert_array_equal(a, b)
    assert _logs(h1) == _logs(h2)
    assert h2.history["train_acc"][0] == h1.history["train_acc"][0]


def test_host_numpy_array_streams_on_non_numpy_backends(backend):
    X, y = _host_data(backend.dtype_name)
    assert streaming.is_host_array(backend, X) == (backend.name != "numpy")
    a, b = _model(backend), _model(backend)
    with _step_by_step(backend):
        a.fit(*_device(backend, X, y), batch_size=32, seed=2, train_accuracy=False)
    b.fit(X, y, batch_size=32, seed=2, train_accuracy=False)
    for p, q in zip(_params(a), _params(b)):
        np.testing.assert_array_equal(p, q)


def test_predict_and_evaluate_from_host_equal_device_results(backend, tmp_path):
    X, y = _host_data(backend.dtype_name, n=2600)  # several 1024-row blocks, a short last one
    model = _model(backend)
    model.fit(*_device(backend, X, y), batch_size=64, train_accuracy=False)
    Xm, ym = _memmap(tmp_path, "X", X), _memmap(tmp_path, "y", y)
    Xd, yd = _device(backend, X, y)
    small = 1024 * (D * 8 + 8)  # one prediction block per chunk
    np.testing.assert_array_equal(backend.to_numpy(model.predict(Xm, chunk_bytes=small)),
                                  backend.to_numpy(model.predict(Xd)))
    np.testing.assert_array_equal(backend.to_numpy(model.predict_proba(Xm)),
                                  backend.to_numpy(model.predict_proba(Xd)))
    np.testing.assert_array_equal(backend.to_numpy(model.predict_logits(Xm, batch_size=100)),
                                  backend.to_numpy(model.predict_logits(Xd, batch_size=100)))
    assert model.evaluate(Xm, ym, chunk_bytes=small) == model.evaluate(Xd, yd)


def test_in_memory_numpy_array_keeps_the_in_memory_path(monkeypatch):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = _host_data("float64")

    def refuse(*args, **kwargs):
        raise AssertionError("an in-memory NumPy array must not be streamed on NumPy")

    monkeypatch.setattr(streaming.HostFeed, "epoch_blocks", refuse)
    monkeypatch.setattr(streaming.HostFeed, "logit_blocks", refuse)
    model = _model(be)
    model.fit(X, y, batch_size=32)
    assert model.predict(X).shape == (N,)


# -- batch iterables ---------------------------------------------------------------------

class _Batches:
    """A dataset object: __len__ and __getitem__ of host batches."""

    def __init__(self, X, y, batch_size):
        self.X, self.y, self.batch_size = X, y, batch_size

    def __len__(self):
        return self.X.shape[0] // self.batch_size

    def __getitem__(self, i):
        lo = i * self.batch_size
        return self.X[lo:lo + self.batch_size], self.y[lo:lo + self.batch_size]


def test_dataset_of_batches_equals_unshuffled_in_memory_training(backend):
    X, y = _host_data(backend.dtype_name)
    a, b = _model(backend), _model(backend)
    with _step_by_step(backend):
        a.fit(*_device(backend, X, y), epochs=2, batch_size=20, shuffle=False,
              train_accuracy=False)
    h = b.fit(_Batches(X, y, 20), epochs=2, shuffle=False, progress=True)
    for p, q in zip(_params(a), _params(b)):
        np.testing.assert_array_equal(p, q)
    assert len(h.history["loss"]) == 2


def test_generator_and_device_batches_train(backend):
    X, y = _host_data(backend.dtype_name)
    model = _model(backend)
    before = _params(model)
    Xd, yd = _device(backend, X, y)
    gen = ((Xd[i:i + 30, ...], yd[i:i + 30]) for i in range(0, N, 30))
    h = model.fit(gen, validation_data=(Xd, yd))
    assert np.isfinite(h.history["loss"][0]) and "val_acc" in h.history
    assert any(not np.array_equal(p, q) for p, q in zip(before, _params(model)))
    shuffled = model.fit(_Batches(X, y, 30), epochs=2, seed=0)  # batch order permuted
    assert len(shuffled.history["loss"]) == 2


# -- bad inputs ----------------------------------------------------------------------------

def _other_float(backend):
    return "float64" if backend.dtype_name == "float32" else "float32"


def test_memmap_of_no_real_dtype_or_wrong_shape_is_refused(backend, tmp_path):
    """A memmap of another real dtype is converted chunk by chunk (tests/test_input_conversion.py);
    complex numbers or a wrong width are refused before anything is read."""
    X, y = _host_data(backend.dtype_name)
    model = _model(backend)
    with pytest.raises(DTypeError, match=r"X must hold real numbers .* got dtype complex64 "
                                         r"\(complex numbers\) in a host memmap"):
        model.fit(_memmap(tmp_path, "X", X.astype(np.complex64)), y)
    wide = _memmap(tmp_path, "wide", np.zeros((N, D + 1), dtype=backend.dtype_name))
    with pytest.raises(ShapeError, match=rf"host data of shape \({N}, {D + 1}\).*\(n, {D}\)"):
        model.predict(wide)
    with pytest.raises(ShapeError, match=r"validation_data\[0\] is host data"):
        model.fit(*_device(backend, *_host_data(backend.dtype_name)), validation_data=(wide, y))


def test_labels_of_another_length_are_refused(backend, tmp_path):
    X, y = _host_data(backend.dtype_name)
    Xm = _memmap(tmp_path, "X", X)
    model = _model(backend)
    with pytest.raises(ShapeError, match=rf"y must have one label per sample: expected shape "
                                         rf"\({N},\), got \({N - 1},\)"):
        model.fit(Xm, y[:-1])
    with pytest.raises(ShapeError, match="one label per sample"):
        model.evaluate(Xm, y[:-1])
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\].*from 0 to 9"):
        model.fit(Xm, np.arange(N) % 10)
    with pytest.raises(DTypeError, match="integer class labels"):
        model.fit(Xm, y.astype(np.float32))


def test_nan_in_host_data_names_the_row(backend, tmp_path):
    X, y = _host_data(backend.dtype_name)
    X[123, 4] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(first in row 123 "):
        _model(backend).fit(_memmap(tmp_path, "X", X), y, chunk_bytes=_small_chunks(10))


def test_generator_changing_batch_shape_mid_epoch_is_refused(backend):
    X, y = _host_data(backend.dtype_name)
    sizes = [32, 32, 31, 32]
    starts = np.cumsum([0] + sizes[:-1])
    gen = ((X[s:s + k], y[s:s + k]) for s, k in zip(starts, sizes))
    with pytest.raises(ShapeError, match=rf"batch 3 of epoch 1 has shapes X \(31, {D}\), y "
                                         rf"\(31,\), but the first batch had X \(32, {D}\)"):
        _model(backend).fit(gen)


def test_generator_exhausted_after_one_epoch_is_explained(backend):
    X, y = _host_data(backend.dtype_name)
    gen = ((X[i:i + 50], y[i:i + 50]) for i in range(0, N, 50))
    with pytest.raises(ValueError, match="yielded nothing in epoch 2: a generator can be iterated"):
        _model(backend).fit(gen, epochs=2)


def test_batches_with_labels_argument_or_bad_items_are_refused(backend):
    X, y = _host_data(backend.dtype_name)
    # With y given a list is data (issue 22): a list of batches then reads as ragged rows.
    with pytest.raises(ShapeError, match=r"X is a list whose rows have different lengths.*a list "
                                         r"of \(X_batch, y_batch\) batches\? then pass y=None"):
        _model(backend).fit([(X, y)], y)
    with pytest.raises(TypeError, match="X is a generator, which fit takes as an iterable of .* "
                                        "so y must be None"):
        _model(backend).fit(((X, y) for _ in range(2)), y)
    with pytest.raises(TypeError, match=r"batch 1 of epoch 1 must be a pair"):
        _model(backend).fit([X])


def test_host_features_need_host_labels(backend):
    if backend.name == "numpy":
        pytest.skip("on NumPy a memmap's labels may be any NumPy array, tested above")
    X, y = _host_data(backend.dtype_name)
    with pytest.raises(TypeError, match="y must be a NumPy array of integer labels when the "
                                        "features are host data"):
        _model(backend).fit(X, backend.asarray(y, dtype=backend.index_dtype))


def test_bad_chunk_bytes(tmp_path):
    be = xpnet.get_backend("numpy")
    X, y = _host_data("float32")
    with pytest.raises(ValueError, match="chunk_bytes"):
        _model(be).fit(_memmap(tmp_path, "X", X), y, chunk_bytes=0)


# -- the machinery -------------------------------------------------------------------------

class _RecordingRows:
    """Array-like that records which rows each read asks for."""

    def __init__(self, data):
        self.data, self.reads = data, []
        self.shape, self.size, self.itemsize = data.shape, data.size, data.itemsize

    def __getitem__(self, rows):
        self.reads.append(np.asarray(rows))
        return self.data[rows]


def test_gather_reads_rows_in_increasing_order(monkeypatch):
    monkeypatch.setattr(streaming, "_GATHER_BYTES", 5 * 16)  # 5 rows of 2 float64 per read
    host = _RecordingRows(np.arange(40.0).reshape(20, 2))
    rows = np.random.default_rng(0).permutation(20)[:13]
    out = streaming.gather_rows(host, rows, np.empty((13, 2)))
    np.testing.assert_array_equal(out, host.data[rows])
    reads = np.concatenate(host.reads)
    assert len(host.reads) == 3 and np.all(np.diff(reads) > 0)


def test_rows_per_chunk_follow_the_byte_budget():
    be = xpnet.get_backend("numpy")
    model = _model(be)
    X, y = _host_data("float32", n=10)
    data = streaming.HostData.of(model, X.view(np.memmap), y, chunk_bytes=100 * (D * 4 + 8))
    assert data.rows_per_chunk(32) == 96  # a multiple of the batch
    assert data.rows_per_chunk(1000) == 1000  # at least one batch


def test_next_chunk_is_loaded_while_the_current_one_is_used(monkeypatch):
    be = xpnet.get_backend("numpy")
    loaded, threads = [], []
    second_started = threading.Event()
    real = streaming._load_chunk

    def recording(backend, data, rows, *args):
        threads.append(threading.current_thread().name)
        loaded.append(rows.start)
        if rows.start == 10:
            second_started.set()
        return real(backend, data, rows, *args)

    monkeypatch.setattr(streaming, "_load_chunk", recording)
    X, y = _host_data("float32", n=30)
    data = streaming.HostData.of(_model(be), X.view(np.memmap), y)
    chunks = streaming.stream_chunks(be, data, streaming._row_plans(30, 10))
    first = next(chunks)
    assert second_started.wait(timeout=30)  # prepared before we asked for it
    np.testing.assert_array_equal(first.X, X[:10])
    del first
    assert [c.X.shape[0] for c in chunks] == [10, 10]
    assert loaded == [0, 10, 20]
    assert all(name.startswith("xpnet-stream") for name in threads)


def test_benchmark_runs_end_to_end(tmp_path):
    """``python -m benchmarks.streaming`` on a tiny file: a record per backend (no timing asserted)."""
    out = tmp_path / "record.json"
    cmd = [sys.executable, "-m", "benchmarks.streaming", "--rows", "3000", "--memory-rows", "2048",
           "--backends", "numpy", "--chunk-bytes", "2000000", "--json", str(out), "--timeout", "200"]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}  # where the benchmark writes its memmap
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (result,) = json.loads(out.read_text())["results"]
    assert result["memmap"]["rows"] == 3000 and result["memory"]["rows"] == 2048
    assert result["memmap"]["rows_per_s"] > 0 and result["memmap"]["peak_rss_anon_mib"] > 0
    assert "ratio" in proc.stdout and not list(scratch.iterdir())  # the data file is deleted


def test_host_data_with_distributed_is_refused_not_half_supported(tmp_path):
    be = xpnet.get_backend("numpy", dtype="float32")
    comm = distributed.init(require_mpi=False)  # the single-process stand-in
    X, y = _host_data("float32")
    Xm = _memmap(tmp_path, "X", X)
    model = _model(be)
    for call in (lambda: model.fit(Xm, y, distributed=comm),
                 lambda: model.fit(X, y, validation_data=(Xm, y), distributed=comm),
                 lambda: model.predict(Xm, distributed=comm),
                 lambda: model.evaluate(Xm, y, distributed=comm)):
        with pytest.raises(NotImplementedError, match="streamed by one process only"):
            call()


def test_chunkwise_shuffle_is_opt_in_deterministic_and_reads_runs(backend, tmp_path):
    X, y = _host_data(backend.dtype_name)
    Xm = _memmap(tmp_path, "X", X)
    runs = []
    for _ in range(2):
        model = _model(backend)
        h = model.fit(Xm, y, batch_size=16, seed=3, shuffle="chunks",
                      chunk_bytes=_small_chunks(16), train_accuracy=False)
        runs.append(_params(model))
        assert np.isfinite(h.history["loss"][0])
    exact = _model(backend)
    exact.fit(Xm, y, batch_size=16, seed=3, chunk_bytes=_small_chunks(16), train_accuracy=False)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)  # same seed, same weights
    assert any(not np.array_equal(a, b) for a, b in zip(runs[0], _params(exact)))
    with pytest.raises(ValueError, match="shuffle='chunks' .* is for host data"):
        _model(backend).fit(*_device(backend, X, y), shuffle="chunks")


def test_chunkwise_permutation_keeps_each_chunk_contiguous():
    order = streaming.chunkwise_permutation(np.random.default_rng(1), 103, 10)
    assert sorted(order.tolist()) == list(range(103))
    lo = 0
    while lo < len(order):
        start = int(order[lo] // 10 * 10)
        size = min(10, 103 - start)
        assert sorted(order[lo:lo + size].tolist()) == list(range(start, start + size))
        lo += size
    assert not np.array_equal(order, np.arange(103))
