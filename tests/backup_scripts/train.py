"""One training run of a kill-test configuration, started by tests/test_backup_kill.py.

``python train.py CONFIG OUT [--backup DIR] [--every N|epoch] [--kill K] [--callback]``

Builds the seeded model and data of ``CONFIG`` (see :data:`CONFIGS`) and trains
it, with ``fit(..., backup_dir=DIR, backup_every=...)`` when ``--backup`` is
given (``--callback``: an explicit ``xpnet.BackupAndRestore`` instead, whose
``restored_from`` is printed). ``xpnet.backup.after_step_hook`` records every
call and, with ``--kill K``, SIGKILLs this process at the first call whose
global step ``epoch * steps_per_epoch + steps`` is at least ``K`` (compiled JAX
epochs call it once per epoch, so there the kill comes at the end of the epoch
holding ``K``). The first call prints ``FIRST <global step> <restored_from>``.

A run that completes writes ``OUT/params.npz`` (every parameter, host arrays)
and ``OUT/result.json``: the History without ``seconds`` (wall time), the
steps per epoch, the hook calls and whether a compiled epoch was used.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

import xpnet
import xpnet.backup
from xpnet.layers import Dense, Dropout, ReLU
from xpnet.optimizers import SGD, Adam, get_schedule

N_ROWS, N_FEATURES, N_CLASSES, BATCH = 256, 8, 3, 16
STEPS_PER_EPOCH = N_ROWS // BATCH
#: 64 rows a chunk (float64 features and an int64 label a row): an epoch of the memmap runs
#: as 4 chunks of 4 steps, so backups every 5 steps land at every place in a chunk.
CHUNK_BYTES = 64 * (N_FEATURES * 8 + 8)

#: name -> settings. kind: "arrays", "memmap" or "batches"; every: backup_every.
CONFIGS = {
    "numpy": dict(backend="numpy", dtype="float64", kind="arrays", epochs=3, every=3),
    "torch": dict(backend="torch", dtype="float32", kind="arrays", epochs=3, every=4,
                  optimizer="momentum"),
    "jax": dict(backend="jax", dtype="float64", kind="arrays", epochs=6, every=4),
    "memmap": dict(backend="numpy", dtype="float64", kind="memmap", epochs=3, every=5,
                   optimizer="momentum"),
    "adam_epoch": dict(backend="numpy", dtype="float64", kind="arrays", epochs=4,
                       every="epoch", adam=True, stop=None),
    "adam_steps": dict(backend="numpy", dtype="float64", kind="arrays", epochs=8, every=5,
                       adam=True, stop="loss"),
    "batches": dict(backend="numpy", dtype="float64", kind="batches", epochs=3, every=3),
}


def data(seed=1, n=N_ROWS):
    """Separable-ish Gaussian classes (host float64 features, int64 labels)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    X = rng.standard_normal((n, N_FEATURES)) + 1.5 * np.eye(N_CLASSES, N_FEATURES)[y]
    return X, y


def build(cfg):
    """``(model, fit keyword arguments)`` of the configuration, all seeded."""
    be = xpnet.get_backend(cfg["backend"], dtype=cfg["dtype"])
    X, y = data()
    kwargs = dict(epochs=cfg["epochs"], batch_size=BATCH, seed=7)
    if cfg.get("adam"):
        rng = np.random.default_rng(0)
        model = xpnet.Sequential([Dense(N_FEATURES, 16, init="he_normal", rng=rng, backend=be),
                                  ReLU(backend=be), Dropout(0.25, rng=11, backend=be),
                                  Dense(16, N_CLASSES, init="he_normal", rng=rng, backend=be)],
                                 backend=be)
        adam = Adam(0.02)
        Xv, yv = data(seed=2, n=64)
        if cfg["stop"] is None:  # patience larger than the run: never stops
            stopping = xpnet.EarlyStopping(monitor="val_loss", patience=100)
        else:  # stops after two epochs that improve the loss by less than min_delta
            stopping = xpnet.EarlyStopping(monitor=cfg["stop"], patience=2, min_delta=0.03)
        kwargs.update(optimizer=adam, validation_data=(be.asarray(Xv),
                                                       be.asarray(yv, dtype=be.index_dtype)),
                      callbacks=[xpnet.LearningRateScheduler(
                          get_schedule("cosine", epochs=cfg["epochs"]), optimizer=adam),
                          stopping])
    else:
        model = xpnet.Sequential.mlp([N_FEATURES, 16, N_CLASSES], seed=0, backend=be)
        if cfg.get("optimizer") == "momentum":
            kwargs["optimizer"] = SGD(0.05, momentum=0.9)
    if cfg["kind"] == "arrays":
        inputs = (be.asarray(X), be.asarray(y, dtype=be.index_dtype))
    elif cfg["kind"] == "memmap":
        path = Path(os.environ["KILL_TEST_MEMMAP"])
        if not path.exists():  # the test writes it once; a standalone run writes it here
            np.asarray(X, dtype=np.float64).tofile(path)
        Xm = np.memmap(path, dtype=np.float64, mode="r", shape=(N_ROWS, N_FEATURES))
        inputs = (Xm, y)
        kwargs["chunk_bytes"] = CHUNK_BYTES
    else:  # a list of (X_batch, y_batch): a fixed order, replayed every epoch
        inputs = ([(be.asarray(X[i:i + BATCH]), be.asarray(y[i:i + BATCH],
                                                            dtype=be.index_dtype))
                   for i in range(0, N_ROWS, BATCH)], None)
    return model, inputs, kwargs


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("config", choices=sorted(CONFIGS))
    parser.add_argument("out")
    parser.add_argument("--backup")
    parser.add_argument("--every")
    parser.add_argument("--kill", type=int)
    parser.add_argument("--callback", action="store_true")
    args = parser.parse_args(argv)
    cfg = CONFIGS[args.config]
    model, (X, y), kwargs = build(cfg)
    every = cfg["every"] if args.every is None else args.every
    every = every if every == "epoch" else int(every)
    backup = None
    if args.backup and args.callback:
        backup = xpnet.BackupAndRestore(args.backup, save_freq=every)
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), backup]
    elif args.backup:
        kwargs.update(backup_dir=args.backup, backup_every=every)
    calls = []

    def hook(epoch, steps):
        step = epoch * STEPS_PER_EPOCH + steps
        if not calls:
            restored = None if backup is None else backup.restored_from
            print(f"FIRST {step} {restored}", flush=True)
        calls.append([epoch, steps])
        if args.kill is not None and step >= args.kill:
            print(f"KILL {step}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    xpnet.backup.after_step_hook = hook
    history = model.fit(X, y, **kwargs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    be = model.backend
    np.savez(out / "params.npz", **{f"layer{i}.{name}": be.to_numpy(getattr(layer, name))
                                    for i, layer in enumerate(model.layers)
                                    for name in layer.param_names})
    steps_cache = model.train_steps
    result = {
        "history": {k: v for k, v in history.history.items() if k != "seconds"},
        "steps_per_epoch": STEPS_PER_EPOCH, "epochs": cfg["epochs"], "hook_calls": calls,
        "compiled_epoch": any(isinstance(k, tuple) and k and k[0] == "epoch"
                              for k in steps_cache),
        "restored_from": None if backup is None else str(backup.restored_from),
    }
    (out / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
