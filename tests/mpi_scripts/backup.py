"""Data-parallel fit with backups, run on every rank of
``mpiexec -n N python -m mpi4py backup.py OUT [--backup DIR] [--kill K]``.

Started by tests/test_backup_kill.py. Every rank trains the same seeded model
on the same data with ``distributed=xpnet.distributed.init()`` and, with
``--backup``, ``backup_dir=DIR, backup_every=EVERY`` steps. With ``--kill K``
rank 1 (only) SIGKILLs itself after global step ``K`` (``epoch *
steps_per_epoch + step``, from ``xpnet.backup.after_step_hook``); the launcher
then ends the job. Each rank prints ``FIRST <rank> <global step>`` at its
first hook call, and ``OK <rank>`` when done; rank 0 writes the parameters to
``OUT/params.npz`` and the History without ``seconds`` to ``OUT/history.json``.
"""

import argparse
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

import xpnet
import xpnet.backup
from xpnet.distributed import init
from xpnet.optimizers import SGD

N_ROWS, N_FEATURES, N_CLASSES = 256, 8, 3
GLOBAL_BATCH, EPOCHS, EVERY = 16, 3, 5
STEPS_PER_EPOCH = N_ROWS // GLOBAL_BATCH


def main(argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--backup")
    parser.add_argument("--kill", type=int)
    args = parser.parse_args(argv)
    comm = init(require_mpi=True)
    assert comm.size > 1, "start me with mpiexec -n N (N >= 2)"
    be = xpnet.get_backend("numpy", dtype="float64")
    rng = np.random.default_rng(1)
    y = rng.integers(0, N_CLASSES, N_ROWS)
    X = rng.standard_normal((N_ROWS, N_FEATURES)) + 1.5 * np.eye(N_CLASSES, N_FEATURES)[y]
    model = xpnet.Sequential.mlp([N_FEATURES, 16, N_CLASSES], seed=0, backend=be)
    seen = []

    def hook(epoch, steps):
        step = epoch * STEPS_PER_EPOCH + steps
        if not seen:
            print(f"FIRST {comm.rank} {step}", flush=True)
        seen.append(step)
        if comm.rank == 1 and args.kill is not None and step >= args.kill:
            print(f"KILL {comm.rank} {step}", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    xpnet.backup.after_step_hook = hook
    backup = {} if args.backup is None else {"backup_dir": args.backup, "backup_every": EVERY}
    history = model.fit(be.asarray(X), be.asarray(y, dtype=be.index_dtype), epochs=EPOCHS,
                        batch_size=GLOBAL_BATCH, seed=7, optimizer=SGD(0.05, momentum=0.9),
                        distributed=comm, **backup)
    if comm.is_root:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "params.npz", **{f"layer{i}.{name}": be.to_numpy(getattr(layer, name))
                                        for i, layer in enumerate(model.layers)
                                        for name in layer.param_names})
        (out / "history.json").write_text(json.dumps(
            {k: v for k, v in history.history.items() if k != "seconds"}))
    print(f"OK {comm.rank}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
