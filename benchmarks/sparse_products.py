"""Sparse products against dense blocks on NumPy: where ``SPARSE_PRODUCT_MAX_DENSITY`` sits.

``python -m benchmarks.sparse_products`` fits ``xpnet.sklearn.MLPClassifier``
on random CSR matrices of several densities twice: with scipy's sparse
products (each batch a CSR slice) and with every batch densified (what other
backends do), interleaved, the median of ``--repeats`` fits each. Each fit is
``--epochs`` adam epochs (default batch size) then ``predict_proba`` on all
rows; ``--solver lbfgs`` times lbfgs iterations instead. xpnet uses sparse
products up to ``xpnet.feeds.sparse.SPARSE_PRODUCT_MAX_DENSITY`` (10%); the
ratio column shows where they stop paying. No timing is asserted anywhere
(figures go to ``benchmarks/results/sparse_products.md``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np

DENSITIES = (0.001, 0.01, 0.05, 0.1, 0.2, 0.4)


def timed_fit(X, y, sparse_products: bool, args) -> float:
    """Seconds of one fit + predict_proba, with sparse products on or off."""
    import xpnet.feeds.sparse as feeds_sparse
    from xpnet.sklearn import MLPClassifier

    saved = feeds_sparse.SPARSE_PRODUCT_MAX_DENSITY
    feeds_sparse.SPARSE_PRODUCT_MAX_DENSITY = 1.0 if sparse_products else -1.0
    try:
        est = MLPClassifier(hidden_layer_sizes=(args.hidden,), solver=args.solver,
                            max_iter=args.epochs, random_state=0)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning after a few epochs
            est.fit(X, y).predict_proba(X)
        return time.perf_counter() - t0
    finally:
        feeds_sparse.SPARSE_PRODUCT_MAX_DENSITY = saved


def row(density: float, args) -> dict:
    """Medians of interleaved fits at one density."""
    from scipy import sparse

    X = sparse.random(args.rows, args.features, density=density, format="csr",
                      random_state=0, dtype=np.float64)
    y = np.random.default_rng(0).integers(0, 3, args.rows)
    runs: dict = {True: [], False: []}
    for _ in range(args.repeats):
        for on in (True, False):
            runs[on].append(timed_fit(X, y, on, args))
    sp, de = statistics.median(runs[True]), statistics.median(runs[False])
    return {"density": density, "sparse_s": sp, "dense_s": de, "ratio": sp / de}


def render(rows: list, args) -> str:
    lines = [f"{args.rows} x {args.features} CSR, float64, {args.solver} {args.epochs} "
             f"{'epochs' if args.solver != 'lbfgs' else 'iterations'}, hidden {args.hidden}, "
             f"median of {args.repeats}; load average {os.getloadavg()[0]:.2f}", "",
             "| density | sparse products s | dense blocks s | sparse / dense |",
             "|---:|---:|---:|---:|"]
    lines += [f"| {r['density']:g} | {r['sparse_s']:.3f} | {r['dense_s']:.3f} | "
              f"{r['ratio']:.2f} |" for r in rows]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=4000)
    p.add_argument("--features", type=int, default=2000)
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--solver", choices=("adam", "sgd", "lbfgs"), default="adam")
    p.add_argument("--epochs", type=int, default=2, help="epochs (lbfgs: iterations) per fit")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--densities", default=",".join(map(str, DENSITIES)))
    p.add_argument("--quick", action="store_true", help="a tiny run (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.features, args.repeats, args.epochs = 300, 200, 1, 1
    args.densities = [float(d) for d in args.densities.split(",")]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = [row(d, args) for d in args.densities]
    print(render(rows, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
