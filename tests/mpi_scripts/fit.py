"""Data-parallel fit, predict and evaluate, run on every rank of
``mpiexec -n N python -m mpi4py fit.py MODE [ARGS]``.

Started by tests/test_distributed_fit.py, which compares what rank 0 writes
with single-process runs. Each rank prints ``OK <rank>`` when it is done.

Modes
-----
parity OUT PAIRS      for each BACKEND:DTYPE of the comma-separated PAIRS and
                      each optimizer of OPTIMIZERS, train with distributed=comm;
                      rank 0 saves parameters, predictions and scores to
                      OUT/<backend>_<dtype>_<optimizer>.npz
raise STEP            rank 1 raises in its STEP-th forward pass; the job must end
refuse                ranks given different data sizes, shapes, or a global
                      batch the ranks do not divide: refused on every rank,
                      before any epoch
"""

import json
import sys
from pathlib import Path

import numpy as np

import xpnet
from xpnet.callbacks import Callback
from xpnet.distributed import DistributedError, init, raised_on_every_rank
from xpnet.optimizers import SGD, Adam

N_ROWS, N_FEATURES, N_CLASSES = 192, 12, 4
SIZES = [N_FEATURES, 16, 8, N_CLASSES]
EPOCHS, GLOBAL_BATCH, SEED = 3, 32, 5
PREDICT_ROWS, PREDICT_BLOCK = 150, 40  # 4 blocks: ranks get unequal (or no) rows

#: name -> optimizer factory (None: the seed's SGD step inside backward).
OPTIMIZERS = {
    "seed": lambda: None,
    "sgd": lambda: SGD(0.1),
    "momentum": lambda: SGD(0.05, momentum=0.9),
    "adam": lambda: Adam(1e-2),
}
DTYPES = ("float64", "float32")


def synthetic(be, n=N_ROWS, d=N_FEATURES, seed=1):
    """Separable-ish Gaussian classes, identical on every rank (host draws)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    X = rng.standard_normal((n, d)) + 1.5 * np.eye(N_CLASSES, d)[y]
    return be.asarray(X), be.asarray(y, dtype=be.index_dtype)


def train_case(backend, dtype, optimizer, distributed):
    """One training run of the parity matrix; returns (model, history, X_eval, y_eval)."""
    be = xpnet.get_backend(backend, dtype=dtype)
    X, y = synthetic(be)
    Xv, yv = synthetic(be, n=PREDICT_ROWS, seed=2)
    model = xpnet.Sequential.mlp(SIZES, init="he_normal", seed=0, backend=be)
    history = model.fit(X, y, epochs=EPOCHS, batch_size=GLOBAL_BATCH, seed=SEED,
                        optimizer=OPTIMIZERS[optimizer](), validation_data=(Xv, yv),
                        distributed=distributed, check_every=2)
    return model, history, Xv, yv


def case_result(model, history, Xv, yv, distributed):
    """Parameters, predictions and scores of a trained case, as host arrays."""
    be = model.backend
    out = {f"param{i}": be.to_numpy(getattr(layer, n))
           for i, (layer, n) in enumerate((layer, n) for layer in model.layers
                                          for n in layer.param_names)}
    out["predict"] = be.to_numpy(model.predict(Xv, batch_size=PREDICT_BLOCK,
                                               distributed=distributed))
    scores = model.evaluate(Xv, yv, batch_size=PREDICT_BLOCK, distributed=distributed)
    out["scores"] = np.array([scores["loss"], scores["accuracy"]])
    out["history"] = np.array(json.dumps(history.history))
    return out


def run_parity(comm, out_dir, pairs):
    for pair in pairs.split(","):
        backend, dtype = pair.split(":")
        for optimizer in OPTIMIZERS:
            trained = train_case(backend, dtype, optimizer, comm)
            result = case_result(*trained, comm)
            if comm.is_root:
                np.savez(Path(out_dir) / f"{backend}_{dtype}_{optimizer}.npz", **result)


class _FailingForward:
    """Wraps a layer's forward so that it raises at its ``step``-th call."""

    def __init__(self, forward, step):
        self.forward, self.step, self.calls = forward, step, 0

    def __call__(self, x):
        self.calls += 1
        if self.calls == self.step:
            raise RuntimeError(f"rank 1 fails at step {self.step}")
        return self.forward(x)


def run_raise(comm, step):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = synthetic(be, n=4096)
    model = xpnet.Sequential.mlp(SIZES, seed=0, backend=be)
    if comm.rank == 1:
        model.layers[0]._forward = _FailingForward(model.layers[0]._forward, int(step))
    model.fit(X, y, epochs=50, batch_size=8 * comm.size, distributed=comm)
    raise AssertionError("training went on after rank 1 failed")


class _EpochSpy(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        raise AssertionError("an epoch started although the ranks disagree")


def X_backend(X):
    return xpnet.get_backend("numpy", dtype=str(X.dtype))


def expect_refused(comm, kind, text, X, y, batch_size):
    model = xpnet.Sequential.mlp([X.shape[1], 8, N_CLASSES], seed=0, backend=X_backend(X))
    try:
        model.fit(X, y, epochs=1, batch_size=batch_size, callbacks=[_EpochSpy()],
                  distributed=comm)
    except kind as exc:
        assert text in str(exc), exc
        assert raised_on_every_rank(exc), f"not marked as raised on every rank: {exc!r}"
        print(f"REFUSED {comm.rank}: {type(exc).__name__}: {exc}", flush=True)
        return
    raise AssertionError(f"fit accepted batch_size={batch_size}, X {X.shape}")


def run_refuse(comm):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = synthetic(be, n=N_ROWS + (comm.rank == 1))  # rank 1 has one row more
    expect_refused(comm, DistributedError, "different data sizes or shapes", X, y, 16)
    X, y = synthetic(be, d=N_FEATURES + (comm.rank == 1))  # rank 1 has another width
    expect_refused(comm, DistributedError, "different data sizes or shapes", X, y, 16)
    X, y = synthetic(be)
    expect_refused(comm, ValueError, f"not divisible by the {comm.size} ranks", X, y,
                   2 * comm.size + 1)
    Xo, yo = synthetic(be, seed=1 + comm.rank)  # same shapes, other values
    expect_refused(comm, DistributedError, "different training data", Xo, yo, 16)


def main(mode, *args):
    comm = init(require_mpi=True)
    assert comm.size > 1, "start me with mpiexec -n N (N >= 2)"
    if mode == "parity":
        run_parity(comm, *args)
    elif mode == "raise":
        run_raise(comm, *args)
    elif mode == "refuse":
        run_refuse(comm)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(f"OK {comm.rank}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
