"""Memory of a full training run, measured in a fresh child process.

``python -m benchmarks.memory --contender xpnet-numpy --dtype float32`` loads
the data, builds the seed MLP and trains it the way the default MNIST run does
(batch 32, train and validation accuracy after every epoch), recording the
process's resident set size (psutil) after each epoch and its peak (the
kernel's high-water mark, ``VmHWM``; ``ru_maxrss`` where there is no /proc)
at the end. It prints one JSON object on stdout.

``benchmarks.mlp --memory`` runs this for each contender and tabulates it.
A fresh process per contender keeps the numbers independent of whatever the
harness itself allocated.

Contenders: ``xpnet-<backend>`` (numpy, torch, jax, cupy, array_api_strict),
``numpy-handwritten`` and ``torch-idiomatic``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

MiB = 1024 * 1024


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _peak_rss() -> int:
    """Peak RSS of this process in bytes.

    Linux: ``VmHWM`` from /proc/self/status, the high-water mark of this
    program's own address space. ``ru_maxrss`` is not used there because
    Linux carries it across ``fork``/``exec``: a child started by a parent
    holding 1 GiB would report 1 GiB. Elsewhere ``ru_maxrss`` (bytes on
    macOS, KiB on other systems).
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def run(contender: str, dtype: str = "float32", epochs: int = 25, batch_size: int = 32,
        device: str = "cpu", data: str = "auto", quick: bool = False, seed: int = 0) -> dict:
    """Train once and return the RSS record (bytes) as a dict."""
    import numpy as np

    from .workload import SIZES, load_data

    rss = {"start": _rss()}
    ds = load_data(data, quick=quick, with_validation=True)
    source, n_train = ds["source"], int(ds["X"].shape[0])
    X, y, Xv, yv = (ds.pop(k) for k in ("X", "y", "X_val", "y_val"))
    X = X.astype(dtype, copy=False)
    Xv = Xv.astype(dtype, copy=False)
    rss["data_loaded"] = _rss()
    rng = np.random.default_rng(seed)
    per_epoch = []
    seconds = []
    val_acc = []

    if contender.startswith("xpnet-"):
        import xpnet

        name = contender[len("xpnet-"):]
        be = xpnet.get_backend(name, device=None if name == "numpy" else device, dtype=dtype)
        if name == "numpy":  # host arrays are NumPy-backend arrays already: no second copy
            Xd, yd, Xvd, yvd = X, y, Xv, yv
        else:
            Xd, yd = be.asarray(X), be.asarray(y, dtype=be.index_dtype)
            Xvd, yvd = be.asarray(Xv), be.asarray(yv, dtype=be.index_dtype)
        del X, Xv  # the host copies are no longer needed (unless they are Xd/Xvd)
        model = xpnet.Sequential.mlp(SIZES, backend=be, seed=seed)
        rss["model_built"] = _rss()

        class _Record(xpnet.Callback):
            def on_epoch_end(self, epoch, logs=None):
                per_epoch.append(_rss())
                seconds.append(logs.get("seconds"))
                val_acc.append(logs.get("val_accuracy"))

        model.fit(Xd, yd, epochs=epochs, batch_size=batch_size, seed=rng,
                  validation_data=(Xvd, yvd), train_accuracy=True, callbacks=[_Record()])
    elif contender == "numpy-handwritten":
        from . import handwritten_numpy as hw

        network = hw.build_mlp(SIZES, seed=seed, dtype=dtype)
        rss["model_built"] = _rss()
        for _ in range(epochs):
            t0 = time.perf_counter()
            hw.train_epoch(network, X, y, batch_size, rng)
            seconds.append(time.perf_counter() - t0)
            np.mean(hw.predict(network, X) == y)  # train accuracy, as the tutorial logs it
            val_acc.append(float(np.mean(hw.predict(network, Xv) == yv)))
            per_epoch.append(_rss())
    elif contender == "torch-idiomatic":
        from .torch_idiomatic import TorchMLP

        mlp = TorchMLP(SIZES, seed=seed, dtype=dtype, device=device)
        Xd, yd = mlp.tensor(X), mlp.tensor(y, labels=True)
        Xvd, yvd = mlp.tensor(Xv), mlp.tensor(yv, labels=True)
        del X, Xv
        rss["model_built"] = _rss()
        for _ in range(epochs):
            t0 = time.perf_counter()
            mlp.train_epoch(Xd, yd, batch_size, rng)
            mlp.synchronize()
            seconds.append(time.perf_counter() - t0)
            float((mlp.predict(Xd) == yd).double().mean())
            val_acc.append(float((mlp.predict(Xvd) == yvd).double().mean()))
            per_epoch.append(_rss())
    else:
        raise SystemExit(f"unknown contender {contender!r}")

    growth = per_epoch[-1] - per_epoch[0] if per_epoch else 0
    # Least-squares slope over epochs 2.. (the first epoch may still allocate caches).
    tail = per_epoch[1:]
    slope = 0.0
    if len(tail) >= 2:
        k = len(tail)
        xs = list(range(k))
        mx, my = sum(xs) / k, sum(tail) / k
        slope = sum((a - mx) * (b - my) for a, b in zip(xs, tail)) / sum((a - mx) ** 2 for a in xs)
    return {
        "contender": contender,
        "dtype": dtype,
        "device": device,
        "epochs": epochs,
        "batch_size": batch_size,
        "data": source,
        "n_train": n_train,
        "rss_bytes": rss,
        "rss_after_epoch_bytes": per_epoch,
        "peak_rss_bytes": _peak_rss(),
        "growth_after_first_epoch_bytes": growth,
        "slope_bytes_per_epoch": slope,
        "epoch_seconds": seconds,
        "val_acc": val_acc,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--contender", required=True)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default="auto", choices=("auto", "mnist", "random"))
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="limit BLAS/OpenMP pools and torch to N threads")
    args = p.parse_args(argv)
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        if args.contender.startswith(("torch", "xpnet-torch")):
            import torch

            torch.set_num_threads(args.threads)
    result = run(args.contender, dtype=args.dtype, epochs=args.epochs,
                 batch_size=args.batch_size, device=args.device, data=args.data,
                 quick=args.quick)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
