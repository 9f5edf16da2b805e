"""Issue 15: the CUDA-graph training step (CuPy) against the portable step, per batch size.

    python ci/gpu/graph_step_bench.py OUT.json [batch sizes, default 32 256 4096]

Seed MLP (784-100-200-10), float32, random data of MNIST's shape; one warm-up
epoch, then the best of 3 epochs for each step, interleaved. Prints a table and
writes the figures (and whether the recorded step was used) as JSON.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

import xpnet
from xpnet.losses import one_hot
from xpnet.training import portable_train_step

SIZES, ROWS = (784, 100, 200, 10), 50_000


def epoch_seconds(be, step, X, onehot, order, batch) -> float:
    be.synchronize()
    t0 = time.perf_counter()
    total = be.zeros(())
    for lo in range(0, ROWS - batch + 1, batch):
        total = total + step(X, onehot, order[lo:lo + batch])
    float(total)
    return time.perf_counter() - t0


def main(out_path: str, batches: list) -> None:
    be = xpnet.get_backend("cupy", dtype="float32")
    rng = np.random.default_rng(0)
    X = be.asarray(rng.random((ROWS, SIZES[0]), dtype=np.float32))
    onehot = one_hot(be.asarray(rng.integers(0, 10, ROWS), dtype=be.index_dtype), 10, dtype=be.dtype)
    order = be.asarray(rng.permutation(ROWS), dtype=be.index_dtype)
    rows = []
    for batch in batches:
        steps = {}
        for kind in ("portable", "cuda graph"):
            model = xpnet.Sequential.mlp(list(SIZES), seed=0, backend=be)
            step = portable_train_step(be, model.layers, 0)
            if kind == "cuda graph":
                step = be.capture_step(step, lambda m=model: [p for layer in m for p in layer.params.values()])
            steps[kind] = step
        times = {k: [] for k in steps}
        for rep in range(4):
            for kind, step in steps.items():
                t = epoch_seconds(be, step, X, onehot, order, batch)
                if rep:
                    times[kind].append(t)
        row = {"batch": batch, **{k: min(v) for k, v in times.items()},
               "graph_reason": getattr(steps["cuda graph"], "reason", "")}
        rows.append(row)
        print(f"batch {batch:5d}: portable {row['portable']:.3f} s, cuda graph "
              f"{row['cuda graph']:.3f} s ({row['portable'] / row['cuda graph']:.2f}x) "
              f"{row['graph_reason']}", flush=True)
    with open(out_path, "w") as fh:
        json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], [int(b) for b in sys.argv[2:]] or [32, 256, 4096])
