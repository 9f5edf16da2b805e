"""Benchmark of the seed MLP (784-100-200-10): xpnet vs hand-written NumPy vs PyTorch.

Run ``python -m benchmarks.mlp`` (``--help`` for the flags). In one process it
times, interleaved so that drift of a busy machine hits every contender alike:

* one training epoch (median of ``--epochs`` epochs after one warm-up) at each
  batch size, for xpnet on every available backend and dtype, the hand-written
  NumPy reference, idiomatic PyTorch on the same device, and "GEMMs only"
  NumPy and torch loops (:mod:`benchmarks.contenders`);
* prediction over the whole training set;
* a matmul ceiling (a large square product) per library and dtype;

and prints each figure's ratio to the hand-written NumPy float32 baseline and
to PyTorch (same dtype, batch size and run), achieved GFLOP/s, the fraction
of the ceiling, and the machine, BLAS and environment it ran on.

This module runs the measurement and holds the command line. The pieces:
:mod:`benchmarks.workload` (sizes, FLOP count, data), :mod:`benchmarks.machine`
(machine report, contention), :mod:`benchmarks.contenders`,
:mod:`benchmarks.report` (tables), :mod:`benchmarks.targets` (issue 4's
targets) and :mod:`benchmarks.memory` (``--memory``, one child process each).
The *floor* is nominal FLOP / ceiling: the issue's 30.1 GFLOP / 240 GFLOP/s.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time

from .contenders import build_contenders, matmul_ceiling
from .machine import CpuShare, installed, log, machine_report, wait_for_idle
from .report import render
from .targets import evaluate_targets
from .workload import QUICK_ROWS, epoch_flops, load_data, predict_flops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEMORY_RUN_TIMEOUT_S = 3600  # one --memory child: 25 MNIST epochs take minutes, never an hour


def _interleaved(contenders, reps_of, call, phase, share, pause: float = 0.0):
    """Run ``call(c)`` once per contender per repetition (rotating the order).

    Repetition 0 is the warm-up and is not kept; contender ``c`` takes part in
    repetitions ``0 .. reps_of(c)``. Before each call the harness sleeps
    ``pause`` seconds (untimed): OpenBLAS's and OpenMP's worker threads spin
    for a while after their last job, and on a small machine those left by
    one library's contender would slow the next one down (torch after NumPy:
    ~15% at batch 32 on 2 cores). Returns ``{key: [seconds, ...]}``.
    """
    times = {c.key: [] for c in contenders}
    total = 1 + max(reps_of(c) for c in contenders)
    for rep in range(total):
        k = rep % len(contenders)
        gc.collect()  # once per round: a full collection can take 0.1 s with torch/jax loaded
        for c in contenders[k:] + contenders[:k]:
            if rep > reps_of(c):
                continue
            time.sleep(pause)
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
    """Median, min and max of the kept repetitions, and the repetitions."""
    return {"median_s": statistics.median(ts), "min_s": min(ts), "max_s": max(ts), "times_s": ts}


def _ceiling_pairs(contenders) -> list:
    """The (library, dtype, device) whose matmul ceiling some contender is measured against."""
    return sorted({(c.lib, c.dtype, "cpu" if c.lib == "numpy" else str(c.device))
                   for c in contenders})


def measure_ceilings(pairs, n: int, reps: int) -> dict:
    """``{(lib, dtype, device): GFLOP/s}``; a failure is logged, not raised."""
    out = {}
    for lib, dt, dev in pairs:
        try:
            out[(lib, dt, dev)] = matmul_ceiling(lib, dt, dev, n, reps)
        except Exception as exc:  # noqa: BLE001 - report, do not die
            log(f"ceiling {lib} {dt} {dev}: failed ({exc})")
    return out


def time_training(contenders, batch_sizes, n: int, notes: list, share, pause: float = 0.0) -> list:
    """One record per contender and batch size: epoch times and losses."""
    train = []
    for bs in batch_sizes:
        if bs > n:
            notes.append(f"batch size {bs} skipped: larger than the {n} training rows")
            continue
        log(f"training, batch {bs} ({n // bs} steps per epoch):")
        for c in contenders:
            c.reset(bs)
        times = _interleaved(contenders, lambda c: c.epochs, lambda c: c.epoch(), f"bs {bs}",
                             share, pause)
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
    return train


def time_prediction(contenders, n: int, share, pause: float = 0.0) -> list:
    """One record per contender: times of predicting all ``n`` rows."""
    log("prediction over the whole training set:")
    ptimes = _interleaved(contenders, lambda c: c.epochs if c.lib != "jax" else max(c.epochs, 3),
                          lambda c: c.predict(), "predict", share, pause)
    return [{"contender": c.label, "kind": c.kind, "lib": c.lib, "dtype": c.dtype,
             "device": str(c.device), "n": n, "flop": predict_flops(n)} | _stats(ptimes[c.key])
            for c in contenders]


def run_all(args) -> dict:
    """Every measurement the command line asks for: the ``result`` that is rendered."""
    if args.wait_idle:
        busy = wait_for_idle(args.wait_idle)
        log(f"starting with {busy:.2f} cores busy")
    host = load_data(args.data, quick=args.quick)
    if args.rows and args.rows < host["X"].shape[0]:
        host["X"], host["y"] = host["X"][:args.rows], host["y"][:args.rows]
        host["source"] += f"; its first {args.rows:,} rows (--rows)"
    n = host["X"].shape[0]
    log(f"data: {host['source']}")
    contenders, notes = build_contenders(args, host)
    for note in notes:
        log(note)
    meta = machine_report(args, sorted({c.lib for c in contenders} | {"numpy"}))
    meta |= {"data": host["source"], "n_train": n, "notes": notes, "pause_s": args.pause}

    # Matmul ceilings, before and after (the best of both is kept).
    ceil_n = 256 if args.quick else (8192 if args.device == "cuda" else 2048)
    ceil_reps = 1 if args.quick else 5
    pairs = _ceiling_pairs(contenders)
    log(f"matmul ceiling ({ceil_n}x{ceil_n}, best of {ceil_reps}) ...")
    ceilings = measure_ceilings(pairs, ceil_n, ceil_reps)
    share = CpuShare()
    train = time_training(contenders, args.batch_sizes, n, notes, share, args.pause)
    predict = time_prediction(contenders, n, share, args.pause)
    log("matmul ceiling again ...")
    for k, v in measure_ceilings(pairs, ceil_n, ceil_reps).items():
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


def run_memory(args) -> list:
    """A full training run per contender in a fresh process; RSS per epoch and peak."""
    epochs = 2 if args.quick else args.memory_epochs
    todo = [("xpnet-numpy", "float32")]
    if not args.no_torch and installed("torch"):
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
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                                  timeout=MEMORY_RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            out.append({"contender": contender, "dtype": dt,
                        "error": [f"no result within {MEMORY_RUN_TIMEOUT_S} s"]})
            continue
        if proc.returncode:
            log(proc.stderr[-2000:])
            out.append({"contender": contender, "dtype": dt,
                        "error": proc.stderr.strip().splitlines()[-1:] or ["failed"]})
            continue
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def _default_backends(device: str) -> list:
    """Every installed xpnet backend; cupy only with a visible GPU."""
    names = []
    for name in ("numpy", "torch", "jax", "cupy"):
        if name != "numpy" and not installed(name):
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
    """The command line, with list options split and ``--quick``'s defaults applied."""
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
    p.add_argument("--rows", type=int, default=None, metavar="N",
                   help="time on the first N training rows only (smoke tests)")
    p.add_argument("--json", metavar="PATH", help="write every figure to PATH as JSON")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    p.add_argument("--memory", action="store_true",
                   help="also run full trainings in child processes and record their RSS")
    p.add_argument("--memory-epochs", type=int, default=25)
    p.add_argument("--threads", type=int, default=None,
                   help="limit BLAS/OpenMP pools (threadpoolctl) and torch to N threads")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for other processes to leave the CPUs idle")
    p.add_argument("--pause", type=float, default=0.3, metavar="SECONDS",
                   help="untimed sleep before each timed call, so that the worker threads another "
                        "library left spinning are idle (default 0.3; 0 with --quick)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch idiomatic contender")
    p.add_argument("--no-gemm", action="store_true", help="skip the floors (GEMMs only, jax by hand)")
    args = p.parse_args(argv)
    if args.quick and "--pause" not in (argv if argv is not None else sys.argv):
        args.pause = 0.0  # a smoke run measures nothing
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
    if args.rows is not None and args.rows < 1:
        p.error("--rows must be >= 1")
    return args


def main(argv=None) -> int:
    """Run the benchmark, print the report (and write ``--json``); the exit status."""
    os.environ.setdefault("JAX_ENABLE_X64", "1")  # float64 on JAX; before jax is imported
    args = parse_args(argv)
    limiter = None
    if args.threads:
        from threadpoolctl import threadpool_limits

        limiter = threadpool_limits(args.threads)
        if installed("torch"):
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
