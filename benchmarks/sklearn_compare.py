"""xpnet.sklearn vs scikit-learn's own MLP: accuracy under 5-fold CV, and fit time per epoch.

Run ``python -m benchmarks.sklearn_compare`` (``--help`` for the flags). Four parts:

* **scores**: ``make_pipeline(StandardScaler(), MLP...)`` with the *same*
  hyperparameters for both libraries, 5-fold cross-validation (stratified for
  classification) on scikit-learn's bundled digits, wine, breast_cancer
  (accuracy) and diabetes (R^2, targets standardised for both). The issue's bar:
  xpnet's mean score >= scikit-learn's mean minus one standard deviation.
* **small data**: the fits scikit-learn's user guide recommends lbfgs for:
  ``cross_val_score`` (5 folds) of ``make_pipeline(StandardScaler(), MLPClassifier())``
  on digits with ``solver="adam"`` and ``solver="lbfgs"``, default batch size
  and scikit-learn's defaults otherwise, xpnet (NumPy, float64) against
  scikit-learn, interleaved, the median of ``--repeats`` runs. The bar: lbfgs
  no slower than scikit-learn's.
* **evals**: the lbfgs objective alone (loss and gradient at the points scipy
  visits on the first fold), one BLAS thread, both libraries interleaved.
* **speed**: fit time per epoch on MNIST (784-100-200-10, ``solver="sgd"``,
  ``batch_size=32``, float32 data) for each of ``--backends``, and a NumPy floor
  (:func:`numpy_floor`), the median of ``--repeats`` fits of
  ``--epochs`` epochs each, the two libraries interleaved so that drift of a
  busy machine hits both alike. The bar: xpnet <= 0.5x scikit-learn.

Timings mean something only on an otherwise idle machine. ``--quick`` is a
smoke run (few rows, 2 folds, 1 epoch) that checks the harness, not the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings

os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np

#: Hyperparameters shared by both libraries in the score part (scikit-learn's defaults
#: except max_iter, which keeps the run short).
SCORE_PARAMS = dict(hidden_layer_sizes=(100,), solver="adam", max_iter=200, random_state=0)
SPEED_PARAMS = dict(hidden_layer_sizes=(100, 200), solver="sgd", batch_size=32,
                    learning_rate_init=0.01, random_state=0, tol=0.0, n_iter_no_change=10**9)
DATASETS = ("digits", "wine", "breast_cancer", "diabetes")
SMALL_SOLVERS = ("adam", "lbfgs")


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def load_dataset(name: str):
    """(X, y, is_classification) for one of scikit-learn's bundled datasets."""
    from sklearn import datasets

    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    return X, y, name != "diabetes"


def make_estimator(library: str, classification: bool, params: dict, backend=None):
    """The pipeline for one library: scaler + MLP (+ standardised targets for regression)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if library == "sklearn":
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        extra = {}
    else:
        from xpnet.sklearn import MLPClassifier, MLPRegressor
        extra = {"backend": backend} if backend else {}
    if classification:
        return make_pipeline(StandardScaler(), MLPClassifier(**params, **extra))
    return TransformedTargetRegressor(make_pipeline(StandardScaler(), MLPRegressor(**params, **extra)),
                                      transformer=StandardScaler())


def score_table(args) -> list:
    """Mean and standard deviation of the CV score of both libraries on each dataset."""
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    params = dict(SCORE_PARAMS, max_iter=args.max_iter)
    rows = []
    for name in args.datasets:
        X, y, classification = load_dataset(name)
        if args.quick:
            X, y = X[:120], y[:120]
        cv_cls = StratifiedKFold if classification else KFold
        cv = cv_cls(n_splits=args.folds, shuffle=True, random_state=0)
        row = {"dataset": name, "metric": "accuracy" if classification else "r2",
               "n_samples": int(X.shape[0])}
        for library in ("sklearn", "xpnet"):
            est = make_estimator(library, classification, params, args.backends[0])
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter, as usual
                scores = cross_val_score(est, X, y, cv=cv)
            row[library] = {"mean": float(scores.mean()), "std": float(scores.std()),
                            "seconds": time.perf_counter() - t0}
        row["ok"] = row["xpnet"]["mean"] >= row["sklearn"]["mean"] - row["sklearn"]["std"]
        log(f"{name}: sklearn {row['sklearn']['mean']:.4f} +- {row['sklearn']['std']:.4f}, "
            f"xpnet {row['xpnet']['mean']:.4f} +- {row['xpnet']['std']:.4f}")
        rows.append(row)
    return rows


def _timed_cv(library: str, solver: str, X, y, cv, max_iter: int) -> tuple:
    """(seconds, mean score) of one 5-fold cross_val_score of the digits pipeline."""
    from sklearn.model_selection import cross_val_score

    est = make_estimator(library, True, dict(solver=solver, max_iter=max_iter, random_state=0))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter, as usual
        scores = cross_val_score(est, X, y, cv=cv)
    return time.perf_counter() - t0, float(scores.mean())


def small_data_table(args) -> dict:
    """Digits, 5-fold CV, adam and lbfgs: seconds of both libraries, interleaved."""
    from sklearn.model_selection import StratifiedKFold

    X, y, _ = load_dataset("digits")
    if args.quick:
        X, y = X[:200], y[:200]
    cv = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=0)
    runs: dict = {(s, lib): [] for s in args.solvers for lib in ("sklearn", "xpnet")}
    scores: dict = {}
    with _blas_limit(args.blas_threads):
        for _ in range(args.repeats):
            for solver in args.solvers:
                for library in ("sklearn", "xpnet"):
                    seconds, scores[(solver, library)] = _timed_cv(library, solver, X, y, cv,
                                                                   args.max_iter)
                    runs[(solver, library)].append(seconds)
    rows = {}
    for solver in args.solvers:
        sk = statistics.median(runs[(solver, "sklearn")])
        xp = statistics.median(runs[(solver, "xpnet")])
        rows[solver] = {"sklearn_seconds": sk, "xpnet_seconds": xp, "ratio": xp / sk,
                        "sklearn_score": scores[(solver, "sklearn")],
                        "xpnet_score": scores[(solver, "xpnet")],
                        "all": {lib: runs[(solver, lib)] for lib in ("sklearn", "xpnet")}}
        log(f"digits {solver}: sklearn {sk:.2f} s, xpnet {xp:.2f} s ({xp / sk:.2f}x), "
            f"accuracy {rows[solver]['sklearn_score']:.4f} / {rows[solver]['xpnet_score']:.4f}")
    return {"folds": args.folds, "repeats": args.repeats, "rows": rows,
            "blas_threads": args.blas_threads,
            "ok": rows["lbfgs"]["ratio"] <= 1.0 if "lbfgs" in rows else None}


def _blas_limit(threads):
    """threadpoolctl's BLAS limit for ``--blas-threads``; nothing (the default) for None."""
    if threads is None:
        import contextlib

        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads, user_api="blas")


def _captured_objective(make, X, y, n_points: int) -> tuple:
    """``(fun, args, points)``: the objective one lbfgs fit hands scipy, and the first
    ``n_points`` parameter vectors scipy evaluated it at (both libraries call
    ``scipy.optimize.minimize``, which is wrapped for the fit)."""
    import scipy.optimize

    real, got = scipy.optimize.minimize, {"points": []}

    def recording(fun, x0, args=(), **kwargs):
        def fun_recorded(x, *a):
            if len(got["points"]) < n_points:
                got["points"].append(np.array(x))
            return fun(x, *a)

        got.update(fun=fun, args=args)
        return real(fun_recorded, x0, args=args, **kwargs)

    scipy.optimize.minimize = recording
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make().fit(X, y)
    finally:
        scipy.optimize.minimize = real
    return got["fun"], got["args"], got["points"]


def lbfgs_eval_table(args) -> dict:
    """Microseconds per lbfgs loss-and-gradient evaluation, one BLAS thread: scikit-learn's
    ``_loss_grad_lbfgs`` against xpnet's objective on digits (the first CV fold's training
    rows, standardised, float64), at the same points, interleaved; the best round of
    ``--repeats`` x 3 rounds (each round every point 3 times)."""
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neural_network import MLPClassifier as SkMLP
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    from xpnet.sklearn import MLPClassifier as XpMLP

    X, y, _ = load_dataset("digits")
    if args.quick:
        X, y = X[:200], y[:200]
    train = next(iter(StratifiedKFold(n_splits=args.folds, shuffle=True,
                                      random_state=0).split(X, y)))[0]
    X, y = StandardScaler().fit_transform(X[train]), y[train]
    params = dict(solver="lbfgs", max_iter=args.max_iter, random_state=0)
    n_points = 5 if args.quick else 40
    with threadpool_limits(limits=1, user_api="blas"):
        objectives = {"sklearn": _captured_objective(lambda: SkMLP(**params), X, y, n_points),
                      "xpnet": _captured_objective(lambda: XpMLP(**params), X, y, n_points)}
        points = objectives["sklearn"][2]
        rel = max(abs(objectives["xpnet"][0](x, *objectives["xpnet"][1])[0]
                      / objectives["sklearn"][0](x, *objectives["sklearn"][1])[0] - 1.0)
                  for x in points)
        best = {name: float("inf") for name in objectives}
        for _ in range(3 * args.repeats):
            for name, (fun, fun_args, _) in objectives.items():  # interleaved
                t0 = time.perf_counter()
                for _ in range(3):
                    for x in points:
                        fun(x, *fun_args)
                best[name] = min(best[name], (time.perf_counter() - t0) / (3 * len(points)))
    out = {"rows": int(X.shape[0]), "points": len(points), "max_loss_rel_diff": rel,
           "sklearn_us": best["sklearn"] * 1e6, "xpnet_us": best["xpnet"] * 1e6,
           "ratio": best["xpnet"] / best["sklearn"]}
    log(f"lbfgs evaluation, 1 BLAS thread: sklearn {out['sklearn_us']:.0f} us, xpnet "
        f"{out['xpnet_us']:.0f} us ({out['ratio']:.2f}x), losses agree to {rel:.1e}")
    return out


def mnist(quick: bool):
    from benchmarks.mlp import load_data

    data = load_data("auto", quick=quick)
    return data["X"].astype(np.float32), data["y"], data["source"]


def numpy_floor(X, epochs: int, seed: int = 0) -> float:
    """Seconds per epoch of the least any NumPy version of the timed fit must do.

    Per batch of 32: the row gather, the step's eight matrix products and the
    in place momentum + L2 update of every weight (xpnet's NumPy kernel, no
    temporaries); no biases, activations, loss or Python layers. (The output
    gradient is that of a small squared norm of the outputs, so the numbers
    stay tame.) If this
    exceeds half of scikit-learn's time, no NumPy implementation meets 0.5x
    on that machine.
    """
    import xpnet

    be = xpnet.get_backend("numpy", dtype="float32")
    rng = np.random.default_rng(seed)
    sizes = (X.shape[1], 100, 200, 10)
    Ws = [rng.standard_normal((a, b), dtype=np.float32) * np.float32(a ** -0.5)
          for a, b in zip(sizes, sizes[1:])]
    Vs = [np.zeros_like(w) for w in Ws]
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(X.shape[0])
        for lo in range(0, X.shape[0] - 31, 32):
            acts = [X.take(order[lo:lo + 32], axis=0)]
            for w in Ws:
                acts.append(acts[-1] @ w)
            g = acts[-1] * np.float32(1e-4)
            for i in (2, 1, 0):
                grad_w = acts[i].T @ g
                if i:
                    g = g @ Ws[i].T
                Ws[i], Vs[i] = be.momentum_step_(Ws[i], Vs[i], grad_w, lr=0.01, momentum=0.9,
                                                 nesterov=True, decay=1e-4 / 32)
    return (time.perf_counter() - t0) / epochs


def speed_table(args) -> dict:
    """Seconds per epoch of ``fit`` on MNIST for each contender (median of the repeats)."""
    from sklearn.neural_network import MLPClassifier as SkMLP

    from xpnet.sklearn import MLPClassifier as XpMLP

    X, y, source = mnist(args.quick)
    params = dict(SPEED_PARAMS, max_iter=args.epochs)
    contenders = {"sklearn": lambda: SkMLP(**params)}
    for name in args.backends:
        contenders[f"xpnet-{name}"] = lambda name=name: XpMLP(**params, backend=name,
                                                              dtype="float32")
    per_epoch: dict = {name: [] for name in [*contenders, "numpy floor"]}
    for _ in range(args.repeats):
        for name, make in contenders.items():  # interleaved
            est = make()
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est.fit(X, y)
            per_epoch[name].append((time.perf_counter() - t0) / est.n_iter_)
        per_epoch["numpy floor"].append(numpy_floor(X, args.epochs))
    seconds = {k: statistics.median(v) for k, v in per_epoch.items()}
    ratios = {k: v / seconds["sklearn"] for k, v in seconds.items()}
    out = {"source": source, "epochs": args.epochs, "repeats": args.repeats,
           "seconds_per_epoch": seconds, "ratio": ratios,
           "ok": {k: r <= 0.5 for k, r in ratios.items() if k.startswith("xpnet")},
           "all": per_epoch}
    log("MNIST sgd batch 32, s/epoch: " + ", ".join(
        f"{k} {seconds[k]:.3f} ({ratios[k]:.2f}x)" for k in seconds))
    return out


def render(result) -> str:
    lines = []
    if result.get("scores"):
        lines += ["| dataset | metric | scikit-learn | xpnet | xpnet >= sklearn - 1 sd |",
                  "|---|---|---|---|---|"]
    for r in result.get("scores", []):
        sk, xp = r["sklearn"], r["xpnet"]
        lines.append(f"| {r['dataset']} | {r['metric']} | {sk['mean']:.4f} +- {sk['std']:.4f} | "
                     f"{xp['mean']:.4f} +- {xp['std']:.4f} | {'yes' if r['ok'] else 'NO'} |")
    small = result.get("small")
    if small:
        threads = "" if small.get("blas_threads") is None else f", {small['blas_threads']} BLAS thread(s)"
        lines += ["", f"| digits, {small['folds']}-fold cross_val_score{threads} | scikit-learn s | "
                  "xpnet s | ratio | accuracy sklearn / xpnet |", "|---|---:|---:|---:|---|"]
        for solver, r in small["rows"].items():
            lines.append(f"| {solver} | {r['sklearn_seconds']:.2f} | {r['xpnet_seconds']:.2f} | "
                         f"{r['ratio']:.2f} | {r['sklearn_score']:.4f} / "
                         f"{r['xpnet_score']:.4f} |")
    evals = result.get("evals")
    if evals:
        lines += ["", f"lbfgs loss-and-gradient evaluation, 1 BLAS thread ({evals['rows']} rows, "
                  f"{evals['points']} points): scikit-learn {evals['sklearn_us']:.0f} us, xpnet "
                  f"{evals['xpnet_us']:.0f} us, ratio {evals['ratio']:.2f}"]
    speed = result.get("speed")
    if speed:
        s, r = speed["seconds_per_epoch"], speed["ratio"]
        lines += ["", "| MNIST 784-100-200-10, sgd, batch 32, float32 | s / epoch | x scikit-learn "
                  "| target <= 0.5x |", "|---|---:|---:|---|"]
        for name in s:
            met = {True: "yes", False: "NO"}.get(speed["ok"].get(name), "")
            lines.append(f"| {name} | {s[name]:.3f} | {r[name]:.2f} | {met} |")
        lines += ["", f"Data: {speed['source']}"]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: few rows, 2 folds, 1 epoch")
    p.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--max-iter", type=int, default=SCORE_PARAMS["max_iter"])
    p.add_argument("--epochs", type=int, default=3, help="epochs per timed MNIST fit")
    p.add_argument("--repeats", type=int, default=3, help="timed fits per library")
    p.add_argument("--backends", default="numpy,jax",
                   help="comma-separated xpnet backends to time (default numpy,jax)")
    p.add_argument("--no-scores", action="store_true", help="skip the cross-validation part")
    p.add_argument("--no-small", action="store_true", help="skip the digits adam/lbfgs part")
    p.add_argument("--no-speed", action="store_true", help="skip the MNIST timing part")
    p.add_argument("--solvers", default=",".join(SMALL_SOLVERS),
                   help="comma-separated solvers of the small-data part (default adam,lbfgs)")
    p.add_argument("--blas-threads", type=int, default=None,
                   help="BLAS threads for the small-data part (default: the libraries' own)")
    p.add_argument("--no-evals", action="store_true",
                   help="skip the single-thread timing of the lbfgs evaluations")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    args.solvers = [s for s in args.solvers.split(",") if s]
    unknown = set(args.solvers) - set(SMALL_SOLVERS)
    if unknown:
        p.error(f"--solvers: unknown {sorted(unknown)}, choose from {list(SMALL_SOLVERS)}")
    if args.quick:
        args.folds, args.max_iter, args.epochs, args.repeats = 2, 5, 1, 1
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    result = {"args": vars(args)}
    if not args.no_scores:
        result["scores"] = score_table(args)
    if not args.no_small:
        result["small"] = small_data_table(args)
    if not args.no_evals:
        result["evals"] = lbfgs_eval_table(args)
    if not args.no_speed:
        result["speed"] = speed_table(args)
    print(render(result))
    if args.json:
        from xpnet._io import atomic_write

        with atomic_write(args.json, "w") as fh:  # never a half-written file
            json.dump(result, fh, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
