"""What backups cost: ``fit`` on MNIST with and without ``backup_dir``, interleaved.

``python -m benchmarks.backup_cost`` trains the seed MLP (784-100-200-10,
batch 32, xpnet on NumPy float32) for ``--epochs`` epochs on MNIST, three
ways in turn, ``--repeats`` times: no backups, ``backup_every="epoch"``
(the default) and ``backup_every=--steps`` steps. Each figure is the wall time
of the whole ``fit`` divided by its epochs (backups are written between
epochs, outside the epoch's own clock), median over the repeats; the ratios
are to no backups. Nothing is asserted: the figures go to
``benchmarks/results/backup.md``. ``--rows`` trains on fewer rows (a smoke run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def fit_seconds_per_epoch(X, y, epochs: int, backup_dir, every) -> float:
    """Wall time of one ``fit`` over ``epochs``, per epoch (the model is built outside the clock)."""
    import xpnet

    model = xpnet.Sequential.mlp([784, 100, 200, 10], backend="numpy", seed=0)
    kwargs = {} if backup_dir is None else {"backup_dir": backup_dir, "backup_every": every}
    t0 = time.perf_counter()
    model.fit(X, y, epochs=epochs, batch_size=32, train_accuracy=False, **kwargs)
    return (time.perf_counter() - t0) / epochs


def backup_file_bytes(X, y) -> int:
    """Size of one backup of the seed MLP trained with the seed's SGD."""
    import xpnet

    directory = tempfile.mkdtemp()
    model = xpnet.Sequential.mlp([784, 100, 200, 10], backend="numpy", seed=0)
    backup = xpnet.BackupAndRestore(directory, delete_checkpoint=False)
    model.fit(X[:64], y[:64], epochs=2, batch_size=32, callbacks=[backup])
    return os.path.getsize(backup.last_backup)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=500, help="backup_every for the step variant")
    parser.add_argument("--rows", type=int, default=None, help="train on the first ROWS rows")
    args = parser.parse_args(argv)

    import xpnet
    from xpnet.datasets import load_mnist

    X, y = load_mnist(backend=xpnet.get_backend("numpy", dtype="float32"))[:2]
    if args.rows:
        X, y = X[:args.rows], y[:args.rows]
    ways = {"no backups": (None, None), 'backup_every="epoch"': ("dir", "epoch"),
            f"backup_every={args.steps}": ("dir", args.steps)}
    times: dict = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, (where, every) in ways.items():
            directory = None if where is None else tempfile.mkdtemp()
            times[name].append(fit_seconds_per_epoch(X, y, args.epochs, directory, every))
    base = statistics.median(times["no backups"])
    print(f"seed MLP on {X.shape[0]} MNIST rows, batch 32, numpy float32, {args.epochs} epochs "
          f"per fit, median of {args.repeats} interleaved; backup file "
          f"{backup_file_bytes(X, y) / 1e6:.2f} MB")
    print("| how | s / epoch | ratio to no backups |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {median / base:.3f} |")


if __name__ == "__main__":
    main()
