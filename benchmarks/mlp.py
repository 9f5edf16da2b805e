"""Benchmark of the seed MLP (784-100-200-10): xpnet vs hand-written NumPy vs PyTorch.

Run ``python -m benchmarks.mlp`` (``--help`` for the flags). In one process it
times, interleaved so that drift of a busy machine hits every contender alike:

* one training epoch (median of ``--epochs`` epochs after one warm-up) at each
  batch size, for xpnet on every available backend and dtype, the hand-written
  NumPy reference (:mod:`benchmarks.handwritten_numpy`), idiomatic PyTorch
  (:mod:`benchmarks.torch_idiomatic`) on the same device, and a "GEMMs only"
  NumPy loop (just the eight matrix products a training step needs, into
  preallocated outputs: what no Python implementation on this BLAS can beat);
* prediction over the whole training set;
* a matmul ceiling (a large square product) per library and dtype;

and prints each figure's ratio to the hand-written NumPy float32 baseline and
to PyTorch (same dtype, batch size and run), achieved GFLOP/s, the fraction
of the ceiling, and the machine, BLAS and environment it ran on.

FLOP count (``epoch_flops``): for ``rows = (n // batch) * batch`` samples and
layer sizes ``a_i -> b_i``, with ``S = sum(a_i * b_i) = 100,400``::

    forward         2 * S * rows      (X @ W per layer)
    weight grads    2 * S * rows      (X^T @ G per layer)
    input grads     2 * S * rows      (G @ W^T per layer, the first one included,
                                       as the tutorial computes it)
    total           6 * S * rows      = 30.1 GFLOP at batch 32 (49,984 rows)

Bias adds, ReLU and softmax are O(rows * units) and ignored (< 0.5 %). Every
contender is credited the same nominal count, so GFLOP/s is just inverse time
on a common scale; implementations that skip the first layer's input gradient
(xpnet, PyTorch autograd, the GEMMs-only loop) do 26 % less arithmetic.
The *floor* is nominal FLOP / ceiling: the issue's 30.1 GFLOP / 240 GFLOP/s.
Prediction: ``2 * S * n`` FLOP.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

SIZES = (784, 100, 200, 10)
MACS_PER_ROW = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))  # 100,400
N_TRAIN = 50_000
QUICK_ROWS = 2048
ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "JAX_ENABLE_X64", "JAX_PLATFORMS",
            "XLA_FLAGS", "CUDA_VISIBLE_DEVICES")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# FLOPs
# ---------------------------------------------------------------------------

def epoch_flops(n_samples: int, batch_size: int) -> int:
    """Nominal FLOP of one training epoch: ``6 * S * rows`` (see the module docstring)."""
    rows = (n_samples // batch_size) * batch_size
    return 6 * MACS_PER_ROW * rows


def predict_flops(n_samples: int) -> int:
    return 2 * MACS_PER_ROW * n_samples


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def load_data(data: str = "auto", *, quick: bool = False, with_validation: bool = False) -> dict:
    """Training data as host NumPy arrays (float32 images in [0, 1], int64 labels).

    ``data="auto"`` uses ``xpnet.datasets.load_mnist()`` when it works and falls
    back to random data of the same shape (saying why); ``--quick`` defaults to
    random data and keeps the first ``QUICK_ROWS`` rows.
    """
    source, reason = None, None
    if data == "auto" and quick:
        data = "random"
    if data in ("auto", "mnist"):
        try:
            from xpnet.datasets import load_mnist

            try:
                parts = load_mnist(flatten=True, dtype="float32")
            except TypeError:
                parts = load_mnist()
            X, y, Xv, yv = (np.asarray(p) for p in parts[:4])
            X = X.reshape(X.shape[0], -1).astype(np.float32, copy=False)
            Xv = Xv.reshape(Xv.shape[0], -1).astype(np.float32, copy=False)
            y, yv = y.astype(np.int64, copy=False), yv.astype(np.int64, copy=False)
            source = f"MNIST via xpnet.datasets.load_mnist ({X.shape[0]:,} training rows)"
        except Exception as exc:  # not written yet, no data files, ...
            if data == "mnist":
                raise
            reason = f"{type(exc).__name__}: {exc}"
    if source is None:
        rng = np.random.default_rng(1234)
        n = QUICK_ROWS if quick else N_TRAIN
        X = rng.random((n, SIZES[0]), dtype=np.float32)
        y = rng.integers(0, SIZES[-1], n).astype(np.int64)
        Xv = rng.random((min(n, 10_000), SIZES[0]), dtype=np.float32)
        yv = rng.integers(0, SIZES[-1], Xv.shape[0]).astype(np.int64)
        source = f"RANDOM data of MNIST's shape ({n:,} x {SIZES[0]})"
        if reason:
            source += f" -- MNIST unavailable ({reason})"
    if quick:
        X, y = X[:QUICK_ROWS], y[:QUICK_ROWS]
        Xv, yv = Xv[:QUICK_ROWS // 4], yv[:QUICK_ROWS // 4]
    out = {"X": np.ascontiguousarray(X), "y": np.ascontiguousarray(y), "source": source}
    if with_validation:
        out["X_val"], out["y_val"] = np.ascontiguousarray(Xv), np.ascontiguousarray(yv)
    return out


# ---------------------------------------------------------------------------
# Machine / library report
# ---------------------------------------------------------------------------

def _cpu_model() -> str:
    info = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if ":" in line:
                    k, v = (s.strip() for s in line.split(":", 1))
                    info.setdefault(k, v)
    except OSError:
        return platform.processor() or platform.machine()
    flags = info.get("flags", "").split()
    simd = [f for f in ("avx512f", "avx512_bf16", "avx2", "fma", "amx_tile") if f in flags]
    name = info.get("model name", platform.machine())
    fam = f"family {info.get('cpu family', '?')} model {info.get('model', '?')}"
    return f"{name} ({fam}; {' '.join(simd)})"


def _torch_blas(torch) -> str:
    try:
        cfg = torch.__config__.show()
    except Exception:
        return "?"
    keep = [part.strip() for line in cfg.splitlines() for part in line.split(",")
            if part.strip().startswith(("BLAS_INFO", "LAPACK_INFO"))]
    mkl = torch.backends.mkl.is_available()
    return ", ".join(keep + [f"mkl={mkl}", f"mkldnn={torch.backends.mkldnn.is_available()}"])


def machine_report(args, contenders_libs) -> dict:
    import psutil

    rep = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_start": [round(v, 2) for v in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": np.__version__,
        "env": {k: os.environ.get(k) for k in ENV_VARS},
        "threads_limit": args.threads,
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.mlp"] + sys.argv[1:]),
    }
    try:
        import xpnet

        rep["xpnet"] = xpnet.__version__
    except Exception:  # pragma: no cover
        pass
    try:
        from threadpoolctl import threadpool_info

        rep["threadpools"] = [
            {k: d.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                   "threading_layer")}
            | {"library": os.path.basename(d.get("filepath", ""))}
            for d in threadpool_info()
        ]
    except ImportError:
        rep["threadpools"] = "threadpoolctl not installed"
    if "torch" in contenders_libs:
        import torch

        rep["torch"] = torch.__version__
        rep["torch_threads"] = torch.get_num_threads()
        rep["torch_blas"] = _torch_blas(torch)
        if args.device == "cuda" and torch.cuda.is_available():
            rep["gpu"] = torch.cuda.get_device_name()
    if "jax" in contenders_libs:
        import jax

        rep["jax"] = jax.__version__
        rep["jax_devices"] = [str(d) for d in jax.devices()]
    if "cupy" in contenders_libs:
        import cupy

        rep["cupy"] = cupy.__version__
        try:
            props = cupy.cuda.runtime.getDeviceProperties(0)
            rep["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        except Exception:
            pass
    return rep


# ---------------------------------------------------------------------------
# Synchronisation and the matmul ceiling
# ---------------------------------------------------------------------------

def _block(lib: str, obj=None, device=None):
    """Wait until queued work is done (GPU queues, JAX's asynchronous dispatch)."""
    if lib == "jax":
        import jax

        if obj is not None:
            jax.block_until_ready(obj)
    elif lib == "torch":
        if device is not None and str(device).startswith("cuda"):
            import torch

            torch.cuda.synchronize()
    elif lib == "cupy":
        import cupy

        cupy.cuda.get_current_stream().synchronize()


def matmul_ceiling(lib: str, dtype: str, device: str, n: int, reps: int) -> float:
    """Best GFLOP/s of an ``n x n @ n x n`` product with ``lib`` (after one warm-up)."""
    host = np.random.default_rng(0).random((2, n, n)).astype(dtype)
    if lib == "numpy":
        a, b = host
        out = np.empty((n, n), dtype=dtype)
        fn = lambda: np.matmul(a, b, out=out)  # noqa: E731
    elif lib == "torch":
        import torch

        a, b = (torch.tensor(h, device=device) for h in host)
        fn = lambda: torch.mm(a, b)  # noqa: E731
    elif lib == "jax":
        import jax
        import jax.numpy as jnp

        dev = jax.devices("gpu" if device.startswith("cuda") else "cpu")[0]
        a, b = (jax.device_put(jnp.asarray(h), dev) for h in host)
        fn = lambda: jnp.matmul(a, b)  # noqa: E731
    elif lib == "cupy":
        import cupy

        a, b = (cupy.asarray(h) for h in host)
        fn = lambda: cupy.matmul(a, b)  # noqa: E731
    else:
        raise ValueError(lib)
    best = float("inf")
    for i in range(reps + 1):
        t0 = time.perf_counter()
        r = fn()
        _block(lib, r, device)
        dt = time.perf_counter() - t0
        if i:
            best = min(best, dt)
    return 2 * n**3 / best / 1e9


# ---------------------------------------------------------------------------
# Contenders
# ---------------------------------------------------------------------------

class Contender:
    """Something that can train one epoch and predict, timed by the harness.

    ``reset(batch_size)`` rebuilds the model from the seed init with a fresh
    batch-order generator, so every contender starts from the same weights
    and sees the same batches at each batch size.
    """

    kind = "?"
    lib = "numpy"  # whose matmul ceiling applies

    def __init__(self, label, dtype, device, data, epochs):
        self.label, self.dtype, self.device = label, dtype, device
        self.data = data
        self.epochs = epochs
        self.batch_size = None
        self.losses = []

    @property
    def key(self):
        return f"{self.label} {self.dtype}"

    def reset(self, batch_size):
        raise NotImplementedError

    def epoch(self) -> float:
        raise NotImplementedError

    def predict(self) -> float:
        raise NotImplementedError


class HandwrittenNumpy(Contender):
    kind = "handwritten"

    def reset(self, batch_size):
        from . import handwritten_numpy as hw

        self.hw = hw
        self.batch_size = batch_size
        self.net = hw.build_mlp(SIZES, seed=0, dtype=self.dtype)
        self.rng = np.random.default_rng(0)
        self.losses = []

    def epoch(self):
        X, y = self.data
        t0 = time.perf_counter()
        loss = self.hw.train_epoch(self.net, X, y, self.batch_size, self.rng)
        dt = time.perf_counter() - t0
        self.losses.append(loss)
        return dt

    def predict(self):
        X, _ = self.data
        t0 = time.perf_counter()
        self.hw.predict(self.net, X)
        return time.perf_counter() - t0


class GemmOnly(Contender):
    """The eight matrix products of a training step, nothing else (a floor)."""

    kind = "gemm"

    def reset(self, batch_size):
        self.batch_size = b = batch_size
        dt = self.dtype
        rng = np.random.default_rng(0)
        self.W = [(rng.standard_normal((a, c)) * 0.01).astype(dt)
                  for a, c in zip(SIZES[:-1], SIZES[1:])]
        self.H = [np.empty((b, c), dtype=dt) for c in SIZES[1:]]      # activations
        self.G = [np.empty((b, c), dtype=dt) for c in SIZES[1:-1]]    # input grads
        self.GW = [np.empty_like(w) for w in self.W]                  # weight grads
        self.losses = []

    def epoch(self):
        X, _ = self.data
        b = self.batch_size
        W, H, G, GW = self.W, self.H, self.G, self.GW
        mm = np.matmul
        t0 = time.perf_counter()
        for lo in range(0, X.shape[0] - b + 1, b):
            xb = X[lo:lo + b]
            mm(xb, W[0], out=H[0])
            mm(H[0], W[1], out=H[1])
            mm(H[1], W[2], out=H[2])
            mm(H[1].T, H[2], out=GW[2])
            mm(H[2], W[2].T, out=G[1])
            mm(H[0].T, G[1], out=GW[1])
            mm(G[1], W[1].T, out=G[0])
            mm(xb.T, G[0], out=GW[0])
        return time.perf_counter() - t0

    def predict(self):
        X, _ = self.data
        t0 = time.perf_counter()
        h = X
        for w in self.W:
            h = h @ w
        return time.perf_counter() - t0


class XpnetContender(Contender):
    kind = "xpnet"

    def __init__(self, label, dtype, device, data, epochs, backend):
        super().__init__(label, dtype, device, data, epochs)
        self.be = backend
        self.lib = {"array_api_strict": "numpy"}.get(backend.name, backend.name)

    def reset(self, batch_size):
        import xpnet

        self.batch_size = batch_size
        self.model = xpnet.Sequential.mlp(SIZES, backend=self.be, seed=0)
        self.rng = np.random.default_rng(0)
        self.losses = []
        self.call_seconds = []

    def _sync(self, obj=None):
        if self.be.name == "jax":
            obj = obj if obj is not None else [l.params for l in self.model.layers]
            _block("jax", obj)
        else:
            self.be.synchronize()

    def epoch(self):
        """The epoch as ``fit`` times it (``history["seconds"]``).

        ``fit``'s once-per-call work (argument and finite checks, one-hot
        encoding) is amortised over all epochs of a real run, so it is left
        out of the epoch figure and recorded separately (``call_seconds``).
        """
        X, y = self.data
        t0 = time.perf_counter()
        h = self.model.fit(X, y, epochs=1, batch_size=self.batch_size, seed=self.rng,
                           train_accuracy=False)
        self._sync()
        call = time.perf_counter() - t0
        self.losses.append(h["loss"][-1])
        self.call_seconds.append(call)
        return h["seconds"][-1]

    def predict(self):
        X, _ = self.data
        t0 = time.perf_counter()
        p = self.model.predict(X)
        self._sync(p)
        return time.perf_counter() - t0


class TorchIdiomatic(Contender):
    kind = "torch"
    lib = "torch"

    def reset(self, batch_size):
        from .torch_idiomatic import TorchMLP

        self.batch_size = batch_size
        self.mlp = TorchMLP(SIZES, seed=0, dtype=self.dtype, device=self.device)
        self.rng = np.random.default_rng(0)
        self.losses = []

    def epoch(self):
        X, y = self.data
        t0 = time.perf_counter()
        loss = self.mlp.train_epoch(X, y, self.batch_size, self.rng)
        self.mlp.synchronize()
        dt = time.perf_counter() - t0
        self.losses.append(loss)
        return dt

    def predict(self):
        X, _ = self.data
        t0 = time.perf_counter()
        self.mlp.predict(X)
        self.mlp.synchronize()
        return time.perf_counter() - t0


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def build_contenders(args, host) -> tuple[list, list]:
    """The contender objects and a list of notes on what was skipped and why."""
    import xpnet
    from xpnet.errors import XpnetError

    notes = []
    X32, y = host["X"], host["y"]
    cache = {}

    def device_data(name, device, dtype):
        key = (name, str(device), dtype)
        if key not in cache:
            be = xpnet.get_backend(name, device=device, dtype=dtype)
            Xh = X32 if dtype == "float32" else X32.astype(dtype)
            cache[key] = (be, be.asarray(Xh), be.asarray(y, dtype=be.index_dtype))
        return cache[key]

    out = []
    gpu = args.device == "cuda"
    for dt in args.dtypes:
        _, Xn, yn = device_data("numpy", None, dt)
        out.append(HandwrittenNumpy("numpy hand-written", dt, "cpu", (Xn, yn), args.epochs))
        if not args.no_gemm:
            out.append(GemmOnly("numpy GEMMs only", dt, "cpu", (Xn, yn), args.epochs))
        for name in args.backends:
            device = None if name in ("numpy", "array_api_strict") else (
                "cuda" if gpu else ("cpu" if name == "torch" else None))
            if name == "jax" and gpu:
                device = "cuda"
            try:
                be, Xd, yd = device_data(name, device, dt)
            except (XpnetError, ImportError) as exc:
                notes.append(f"xpnet {name} {dt}: skipped ({str(exc).splitlines()[0][:160]})")
                continue
            epochs = args.jax_epochs if (name == "jax" and args.jax_epochs) else args.epochs
            out.append(XpnetContender(f"xpnet {name}", dt, be.device_name, (Xd, yd), epochs, be))
        if not args.no_torch:
            if not _installed("torch"):
                notes.append("torch idiomatic: skipped (torch is not installed)")
                continue
            try:
                be, Xd, yd = device_data("torch", "cuda" if gpu else "cpu", dt)
            except XpnetError as exc:
                notes.append(f"torch idiomatic {dt}: skipped ({str(exc).splitlines()[0][:160]})")
                continue
            out.append(TorchIdiomatic("torch idiomatic", dt, be.device_name, (Xd, yd), args.epochs))
    return out, notes


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------

class CpuShare:
    """How much CPU *other* processes took while we were timing.

    Sums, over the timed calls, the machine's busy CPU time (psutil) minus
    this process's own (``os.times``); divided by wall time it is the
    average number of cores others used: the contention behind noisy figures.
    """

    def __init__(self):
        self.wall = self.others = self.steal = 0.0

    def __enter__(self):
        import psutil

        self._sys = psutil.cpu_times()
        self._own = os.times()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        import psutil

        wall = time.perf_counter() - self._t
        s0, s1 = self._sys, psutil.cpu_times()
        busy = sum(getattr(s1, f) - getattr(s0, f) for f in ("user", "system", "nice", "irq",
                                                            "softirq") if hasattr(s1, f))
        own = (os.times().user - self._own.user) + (os.times().system - self._own.system)
        self.wall += wall
        self.others += max(busy - own, 0.0)
        # Time the hypervisor gave to other virtual machines (Linux guests only).
        self.steal += max(getattr(s1, "steal", 0.0) - getattr(s0, "steal", 0.0), 0.0)

    @property
    def cores(self) -> float:
        return self.others / self.wall if self.wall else 0.0

    @property
    def steal_cores(self) -> float:
        return self.steal / self.wall if self.wall else 0.0


def _interleaved(contenders, reps_of, call, phase, share):
    """Run ``call(c)`` once per contender per repetition (rotating the order).

    Repetition 0 is the warm-up and is not kept; contender ``c`` takes part in
    repetitions ``0 .. reps_of(c)``. Returns ``{key: [seconds, ...]}``.
    """
    times = {c.key: [] for c in contenders}
    total = 1 + max(reps_of(c) for c in contenders)
    for rep in range(total):
        k = rep % len(contenders)
        gc.collect()  # once per round: a full collection can take 0.1 s with torch/jax loaded
        for c in contenders[k:] + contenders[:k]:
            if rep > reps_of(c):
                continue
            if rep:
                with share:
                    dt = call(c)
                times[c.key].append(dt)
            else:
                dt = call(c)
            log(f"  {phase} rep {rep}{' (warm-up)' if rep == 0 else ''}: "
                f"{c.key:<34} {dt:8.3f} s")
    return times


def _stats(ts):
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "times_s": ts}


def wait_for_idle(max_seconds: float, threshold: float = 0.25) -> float:
    """Wait (at most ``max_seconds``) until other processes use < ``threshold`` cores.

    Returns the cores in use at the last sample.
    """
    import psutil

    ncpu = psutil.cpu_count() or 1
    deadline = time.monotonic() + max_seconds
    while True:
        busy = psutil.cpu_percent(interval=2.0) / 100 * ncpu
        if busy < threshold or time.monotonic() >= deadline:
            return busy
        log(f"waiting for an idle machine: other processes use {busy:.2f} cores ...")


def run_all(args) -> dict:
    if args.wait_idle:
        busy = wait_for_idle(args.wait_idle)
        log(f"starting with {busy:.2f} cores busy")
    host = load_data(args.data, quick=args.quick)
    n = host["X"].shape[0]
    log(f"data: {host['source']}")
    contenders, notes = build_contenders(args, host)
    for note in notes:
        log(note)
    libs = sorted({c.lib for c in contenders} | {"numpy"})
    meta = machine_report(args, libs)
    meta["data"] = host["source"]
    meta["n_train"] = n
    meta["notes"] = notes

    # Matmul ceilings, before and after (the best of both is kept).
    ceil_n = 256 if args.quick else (8192 if args.device == "cuda" else 2048)
    ceil_reps = 1 if args.quick else 5
    pairs = sorted({(c.lib, c.dtype, "cpu" if c.lib == "numpy" else str(c.device))
                    for c in contenders})

    def measure_ceilings():
        out = {}
        for lib, dt, dev in pairs:
            try:
                out[(lib, dt, dev)] = matmul_ceiling(lib, dt, dev, ceil_n, ceil_reps)
            except Exception as exc:  # pragma: no cover - report, do not die
                log(f"ceiling {lib} {dt} {dev}: failed ({exc})")
        return out

    log(f"matmul ceiling ({ceil_n}x{ceil_n}, best of {ceil_reps}) ...")
    ceilings = measure_ceilings()

    train = []
    share = CpuShare()
    for bs in args.batch_sizes:
        if bs > n:
            notes.append(f"batch size {bs} skipped: larger than the {n} training rows")
            continue
        log(f"training, batch {bs} ({n // bs} steps per epoch):")
        for c in contenders:
            c.reset(bs)
        times = _interleaved(contenders, lambda c: c.epochs, lambda c: c.epoch(), f"bs {bs}",
                             share)
        flops = epoch_flops(n, bs)
        for c in contenders:
            rec = {"contender": c.label, "kind": c.kind, "lib": c.lib, "dtype": c.dtype,
                   "device": str(c.device), "batch_size": bs, "flop": flops,
                   "losses": [float(v) for v in c.losses]} | _stats(times[c.key])
            if c.kind == "xpnet":
                calls = c.call_seconds[-len(times[c.key]):]
                rec["fit_call_seconds"] = calls
                rec["fit_overhead_s"] = statistics.median(
                    [a - b for a, b in zip(calls, times[c.key])])
            train.append(rec)

    log("prediction over the whole training set:")
    ptimes = _interleaved(contenders, lambda c: c.epochs if c.lib != "jax" else max(c.epochs, 3),
                          lambda c: c.predict(), "predict", share)
    predict = [{"contender": c.label, "kind": c.kind, "lib": c.lib, "dtype": c.dtype,
                "device": str(c.device), "n": n, "flop": predict_flops(n)} | _stats(ptimes[c.key])
               for c in contenders]

    log("matmul ceiling again ...")
    for k, v in measure_ceilings().items():
        ceilings[k] = max(v, ceilings.get(k, 0.0))
    meta["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    meta["other_processes_cores"] = round(share.cores, 2)
    meta["steal_cores"] = round(share.steal_cores, 2)

    result = {"meta": meta,
              "ceilings": [{"lib": k[0], "dtype": k[1], "device": k[2], "n": ceil_n,
                            "gflops": v} for k, v in sorted(ceilings.items())],
              "train": train, "predict": predict}
    _derive(result, ceilings)
    if args.memory:
        result["memory"] = run_memory(args)
    result["targets"] = evaluate_targets(result)
    return result


def _derive(result, ceilings):
    """Ratios, GFLOP/s, % of ceiling and multiple of the floor, in place."""
    def ceiling_of(r):
        dev = "cpu" if r["lib"] == "numpy" else r["device"]
        return ceilings.get((r["lib"], r["dtype"], dev))

    for section, by_bs in (("train", True), ("predict", False)):
        rows = result[section]
        for r in rows:
            same = [o for o in rows if not by_bs or o["batch_size"] == r["batch_size"]]
            ref_np = next((o for o in same if o["kind"] == "handwritten"
                           and o["dtype"] == "float32"), None)
            ref_t = next((o for o in same if o["kind"] == "torch"
                          and o["dtype"] == r["dtype"]), None)
            t = r["median_s"]
            r["vs_handwritten_f32"] = t / ref_np["median_s"] if ref_np else None
            r["vs_torch"] = t / ref_t["median_s"] if ref_t else None
            r["gflops"] = r["flop"] / t / 1e9
            c = ceiling_of(r)
            r["ceiling_gflops"] = c
            r["pct_ceiling"] = 100 * r["gflops"] / c if c else None
            r["x_floor"] = t / (r["flop"] / (c * 1e9)) if c else None


# ---------------------------------------------------------------------------
# Memory (child processes)
# ---------------------------------------------------------------------------

def run_memory(args) -> list:
    """A full training run per contender in a fresh process; RSS per epoch and peak."""
    epochs = 2 if args.quick else args.memory_epochs
    todo = [("xpnet-numpy", "float32")]
    if not args.no_torch and _installed("torch"):
        todo.append(("torch-idiomatic", "float32"))
    todo.append(("numpy-handwritten", "float32"))
    out = []
    for contender, dt in todo:
        cmd = [sys.executable, "-m", "benchmarks.memory", "--contender", contender,
               "--dtype", dt, "--epochs", str(epochs), "--data", args.data,
               "--device", args.device]
        if args.quick:
            cmd.append("--quick")
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        log(f"memory: {contender} {dt}, {epochs} epochs in a child process ...")
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if proc.returncode:
            log(proc.stderr[-2000:])
            out.append({"contender": contender, "dtype": dt,
                        "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]})
            continue
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


# ---------------------------------------------------------------------------
# Targets of issue 4
# ---------------------------------------------------------------------------

def _find(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def evaluate_targets(result) -> list:
    """Issue 4's targets, each with its figure and whether this run meets it."""
    tr, pr = result["train"], result["predict"]
    out = []

    def add(name, figure, met):
        out.append({"target": name, "figure": figure, "met": met})

    x32 = _find(tr, contender="xpnet numpy", dtype="float32", batch_size=32)
    if x32:
        v = x32["vs_handwritten_f32"]
        add("xpnet numpy f32, batch 32: <= 1.0x hand-written NumPy f32",
            f"{x32['median_s']:.3f} s = {v:.2f}x" if v else "n/a", bool(v and v <= 1.0))
        v = x32["vs_torch"]
        add("xpnet numpy f32, batch 32: <= 0.75x PyTorch CPU idiomatic f32",
            f"{v:.2f}x" if v else "n/a", bool(v and v <= 0.75))
        v = x32["x_floor"]
        add("stretch: xpnet numpy f32, batch 32: <= 2x the arithmetic floor",
            f"{v:.2f}x floor (floor {x32['median_s'] / v:.3f} s)" if v else "n/a",
            bool(v and v <= 2.0))
    x256 = _find(tr, contender="xpnet numpy", dtype="float32", batch_size=256)
    if x256 and x256["x_floor"]:
        v = x256["x_floor"]
        add("stretch: xpnet numpy f32, batch 256: <= 1.3x the arithmetic floor",
            f"{x256['median_s']:.3f} s = {v:.2f}x floor", v <= 1.3)
    p = _find(pr, contender="xpnet numpy", dtype="float32")
    if p:
        v = p["vs_torch"]
        add("predict all rows, xpnet numpy f32: no slower than PyTorch CPU f32",
            f"{p['median_s']:.3f} s = {v:.2f}x torch" if v else "n/a", bool(v and v <= 1.0))
    for m in result.get("memory", []):
        if m.get("contender") == "xpnet-numpy" and "peak_rss_bytes" in m:
            growth = m["growth_after_first_epoch_bytes"] / 2**20
            slope = m["slope_bytes_per_epoch"] / 2**20
            add("training peak RSS reported, no per-epoch growth",
                f"peak {m['peak_rss_bytes'] / 2**20:.0f} MiB; growth epoch 1 -> {m['epochs']}: "
                f"{growth:+.1f} MiB ({slope:+.2f} MiB/epoch)",
                abs(growth) < 8 and abs(slope) < 0.5)
    return out


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def _fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def _table(headers, rows, markdown, align):
    if markdown:
        lines = ["| " + " | ".join(headers) + " |",
                 "|" + "|".join("---:" if a == "r" else ":---" for a in align) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(c.rjust(w) if a == "r" else c.ljust(w)  # noqa: E731
                                  for c, w, a in zip(cells, widths, align))
    return "\n".join([fmt(headers).rstrip(), "-" * (sum(w + 2 for w in widths) - 2)]
                     + [fmt(r).rstrip() for r in rows])


def render(result, markdown=False) -> str:
    meta = result["meta"]
    out = []
    h = "### " if markdown else ""
    out.append(f"{h}Machine")
    items = [("date", meta["date"]), ("cpu", meta["cpu"]),
             ("cores", f"{meta['cores_usable']} usable of {meta['cores_logical']}; "
                       f"{meta['memory_gib']} GiB RAM"),
             ("load average", f"{meta['loadavg_start']} at start, {meta.get('loadavg_end')} at end"),
             ("contention", f"other processes used {meta.get('other_processes_cores', 0):.2f} "
                            "cores on average during the timed calls; hypervisor steal "
                            f"{meta.get('steal_cores', 0):.2f} cores"),
             ("python / numpy", f"{meta['python']} / {meta['numpy']}"),
             ("xpnet", meta.get("xpnet"))]
    if "torch" in meta:
        items.append(("torch", f"{meta['torch']} ({meta['torch_threads']} threads; "
                               f"{meta['torch_blas']})"))
    if "jax" in meta:
        items.append(("jax", f"{meta['jax']} {meta['jax_devices']}"))
    if "cupy" in meta:
        items.append(("cupy", meta["cupy"]))
    if "gpu" in meta:
        items.append(("gpu", meta["gpu"]))
    tps = meta["threadpools"]
    if isinstance(tps, list):
        for tp in tps:
            desc = f"{tp['internal_api']} {tp.get('version') or ''}"
            if tp.get("architecture"):
                desc += f", kernel {tp['architecture']}"
            desc += f", {tp['num_threads']} threads ({tp['library']})"
            items.append(("threadpool", desc))
    else:
        items.append(("threadpool", tps))
    if meta.get("threads_limit"):
        items.append(("threads", f"limited to {meta['threads_limit']} by --threads"))
    env = ", ".join(f"{k}={v}" for k, v in meta["env"].items() if v is not None) or "(none set)"
    items.append(("environment", env))
    items.append(("data", meta["data"]))
    items.append(("command", meta["command"]))
    for note in meta.get("notes", []):
        items.append(("note", note))
    for k, v in items:
        out.append(f"- {k}: {v}" if markdown else f"  {k:<15} {v}")

    out.append("")
    out.append(f"{h}Matmul ceiling")
    rows = [[c["lib"], c["dtype"], c["device"], f"{c['n']}", f"{c['gflops']:.1f}"]
            for c in result["ceilings"]]
    out.append(_table(["library", "dtype", "device", "n", "GFLOP/s"], rows, markdown,
                      "lllrr"))

    heads = ["contender", "dtype", "device", "n", "median s", "min s", "x hand f32",
             "x torch", "GFLOP/s", "% ceil", "x floor"]
    batch_sizes = sorted({r["batch_size"] for r in result["train"]})
    for bs in batch_sizes:
        rows_ = [r for r in result["train"] if r["batch_size"] == bs]
        steps = result["meta"]["n_train"] // bs
        out.append("")
        out.append(f"{h}Training: one epoch, batch {bs} ({steps} steps, "
                   f"{rows_[0]['flop'] / 1e9:.1f} GFLOP nominal)")
        rows = [[r["contender"], r["dtype"], r["device"], str(len(r["times_s"])),
                 f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
                 _fmt(r["vs_handwritten_f32"], ".2f"), _fmt(r["vs_torch"], ".2f"),
                 f"{r['gflops']:.0f}", _fmt(r["pct_ceiling"], ".0f"), _fmt(r["x_floor"], ".2f")]
                for r in rows_]
        out.append(_table(heads + ["fit() s", "loss"],
                          [row + [_fmt(r.get("fit_overhead_s"), ".3f"),
                                  _fmt(r["losses"][0] if r["losses"] else None, ".4f")]
                           for row, r in zip(rows, rows_)],
                          markdown, "lllrrrrrrrrrr"))
    out.append("")
    out.append("(xpnet: the epoch as `fit` times it; `fit() s` is the per-call work around it -- "
               "argument and finite checks, one-hot -- paid once per `fit`, not per epoch. "
               "`loss`: mean loss of the warm-up epoch.)" if markdown else
               "  xpnet: epoch as fit times it; 'fit() s' = per-call overhead (checks, one-hot), "
               "paid once per fit. loss: warm-up epoch's mean loss.")
    out.append("")
    out.append(f"{h}Prediction: all {result['meta']['n_train']:,} training rows")
    rows = [[r["contender"], r["dtype"], r["device"], str(len(r["times_s"])),
             f"{r['median_s']:.3f}", f"{r['min_s']:.3f}",
             _fmt(r["vs_handwritten_f32"], ".2f"), _fmt(r["vs_torch"], ".2f"),
             f"{r['gflops']:.0f}", _fmt(r["pct_ceiling"], ".0f"), _fmt(r["x_floor"], ".2f")]
            for r in result["predict"]]
    out.append(_table(heads, rows, markdown, "lllrrrrrrrr"))

    if result.get("memory"):
        out.append("")
        out.append(f"{h}Memory: full training run in a fresh process (batch 32)")
        rows = []
        for m in result["memory"]:
            if "error" in m:
                rows.append([m["contender"], m["dtype"], "-", "-", "-", "-", "-",
                             f"error: {m['error']}"])
                continue
            per = m["rss_after_epoch_bytes"]
            rows.append([m["contender"], m["dtype"], str(m["epochs"]),
                         f"{m['rss_bytes']['data_loaded'] / 2**20:.0f}",
                         f"{per[0] / 2**20:.0f}", f"{per[-1] / 2**20:.0f}",
                         f"{m['peak_rss_bytes'] / 2**20:.0f}",
                         f"{m['slope_bytes_per_epoch'] / 2**20:+.2f}"])
        out.append(_table(["contender", "dtype", "epochs", "RSS data MiB", "RSS ep 1 MiB",
                           "RSS last MiB", "peak MiB", "MiB/epoch"], rows, markdown,
                          "llrrrrrr"))

    if result.get("targets"):
        out.append("")
        out.append(f"{h}Issue 4 targets (this run)")
        rows = [[("MET" if t["met"] else "missed"), t["target"], t["figure"]]
                for t in result["targets"]]
        out.append(_table(["", "target", "figure"], rows, markdown, "lll"))
    return "\n".join(out)


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def _default_backends(device: str) -> list:
    names = []
    for name in ("numpy", "torch", "jax", "cupy"):
        if name != "numpy" and not _installed(name):
            continue
        if name == "cupy":
            try:
                import cupy

                if cupy.cuda.runtime.getDeviceCount() < 1:
                    continue
            except Exception:
                continue
        names.append(name)
    return names


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.mlp",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--backends", help="xpnet backends, comma separated (numpy,torch,jax,cupy,"
                   "array_api_strict); default: every installed one with a device")
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--batch-sizes", help="default 32,256 (32,256,4096 with --device cuda)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up")
    p.add_argument("--jax-epochs", type=int, default=None,
                   help="timed epochs for xpnet jax (if it is slow); default --epochs")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK_ROWS} random rows, 1 timed epoch")
    p.add_argument("--data", default="auto", choices=("auto", "mnist", "random"))
    p.add_argument("--json", metavar="PATH", help="write every figure to PATH as JSON")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--memory", action="store_true",
                   help="also run full trainings in child processes and record their RSS")
    p.add_argument("--memory-epochs", type=int, default=25)
    p.add_argument("--threads", type=int, default=None,
                   help="limit BLAS/OpenMP pools (threadpoolctl) and torch to N threads")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for other processes to leave the CPUs idle")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch idiomatic contender")
    p.add_argument("--no-gemm", action="store_true", help="skip the GEMMs-only floor")
    args = p.parse_args(argv)
    args.backends = ([b.strip() for b in args.backends.split(",") if b.strip()]
                     if args.backends else _default_backends(args.device))
    args.dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    bs = args.batch_sizes or ("32,256,4096" if args.device == "cuda" else "32,256")
    args.batch_sizes = [int(b) for b in bs.split(",") if b.strip()]
    if args.quick:
        args.epochs = 1
        args.jax_epochs = None
    if args.epochs < 1:
        p.error("--epochs must be >= 1")
    return args


def main(argv=None) -> int:
    os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 on JAX; before jax is imported
    args = parse_args(argv)
    limiter = None
    if args.threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(args.threads)
        if _installed("torch"):
            import torch

            torch.set_num_threads(args.threads)
    try:
        result = run_all(args)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()
    print(render(result, markdown=args.markdown))
    busy = result["meta"].get("other_processes_cores", 0)
    if busy > 0.25:
        log(f"WARNING: other processes used {busy:.2f} cores on average while this ran; "
            "multi-threaded BLAS/OpenMP timings degrade badly when cores are oversubscribed. "
            "Rerun on an idle machine (--wait-idle 600)"
            + ("." if args.threads else " or compare with --threads 1."))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1, default=str)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
