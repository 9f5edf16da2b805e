"""The seed run: ``xpnet train`` in a child process, timed, its output kept.

usage: seed_run.py WORKDIR BACKEND MODEL PLOT [XPNET_TRAIN_ARG ...]

Runs ``python -m xpnet train --backend BACKEND --plot PLOT --save MODEL
--quiet XPNET_TRAIN_ARG...`` (without ``--plot`` when matplotlib is missing),
echoes its standard output and copies it to ``WORKDIR/train.txt`` followed by
the wall time, and writes ``{"wall_s", "rc", "backend", "args"}`` to
``WORKDIR/train.json``, also when the stage limit interrupts it. Exits with
the child's status.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path


def run_teed(cmd: list[str], log) -> int:
    """Run ``cmd``, echoing each line of its stdout and writing it to ``log``."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                log.write(line)
            return proc.wait()
        except KeyboardInterrupt:  # the stage limit: SIGINT went to the child as well
            proc.wait(timeout=15)
            return 130


def train_command(backend: str, model: str, plot: str, extra: list[str]) -> list[str]:
    plot_args = ["--plot", plot]
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib missing: seed run without --plot")
        plot_args = []
    return [sys.executable, "-m", "xpnet", "train", "--backend", backend, *plot_args,
            "--save", model, "--quiet", *extra]


def main(workdir: str, backend: str, model: str, plot: str, *extra: str) -> int:
    cmd = train_command(backend, model, plot, list(extra))
    print("+ xpnet " + shlex.join(cmd[3:]), flush=True)
    start = time.perf_counter()
    with open(Path(workdir) / "train.txt", "w") as log:
        rc = run_teed(cmd, log)
        wall = time.perf_counter() - start
        line = f"seed run wall time: {wall:.2f} s (rc={rc})\n"
        sys.stdout.write(line)
        log.write(line)
    record = {"wall_s": round(wall, 2), "rc": rc, "backend": backend, "args": " ".join(extra)}
    (Path(workdir) / "train.json").write_text(json.dumps(record))
    return rc


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
