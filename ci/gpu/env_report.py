"""Versions, devices and ``xpnet.available_backends()``, printed and saved as JSON.

usage: env_report.py OUT.json DRY_RUN(0|1)

Never fails on a missing library: what cannot be read is reported instead.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import sys

import xpnet

DISTRIBUTIONS = ("numpy", "cupy-cuda13x", "cupy-cuda12x", "torch", "jax", "array-api-compat",
                 "array-api-strict", "pytest", "hypothesis", "matplotlib", "xpnet")


def distribution_versions() -> dict:
    found = {}
    for dist in DISTRIBUTIONS:
        try:
            found[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return found


def cupy_info() -> dict:
    """CuPy's CUDA runtime/driver, GPU 0 and its TF32 switch (unset: off)."""
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        return {"cupy": cupy.__version__,
                "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
                "cuda_driver": cupy.cuda.runtime.driverGetVersion(),
                "gpu": name.decode() if isinstance(name, bytes) else name,
                "gpu_memory_gib": round(props["totalGlobalMem"] / 2**30, 1),
                "CUPY_TF32": os.environ.get("CUPY_TF32", "unset (TF32 off)")}
    except Exception as exc:  # noqa: BLE001 - a report, never a failure
        return {"cupy_error": f"{type(exc).__name__}: {exc}"}


def torch_info() -> dict:
    """PyTorch's CUDA build and, with a GPU, its name and TF32 settings."""
    try:
        import torch

        info = {"torch_cuda_build": torch.version.cuda,
                "torch_cuda_available": torch.cuda.is_available()}
        if torch.cuda.is_available():
            info |= {"torch_gpu": torch.cuda.get_device_name(0),
                     "torch_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                     "torch_float32_matmul_precision": torch.get_float32_matmul_precision()}
        return info
    except Exception as exc:  # noqa: BLE001
        return {"torch_error": f"{type(exc).__name__}: {exc}"}


def backends_info() -> dict:
    """``xpnet.available_backends()`` plus torch on ``cuda``, which it does not list."""
    found = dict(xpnet.available_backends())
    try:
        found["torch-cuda"] = repr(xpnet.get_backend("torch", device="cuda"))
    except Exception as exc:  # noqa: BLE001
        found["torch-cuda"] = f"{type(exc).__name__}: {exc}"
    return found


def main(out_json: str, dry_run: str) -> int:
    info = {"python": sys.version.split()[0], "executable": sys.executable,
            "platform": platform.platform(), "dry_run": dry_run == "1"}
    info |= distribution_versions() | cupy_info() | torch_info()
    info["available_backends"] = backends_info()
    for key, value in info.items():
        if key != "available_backends":
            print(f"  {key:<32} {value}")
    print("  xpnet.available_backends():")
    for key, value in info["available_backends"].items():
        print(f"    {key:<18} {value}")
    with open(out_json, "w") as fh:
        json.dump(info, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
