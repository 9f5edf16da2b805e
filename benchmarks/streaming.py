"""One epoch of the seed MLP from a float32 memmap on disk vs from memory.

``python -m benchmarks.streaming`` writes a ``rows x 784`` float32 ``.npy``
file (default 1,000,000 rows, about 3 GB) with random labels into a temporary
directory it deletes afterwards, then for each backend (numpy, torch on the
CPU) trains the seed MLP (784-100-200-10, SGD, batch 1024) for one epoch

* from the file opened with ``np.load(mmap_mode="r")`` (streamed in chunks), and
* from an in-memory array of ``--memory-rows`` rows (default 200,000),

each in a fresh child process. It reports rows per second of each, their
ratio, and the peak anonymous memory (``RssAnon`` from /proc/self/status,
sampled every 10 ms: the page cache holding the file is not counted) of the
memmap run. ``--rows`` shrinks the file for a quick run; ``--json`` writes
the record. The file has just been written, so it is probably in the page
cache: this measures the streaming machinery, not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

SIZES = [784, 100, 200, 10]
MiB = 2**20


def _rss_anon() -> int:
    """This process's anonymous resident memory in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakSampler:
    """Samples :func:`_rss_anon` on a thread; ``peak`` is the largest value seen."""

    def __init__(self, interval: float = 0.01):
        self.interval, self.peak = interval, _rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss_anon())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, _rss_anon())
        return False


def write_dataset(directory: str, rows: int, seed: int = 0) -> tuple[str, str]:
    """A ``rows x 784`` float32 .npy of uniform [0, 1) values and int64 labels, in blocks."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x_path, y_path = os.path.join(directory, "X.npy"), os.path.join(directory, "y.npy")
    X = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float32, shape=(rows, SIZES[0]))
    block = 20_000
    for lo in range(0, rows, block):
        hi = min(lo + block, rows)
        X[lo:hi] = rng.random((hi - lo, SIZES[0]), dtype=np.float32)
    X.flush()
    del X
    np.save(y_path, rng.integers(0, SIZES[-1], rows))
    return x_path, y_path


def child(mode: str, backend: str, x_path: str, y_path: str, rows: int, batch_size: int,
          chunk_bytes: int | None) -> dict:
    """Train one epoch in this process and return the record."""
    import numpy as np

    import xpnet

    be = xpnet.get_backend(backend, device="cpu", dtype="float32")
    model = xpnet.Sequential.mlp(SIZES, backend=be, seed=0)
    y = np.load(y_path, mmap_mode="r")
    with PeakSampler() as sampler:
        if mode == "memmap":
            X = np.load(x_path, mmap_mode="r")
            X, y = X[:rows], y[:rows]
        else:  # an in-memory array on the model's device
            X = be.asarray(np.load(x_path, mmap_mode="r")[:rows])
            y = be.asarray(np.asarray(y[:rows]), dtype=be.index_dtype)
        t0 = time.perf_counter()
        history = model.fit(X, y, epochs=1, batch_size=batch_size, seed=0,
                            train_accuracy=False, chunk_bytes=chunk_bytes)
        seconds = time.perf_counter() - t0
    used = rows // batch_size * batch_size
    return {"mode": mode, "backend": backend, "rows": rows, "batch_size": batch_size,
            "seconds": seconds, "rows_per_s": used / seconds,
            "peak_rss_anon_mib": sampler.peak / MiB, "loss": history.history["loss"][0]}


def _run_child(args, mode: str, backend: str, x_path: str, y_path: str, rows: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.streaming", "--child", mode, "--backend", backend,
           "--x-path", x_path, "--y-path", y_path, "--rows", str(rows),
           "--batch-size", str(args.batch_size)]
    if args.chunk_bytes:
        cmd += ["--chunk-bytes", str(args.chunk_bytes)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if proc.returncode != 0:
        raise RuntimeError(f"{mode}/{backend} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args) -> dict:
    """Write the data, run every (backend, mode) child, delete the data; the record."""
    directory = tempfile.mkdtemp(prefix="xpnet-streaming-")
    try:
        x_path, y_path = write_dataset(directory, max(args.rows, args.memory_rows))
        results = []
        for backend in args.backends.split(","):
            memmap = _run_child(args, "memmap", backend, x_path, y_path, args.rows)
            memory = _run_child(args, "memory", backend, x_path, y_path, args.memory_rows)
            results.append({"backend": backend, "memmap": memmap, "memory": memory,
                            "throughput_ratio": memmap["rows_per_s"] / memory["rows_per_s"]})
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {"rows": args.rows, "memory_rows": args.memory_rows, "batch_size": args.batch_size,
            "chunk_bytes": args.chunk_bytes, "results": results}


def _table(record: dict) -> str:
    lines = [f"one epoch, seed MLP, batch {record['batch_size']}: memmap of {record['rows']:,} "
             f"rows vs in-memory array of {record['memory_rows']:,} rows",
             f"{'backend':8} {'memmap rows/s':>14} {'memory rows/s':>14} {'ratio':>6} "
             f"{'peak RssAnon (memmap)':>22}"]
    for r in record["results"]:
        lines.append(f"{r['backend']:8} {r['memmap']['rows_per_s']:14,.0f} "
                     f"{r['memory']['rows_per_s']:14,.0f} {r['throughput_ratio']:6.0%} "
                     f"{r['memmap']['peak_rss_anon_mib']:18,.0f} MiB")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the memmap")
    parser.add_argument("--memory-rows", type=int, default=200_000,
                        help="rows of the in-memory reference")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--chunk-bytes", type=int, default=None,
                        help="host chunk budget (default: xpnet's, about 256 MB)")
    parser.add_argument("--backends", default="numpy,torch")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per child run")
    parser.add_argument("--json", help="also write the record here")
    parser.add_argument("--child", choices=["memmap", "memory"], help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--x-path", help=argparse.SUPPRESS)
    parser.add_argument("--y-path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.backend, args.x_path, args.y_path, args.rows,
                               args.batch_size, args.chunk_bytes)))
        return 0
    record = run(args)
    print(_table(record))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(record, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
