"""The machine a benchmark ran on: CPU, BLAS and thread pools, and how busy it was.

:func:`machine_report` records what the figures depend on (CPU model and SIMD
flags, cores, BLAS libraries and their thread counts, library versions, the
environment variables that steer them); :class:`CpuShare` measures how much
CPU other processes took during the timed calls, and :func:`wait_for_idle`
waits for a quiet machine before starting.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import sys
import time

import numpy as np
import psutil

import xpnet

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "JAX_ENABLE_X64", "JAX_PLATFORMS",
            "XLA_FLAGS", "CUDA_VISIBLE_DEVICES")


def log(*args):
    """Progress goes to stderr, so that stdout holds only the report."""
    print(*args, file=sys.stderr, flush=True)


def installed(name: str) -> bool:
    """Whether ``import name`` would find a module (without importing it)."""
    return importlib.util.find_spec(name) is not None


def _cpu_model() -> str:
    """CPU model, family and the SIMD flags that matter for GEMM speed."""
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
    """The BLAS/LAPACK that this torch build uses, and its MKL/oneDNN switches."""
    try:
        cfg = torch.__config__.show()
    except Exception:  # noqa: BLE001 - a report, never a failure
        return "?"
    keep = [part.strip() for line in cfg.splitlines() for part in line.split(",")
            if part.strip().startswith(("BLAS_INFO", "LAPACK_INFO"))]
    mkl = torch.backends.mkl.is_available()
    return ", ".join(keep + [f"mkl={mkl}", f"mkldnn={torch.backends.mkldnn.is_available()}"])


def _threadpools():
    """The BLAS/OpenMP thread pools loaded in this process (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    keys = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: d.get(k) for k in keys} | {"library": os.path.basename(d.get("filepath", ""))}
            for d in threadpool_info()]


def _library_report(libs, device: str) -> dict:
    """Versions, threads, BLAS and devices of the array libraries in ``libs``."""
    rep = {}
    if "torch" in libs:
        import torch

        rep["torch"] = torch.__version__
        rep["torch_threads"] = torch.get_num_threads()
        rep["torch_blas"] = _torch_blas(torch)
        if device == "cuda" and torch.cuda.is_available():
            rep["gpu"] = torch.cuda.get_device_name()
    if "jax" in libs:
        import jax

        rep["jax"] = jax.__version__
        rep["jax_devices"] = [str(d) for d in jax.devices()]
    if "cupy" in libs:
        import cupy

        rep["cupy"] = cupy.__version__
        try:
            props = cupy.cuda.runtime.getDeviceProperties(0)
            name = props["name"]
            rep["gpu"] = name.decode() if isinstance(name, bytes) else name
        except Exception:  # noqa: BLE001 - a report, never a failure
            pass
    return rep


def machine_report(args, contenders_libs) -> dict:
    """Everything the figures depend on, for ``args`` (the parsed command line).

    ``contenders_libs`` names the array libraries the contenders use; only
    those are imported and reported.
    """
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
        "command": " ".join([os.path.basename(sys.executable), "-m", "benchmarks.mlp",
                             *sys.argv[1:]]),
        "xpnet": xpnet.__version__,
        "threadpools": _threadpools(),
    }
    return rep | _library_report(contenders_libs, args.device)


class CpuShare:
    """How much CPU *other* processes took while we were timing.

    Sums, over the timed calls, the machine's busy CPU time (psutil) minus
    this process's own (``os.times``); divided by wall time it is the
    average number of cores others used: the contention behind noisy figures.
    """

    def __init__(self):
        self.wall = self.others = self.steal = 0.0

    def __enter__(self):
        self._sys = psutil.cpu_times()
        self._own = os.times()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc):
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


def wait_for_idle(max_seconds: float, threshold: float = 0.25) -> float:
    """Wait (at most ``max_seconds``) until other processes use < ``threshold`` cores.

    Returns the cores in use at the last sample.
    """
    ncpu = psutil.cpu_count() or 1
    deadline = time.monotonic() + max_seconds
    while True:
        busy = psutil.cpu_percent(interval=2.0) / 100 * ncpu
        if busy < threshold or time.monotonic() >= deadline:
            return busy
        log(f"waiting for an idle machine: other processes use {busy:.2f} cores ...")
