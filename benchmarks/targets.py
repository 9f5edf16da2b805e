"""Issue 4's (and issue 15's) speed and memory targets, and whether a run meets them.

The thresholds live here, and only here; :func:`evaluate_targets` reads a
run's derived figures (``benchmarks.mlp.run_all``) and reports each target
with its figure and a met/missed flag. Ratios are of median epoch times:
``vs_handwritten_f32`` to the hand-written NumPy float32 baseline,
``vs_torch`` to idiomatic PyTorch at the same dtype and batch size,
``x_floor`` to the arithmetic floor (nominal FLOP / matmul ceiling).
"""

from __future__ import annotations

# xpnet numpy float32, batch 32: at most this multiple of ...
MAX_VS_HANDWRITTEN = 1.0   # ... the hand-written NumPy epoch
MAX_VS_TORCH = 0.75        # ... the idiomatic PyTorch CPU epoch
MAX_X_FLOOR_32 = 2.0       # ... the arithmetic floor (stretch)
MAX_X_FLOOR_256 = 1.3      # the same at batch 256 (stretch)
MAX_PREDICT_VS_TORCH = 1.0  # prediction over all rows vs PyTorch CPU
# Issue 15 (compiled epochs, fewer dispatches), float32 on the CPU:
MAX_JAX_VS_NUMPY = 1.0       # xpnet jax / xpnet numpy, batch 32 and 256
MAX_JAX_VS_TORCH_32 = 0.6    # xpnet jax / PyTorch idiomatic, batch 32
MAX_TORCH_VS_NUMPY_32 = 1.15  # xpnet torch / xpnet numpy, batch 32
# Memory of a full run in a fresh process: no growth after the first epoch.
MAX_GROWTH_MIB = 8.0
MAX_SLOPE_MIB_PER_EPOCH = 0.5


def _find(rows, **kw):
    """The first row whose fields equal ``kw``, or None."""
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def _target(name: str, figure: str, met) -> dict:
    return {"target": name, "figure": figure, "met": bool(met)}


def _batch32_targets(row) -> list:
    v = row["vs_handwritten_f32"]
    out = [_target("xpnet numpy f32, batch 32: "
                   f"<= {MAX_VS_HANDWRITTEN:.1f}x hand-written NumPy f32",
                   f"{row['median_s']:.3f} s = {v:.2f}x" if v else "n/a",
                   v and v <= MAX_VS_HANDWRITTEN)]
    v = row["vs_torch"]
    out.append(_target("xpnet numpy f32, batch 32: "
                       f"<= {MAX_VS_TORCH:g}x PyTorch CPU idiomatic f32",
                       f"{v:.2f}x" if v else "n/a", v and v <= MAX_VS_TORCH))
    v = row["x_floor"]
    out.append(_target("stretch: xpnet numpy f32, batch 32: "
                       f"<= {MAX_X_FLOOR_32:g}x the arithmetic floor",
                       f"{v:.2f}x floor (floor {row['median_s'] / v:.3f} s)" if v else "n/a",
                       v and v <= MAX_X_FLOOR_32))
    return out


def _batch256_target(row) -> dict:
    v = row["x_floor"]
    return _target("stretch: xpnet numpy f32, batch 256: "
                   f"<= {MAX_X_FLOOR_256:g}x the arithmetic floor",
                   f"{row['median_s']:.3f} s = {v:.2f}x floor", v <= MAX_X_FLOOR_256)


def _predict_target(row) -> dict:
    v = row["vs_torch"]
    return _target("predict all rows, xpnet numpy f32: no slower than PyTorch CPU f32",
                   f"{row['median_s']:.3f} s = {v:.2f}x torch" if v else "n/a",
                   v and v <= MAX_PREDICT_VS_TORCH)


def _memory_target(m) -> dict:
    growth = m["growth_after_first_epoch_bytes"] / 2**20
    slope = m["slope_bytes_per_epoch"] / 2**20
    return _target("training peak RSS reported, no per-epoch growth",
                   f"peak {m['peak_rss_bytes'] / 2**20:.0f} MiB; growth epoch 1 -> {m['epochs']}: "
                   f"{growth:+.1f} MiB ({slope:+.2f} MiB/epoch)",
                   abs(growth) < MAX_GROWTH_MIB and abs(slope) < MAX_SLOPE_MIB_PER_EPOCH)


def _on_cpu(row) -> bool:
    dev = str(row.get("device", "")).lower()
    return "cuda" not in dev and "gpu" not in dev


def _compiled_epoch_targets(rows) -> list:
    """Issue 15: xpnet jax and xpnet torch against xpnet numpy (float32, CPU)."""
    out = []
    for bs in (32, 256):
        ref = _find(rows, contender="xpnet numpy", dtype="float32", batch_size=bs)
        if not ref:
            continue
        checks = [("xpnet jax", MAX_JAX_VS_NUMPY)]
        if bs == 32:
            checks.append(("xpnet torch", MAX_TORCH_VS_NUMPY_32))
        for name, limit in checks:
            row = _find(rows, contender=name, dtype="float32", batch_size=bs)
            if row and _on_cpu(row):
                v = row["median_s"] / ref["median_s"]
                out.append(_target(f"{name} f32, batch {bs}: <= {limit:g}x xpnet numpy f32",
                                   f"{row['median_s']:.3f} s = {v:.2f}x", v <= limit))
    row = _find(rows, contender="xpnet jax", dtype="float32", batch_size=32)
    if row and _on_cpu(row) and row["vs_torch"]:
        v = row["vs_torch"]
        out.append(_target(f"xpnet jax f32, batch 32: <= {MAX_JAX_VS_TORCH_32:g}x PyTorch "
                           "CPU idiomatic f32", f"{v:.2f}x", v <= MAX_JAX_VS_TORCH_32))
    return out


def evaluate_targets(result) -> list:
    """Issue 4's targets, each ``{"target", "figure", "met"}``, for the figures this run has."""
    out = []
    x32 = _find(result["train"], contender="xpnet numpy", dtype="float32", batch_size=32)
    if x32:
        out += _batch32_targets(x32)
    x256 = _find(result["train"], contender="xpnet numpy", dtype="float32", batch_size=256)
    if x256 and x256["x_floor"]:
        out.append(_batch256_target(x256))
    p = _find(result["predict"], contender="xpnet numpy", dtype="float32")
    if p:
        out.append(_predict_target(p))
    out += _compiled_epoch_targets(result["train"])
    for m in result.get("memory", []):
        if m.get("contender") == "xpnet-numpy" and "peak_rss_bytes" in m:
            out.append(_memory_target(m))
    return out
