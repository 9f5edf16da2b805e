"""Data-parallel fit with other losses, sample/class weights, the validation split and
the L2 penalty, run on every rank of ``mpiexec -n N python -m mpi4py weights.py MODE [ARGS]``.

Started by tests/test_distributed_weights.py, which compares what rank 0 writes
with single-process runs of the same cases (:func:`train_case`). Each rank
prints ``OK <rank>`` when it is done.

Modes
-----
parity OUT BACKENDS   for each backend of the comma-separated BACKENDS and each
                      case of CASES, train in float64 with distributed=comm; rank 0
                      saves parameters, history, predictions and weighted scores to
                      OUT/<backend>_<case>.npz. Every rank's history must be the
                      same (EarlyStopping decides on it).
refuse OUT            bad weights and disagreeing options: each must fail on every
                      rank, before any epoch; each rank writes its errors
                      (label -> "Type: message") to OUT/refused<rank>.json
both OUT BACKENDS     parity, then refuse, in one job
"""

import json
import sys
from pathlib import Path

import numpy as np

import xpnet
from xpnet.callbacks import Callback, EarlyStopping
from xpnet.distributed import DistributedError, init
from xpnet.optimizers import SGD, Adam

N_ROWS, N_FEATURES = 192, 12
GLOBAL_BATCH, SEED = 32, 5
EVAL_BLOCK = 40  # 2 and 4 ranks get unequal (or no) rows of the 150 scored


def _host_data(n=N_ROWS, seed=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    X = rng.standard_normal((n, N_FEATURES)) + 1.5 * np.eye(4, N_FEATURES)[labels]
    weights = rng.uniform(0.0, 3.0, n)
    weights[:40] = 0.0  # the first global batch weighs nothing, the next one in part
    return X, labels, weights


def _targets(loss, labels):
    """Targets of each loss from the same labels (a learnable signal for every loss)."""
    if loss == "softmax_crossentropy":
        return labels
    if loss == "mse":
        return np.stack([labels / 3.0, (labels % 2) - 0.5], axis=1)
    if loss == "bce3":
        return np.stack([labels == 0, labels % 2 == 1, labels >= 2], axis=1).astype(float)
    return (labels % 2 == 1).astype(float)  # "bce1": one binary output


def data(be, loss, n=N_ROWS, seed=1):
    """``X``, targets and sample weights of the model's backend, the same on every rank."""
    X, labels, weights = _host_data(n, seed)
    y = _targets(loss, labels)
    y = be.asarray(y, dtype=be.index_dtype) if y.dtype.kind == "i" else be.asarray(y)
    return be.asarray(X), y, be.asarray(weights)


#: case -> (loss, outputs, fit options, optimizer factory, epochs, shuffle, early stopping)
CASES = {
    "xent": ("softmax_crossentropy", 4,
             dict(sample_weight=True, class_weight="balanced", alpha=1e-2,
                  validation_split=0.25), lambda: Adam(1e-2), 3, True, False),
    "xent_seed_sgd": ("softmax_crossentropy", 4, dict(class_weight={0: 2.0, 3: 0.5}, alpha=0.1),
                      lambda: None, 3, True, False),
    "mse": ("mse", 2, dict(sample_weight=True, alpha=1e-2, validation_split=0.2),
            lambda: SGD(0.02, momentum=0.5), 3, False, False),
    "bce3": ("bce3", 3, dict(sample_weight=True, validation_split=0.25), lambda: SGD(0.1),
             3, True, False),
    "bce1": ("bce1", 1, dict(class_weight="balanced", alpha=1e-2), lambda: Adam(1e-2), 3, True,
             False),
    "early": ("mse", 2, dict(sample_weight=True, validation_split=0.25), lambda: Adam(3e-2), 12,
              True, True),
}


def _loss_name(loss):
    return "binary_crossentropy" if loss.startswith("bce") else loss


def train_case(backend, case, distributed, dtype="float64"):
    """One case trained with ``distributed`` (None: one process); returns its results on the host."""
    loss, outputs, options, optimizer, epochs, shuffle, early = CASES[case]
    be = xpnet.get_backend(backend, dtype=dtype)
    X, y, w = data(be, loss)
    options = dict(options, sample_weight=w if options.get("sample_weight") else None)
    model = xpnet.Sequential.mlp([N_FEATURES, 16, outputs], init="he_normal", seed=0,
                                 backend=be, loss=_loss_name(loss))
    callbacks = [EarlyStopping("val_loss", patience=1, min_delta=2e-3)] if early else []
    history = model.fit(X, y, epochs=epochs, batch_size=GLOBAL_BATCH, seed=SEED,
                        shuffle=shuffle, optimizer=optimizer(), callbacks=callbacks,
                        distributed=distributed, check_every=2, **options)
    Xe, ye, we = data(be, loss, n=150, seed=2)
    out = {f"param{i}": be.to_numpy(p) for i, p in enumerate(
        getattr(layer, n) for layer in model.layers for n in layer.param_names)}
    out["predict"] = be.to_numpy(model.predict(Xe, batch_size=EVAL_BLOCK, distributed=distributed))
    for name, weights in (("scores", None), ("weighted_scores", we)):
        scores = model.evaluate(Xe, ye, batch_size=EVAL_BLOCK, sample_weight=weights,
                                distributed=distributed)
        out[name] = np.array([scores["loss"], scores.get("accuracy", np.nan)])
    logs = {k: v for k, v in history.history.items() if k != "seconds"}  # timings differ
    out["history"] = np.array(json.dumps(logs))
    return out


def run_parity(comm, out_dir, backends):
    for backend in backends.split(","):
        for case in CASES:
            result = train_case(backend, case, comm)
            history = str(result["history"])
            comm.check_same(history, f"histories of {backend} {case}")  # equal on every rank
            if comm.is_root:
                np.savez(Path(out_dir) / f"{backend}_{case}.npz", **result)


# -- bad inputs ---------------------------------------------------------------------

class _EpochSpy(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        raise AssertionError("an epoch started although the inputs are bad")


def _refusal(label, kinds, text, call):
    """``call()`` must raise one of ``kinds`` whose message holds ``text[type]``; returns it."""
    try:
        call()
    except kinds as exc:
        wanted = text[type(exc).__name__] if isinstance(text, dict) else text
        assert wanted in str(exc), (label, exc)
        return f"{type(exc).__name__}: {exc}"
    raise AssertionError(f"{label} was accepted")


def _fit(comm, w, **options):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y, _ = data(be, "softmax_crossentropy")
    model = xpnet.Sequential.mlp([N_FEATURES, 8, 4], seed=0, backend=be)
    return lambda: model.fit(X, y, epochs=1, batch_size=GLOBAL_BATCH, sample_weight=w,
                             callbacks=[_EpochSpy()], distributed=comm, **options)


def _evaluate(comm, w):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y, _ = data(be, "softmax_crossentropy")
    model = xpnet.Sequential.mlp([N_FEATURES, 8, 4], seed=0, backend=be)
    return lambda: model.evaluate(X, y, sample_weight=w, distributed=comm)


def run_refuse(comm, out_dir):
    be = xpnet.get_backend("numpy", dtype="float64")
    _, _, host_w = _host_data()
    other = host_w.copy()
    other[7] += comm.rank  # rank 1 weighs one row differently
    one_bad = host_w.copy()
    one_bad[3] = -1.0 if comm.rank == 1 else 1.0
    nan = host_w.copy()
    nan[5] = np.nan
    another_rank = {"ValueError": "must be >= 0",
                    "DistributedError": "another rank failed while checking the sample weights"}
    checks = [
        ("fit-weights-differ", DistributedError, "different sample weights",
         _fit(comm, be.asarray(other))),
        ("fit-length-differs", DistributedError, "different data sizes or shapes",
         _fit(comm, be.asarray(host_w[:N_ROWS - comm.rank]))),
        ("fit-length-wrong", ValueError, f"sample_weight must have shape ({N_ROWS},)",
         _fit(comm, be.asarray(host_w[:-1]))),
        ("fit-negative-on-one-rank", (ValueError, DistributedError), another_rank,
         _fit(comm, be.asarray(one_bad))),
        ("fit-nan", ValueError, "sample_weight contains NaN", _fit(comm, be.asarray(nan))),
        ("fit-class-weight-differs", DistributedError, "different settings or models",
         _fit(comm, None, class_weight={0: 1.0 + comm.rank})),
        ("fit-alpha-differs", DistributedError, "different settings or models",
         _fit(comm, None, alpha=0.1 * comm.rank)),
        ("fit-split-differs", DistributedError, "different settings or models",
         _fit(comm, None, validation_split=0.25 if comm.rank else 0.0)),
        ("evaluate-weights-differ", DistributedError, "different sample weights",
         _evaluate(comm, be.asarray(other))),
        ("evaluate-negative-on-one-rank", (ValueError, DistributedError), another_rank,
         _evaluate(comm, be.asarray(one_bad))),
    ]
    refused = {label: _refusal(label, kinds, text, call) for label, kinds, text, call in checks}
    # A file per rank: ranks' lines on the launcher's stdout may interleave.
    (Path(out_dir) / f"refused{comm.rank}.json").write_text(json.dumps(refused))


def main(mode, *args):
    comm = init(require_mpi=True)
    assert comm.size > 1, "start me with mpiexec -n N (N >= 2)"
    if mode in ("parity", "both"):
        run_parity(comm, *args)
    if mode in ("refuse", "both"):
        run_refuse(comm, args[0])
    if mode not in ("parity", "refuse", "both"):
        raise SystemExit(f"unknown mode {mode!r}")
    print(f"OK {comm.rank}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
