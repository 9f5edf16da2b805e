"""BLAS threads against the work per step: one thread vs all, idle and with the cores busy.

``python -m benchmarks.blas_threads`` times one epoch of the seed MLP
(784-100-200-10, xpnet on NumPy) on MNIST at batch 32, 256 and 4096, with
BLAS limited to one thread and with the library's default (all cores),
interleaved, median of ``--repeats`` runs; then the same with one CPU-bound
process per core running alongside (``--load``). ``--demo`` also times the
README's first command (``xpnet train``, 25 epochs) idle and loaded, with
xpnet's default choice (``XPNET_BLAS_THREADS=auto``) and with all threads.
Prints one line per measurement and the ratios; no timing is asserted
anywhere (figures go to ``benchmarks/results/blas_threads.md``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time

BATCHES = (32, 256, 4096)
BUSY_LOOP = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


@contextlib.contextmanager
def cores_busy(n: int, seconds: float):
    """``n`` CPU-bound processes running alongside (each stops by itself after ``seconds``)."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(seconds=seconds)])
             for _ in range(n)]
    try:
        time.sleep(0.5)  # let them start spinning
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


def epoch_seconds(batch: int, threads: int | None, rows: int) -> float:
    """One epoch of the seed MLP on the first ``rows`` MNIST images, BLAS limited to ``threads``."""
    import xpnet
    from xpnet.datasets import load_mnist

    be = xpnet.get_backend("numpy", dtype="float32")
    X, y = (a[:rows] for a in load_mnist(backend=be)[:2])
    model = xpnet.Sequential.mlp([784, 100, 200, 10], backend=be, seed=0)
    t0 = time.perf_counter()
    model.fit(X, y, epochs=1, batch_size=batch, train_accuracy=False,
              blas_threads=threads or os.cpu_count())
    return time.perf_counter() - t0


def measure(rows: int, repeats: int, label: str) -> dict:
    """Median epoch time per (batch, threads), the two thread counts interleaved."""
    times: dict = {}
    for _ in range(repeats):
        for batch in BATCHES:
            for threads in (1, None):
                times.setdefault((batch, threads), []).append(epoch_seconds(batch, threads, rows))
    medians = {key: statistics.median(values) for key, values in times.items()}
    for batch in BATCHES:
        one, every = medians[(batch, 1)], medians[(batch, None)]
        print(f"{label:6s} batch {batch:5d}: 1 thread {one:7.3f} s, all threads {every:7.3f} s, "
              f"all/1 = {every / one:5.2f}")
    return medians


def demo_seconds(env_threads: str) -> float:
    """Training time printed by ``xpnet train`` (25 epochs) with ``XPNET_BLAS_THREADS``."""
    env = {**os.environ, "XPNET_BLAS_THREADS": env_threads}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xpnet", "train", "--quiet"], env=env, check=True,
                   timeout=1800, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", action="store_true", help="also measure with the cores busy")
    parser.add_argument("--demo", action="store_true", help="also time `xpnet train` (25 epochs)")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    print(f"{cores} cores; one epoch of 784-100-200-10 on {args.rows} MNIST rows, xpnet numpy float32")
    measure(args.rows, args.repeats, "idle")
    if args.load:
        with cores_busy(cores, seconds=3600):
            measure(args.rows, args.repeats, "loaded")
    if args.demo:
        for label, busy in (("idle", 0), ("loaded", 1)):
            with cores_busy(busy, seconds=3600):
                auto, every = demo_seconds("auto"), demo_seconds(str(cores))
            print(f"demo {label:6s}: auto {auto:6.1f} s, all threads {every:6.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
