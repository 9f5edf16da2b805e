"""NumPy fast paths against their portable twins, in whole training epochs.

Run ``python -m benchmarks.numpy_blas`` (``--help`` for the flags). It trains
two copies of the seed MLP (784-100-200-10) on MNIST with xpnet's NumPy
backend, interleaved epoch by epoch in one process: one as it is, and one
where the fast paths named by ``--hooks`` are their portable twins. By
default that is ``NumpyBackend.sub_matmul_`` (``w -= x.T @ g`` as one
``cblas_?gemm`` call with ``beta=1`` into NumPy's bundled BLAS; its twin makes
a temporary and subtracts it); ``--hooks softmax_crossentropy`` times the
in-place loss kernel instead. It prints seconds per epoch (median and every
epoch), the ratio, and the largest difference between the two models' weights
at the end (0 when the fast path rounds as its twin does).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

import xpnet
from xpnet.backends import Backend
from xpnet.backends.numpy import bundled_gemm

from .workload import SIZES, load_data


def twin_backend(dtype: str, hooks=("sub_matmul_",)) -> Backend:
    """A NumPy backend whose ``hooks`` are the portable twins (not registered, not shared)."""
    be = xpnet.get_backend("numpy", dtype=dtype)
    twin = object.__new__(type(be))
    twin.__dict__.update(be.__dict__)
    for hook in hooks:
        portable = getattr(Backend, hook)
        setattr(twin, hook, lambda *args, _f=portable: _f(twin, *args))
    return twin


def run(X: np.ndarray, y: np.ndarray, dtype: str, batch_size: int, epochs: int,
        hooks=("sub_matmul_",)) -> dict:
    """Interleaved epochs of both models; ``{name: [seconds, ...]}`` plus the weight difference."""
    models = {}
    for name, be in (("fast", xpnet.get_backend("numpy", dtype=dtype)),
                     ("twin", twin_backend(dtype, hooks))):
        model = xpnet.Sequential.mlp(SIZES, seed=0, backend=be)
        models[name] = (model, np.random.default_rng(0))
    times: dict = {name: [] for name in models}
    Xd = X.astype(dtype)
    for epoch in range(epochs + 1):  # epoch 0 warms up and is not kept
        order = list(models) if epoch % 2 else list(models)[::-1]
        for name in order:
            model, rng = models[name]
            h = model.fit(Xd, y, epochs=1, batch_size=batch_size, seed=rng, train_accuracy=False)
            if epoch:
                times[name].append(h["seconds"][-1])  # the epoch as fit times it
    diff = max(float(np.max(np.abs(a.weights - b.weights)))
               for a, b in zip(models["fast"][0].layers, models["twin"][0].layers)
               if "weights" in a.param_names)
    return {"times": times, "max_weight_diff": diff}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--batch-sizes", default="32,256")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--hooks", default="sub_matmul_",
                   help="the fast paths the twin model replaces, comma separated")
    p.add_argument("--quick", action="store_true", help="a few thousand rows: a smoke run")
    args = p.parse_args(argv)
    hooks = tuple(h.strip() for h in args.hooks.split(",") if h.strip())
    if "sub_matmul_" in hooks and bundled_gemm() is None:
        print("this NumPy has no bundled scipy-openblas (or XPNET_NUMPY_BLAS=0): nothing to compare")
        return
    data = load_data("auto", quick=args.quick)
    print(f"data: {data['source']}, {data['X'].shape[0]} rows; numpy {np.__version__}; "
          f"twins of: {', '.join(hooks)}")
    print("| dtype | batch | fast s/epoch | twin s/epoch | fast / twin | max weight diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for dtype in args.dtypes.split(","):
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            r = run(data["X"], data["y"], dtype, batch_size, args.epochs, hooks)
            med = {k: statistics.median(v) for k, v in r["times"].items()}
            print(f"| {dtype} | {batch_size} | {med['fast']:.3f} | {med['twin']:.3f} | "
                  f"{med['fast'] / med['twin']:.2f} | {r['max_weight_diff']:.1e} |", flush=True)
            for k, v in r["times"].items():
                print(f"  {k}: " + " ".join(f"{t:.3f}" for t in v), flush=True)


if __name__ == "__main__":
    main()
