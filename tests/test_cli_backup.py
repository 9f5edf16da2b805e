"""``xpnet train --backup-dir DIR [--backup-every epoch|N]``: a stopped or killed run, rerun with
the same command, ends with the model of a run that was never stopped, bit for bit.

The runs are killed from inside (``xpnet.backup.after_step_hook``) at a chosen step, so nothing
depends on timing.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest
from _helpers import mpi_env, mpi_skip_reason, mpiexec_path
from test_cli import ROOT, assert_one_line_error, cli_env

import xpnet.backup
from xpnet import cli
from xpnet.checkpoint import load_model

#: Adam and a cosine schedule: the optimizer's moments and the rates must come back too.
OPTIONS = ["--epochs", "3", "--hidden", "8", "--batch-size", "16", "--optimizer", "adam",
           "--lr", "0.01", "--init", "he_normal", "--schedule", "cosine", "--quiet"]
TIMEOUT = 300

#: ``python WRAPPER EPOCH STEP SIGNAL ARGS...``: ``xpnet ARGS...`` that sends itself SIGNAL after
#: step STEP of epoch EPOCH (0-based epoch, steps of that epoch done); under MPI only on rank
#: $KILL_RANK if set. ``SIGINT+SIGINT`` sends two.
WRAPPER = """\
import os, signal, sys
import xpnet.backup, xpnet.cli

EPOCH, STEP = int(sys.argv[1]), int(sys.argv[2])
SIGNALS = [getattr(signal, name) for name in sys.argv[3].split("+")]
RANK = os.environ.get("KILL_RANK")


def hook(epoch, step):
    if (epoch, step) == (EPOCH, STEP):
        if RANK is None or __import__("mpi4py.MPI").MPI.COMM_WORLD.rank == int(RANK):
            for sig in SIGNALS:
                os.kill(os.getpid(), sig)


xpnet.backup.after_step_hook = hook
sys.exit(xpnet.cli.main(sys.argv[4:]))
"""


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A directory with the data (180 training rows: 11 steps of 16 an epoch) and the wrapper."""
    path = tmp_path_factory.mktemp("backup_cli")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 240)
    X = rng.standard_normal((240, 4)) + 2.0 * np.eye(3, 4)[labels]
    np.savez(path / "data.npz", X=X[:200], y=labels[:200], X_test=X[200:], y_test=labels[200:])
    (path / "kill.py").write_text(WRAPPER)
    return path


def command(work, name: str, *extra) -> list[str]:
    """The ``xpnet train`` arguments of run ``name``: its own backup directory and model file."""
    return ["train", "--data", str(work / "data.npz"), *OPTIONS, *extra,
            "--backup-dir", str(work / name), "--save", str(work / f"{name}.npz")]


def _run(work, program, argv, **env) -> subprocess.CompletedProcess:
    """``python PROGRAM ARGV`` (under ``mpiexec -n 2`` when ``argv`` has ``--distributed``)."""
    if "--distributed" in argv:
        # Without `-m mpi4py`, whose abort at a failing exit may cut off the last output:
        # the command line ends the job by itself.
        launch, base = [mpiexec_path(), "-n", "2", sys.executable], mpi_env(ROOT)
    else:
        launch, base = [sys.executable], cli_env()
    return subprocess.run([*launch, *program, *argv], capture_output=True, text=True,
                          timeout=TIMEOUT, cwd=work, env={**base, **env})


def xpnet_run(work, argv) -> subprocess.CompletedProcess:
    return _run(work, ["-m", "xpnet"], argv)


def killed_run(work, epoch: int, step: int, sig: str, argv, **env) -> subprocess.CompletedProcess:
    return _run(work, [str(work / "kill.py"), str(epoch), str(step), sig], argv, **env)


_references: dict = {}


def reference(work, *extra):
    """Parameters and History of the uninterrupted run (once per set of extra flags)."""
    if extra not in _references:
        name = "reference" + "".join(extra).replace("-", "_")
        proc = xpnet_run(work, command(work, name, *extra))
        assert proc.returncode == 0, proc.stderr
        assert "resuming" not in proc.stdout
        _references[extra] = saved(work / f"{name}.npz")
    return _references[extra]


def saved(path):
    """The saved model's parameters (NumPy) and its History without the timings."""
    model = load_model(path, backend="numpy")
    params = [np.asarray(p) for layer in model.layers for p in layer.params.values()]
    history = {k: v for k, v in model.metadata["history"].items() if k != "seconds"}
    return params, history


def assert_same_model(work, name, *extra):
    params, history = saved(work / f"{name}.npz")
    ref_params, ref_history = reference(work, *extra)
    assert len(params) == len(ref_params)
    for got, want in zip(params, ref_params):
        assert got.dtype == want.dtype and np.array_equal(got, want)
    assert history == ref_history


@pytest.mark.parametrize("sig,status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_backs_up_says_how_to_resume_and_the_rerun_ends_bit_for_bit(work, sig, status):
    argv = command(work, sig)
    first = killed_run(work, 1, 5, sig, argv)
    assert first.returncode == status, first.stderr
    lines = first.stderr.strip().splitlines()
    assert "Traceback" not in first.stderr
    assert lines[0].startswith(f"xpnet: training stopped by {sig}; backed up to ")
    assert str(work / sig) in lines[0] and "step 5 of epoch 2" in lines[0]
    assert lines[1] == "xpnet: to resume, run the same command again: xpnet " + " ".join(argv)
    assert [e for e in first.stdout.splitlines() if e.startswith("epoch ")] == \
        [first.stdout.splitlines()[0]]  # epoch 1 only: it stopped within epoch 2
    backups = sorted(p.name for p in (work / sig).iterdir())
    assert backups and all(p.startswith("backup-") for p in backups)
    assert not (work / f"{sig}.npz").exists()

    second = xpnet_run(work, argv)
    assert second.returncode == 0, second.stderr
    out = second.stdout.splitlines()
    assert out[0] == f"resuming from {work / sig / backups[-1]} (epoch 2, step 5)"
    assert [line.split()[1] for line in out if line.startswith("epoch ")] == ["2/3", "3/3"]
    assert list((work / sig).iterdir()) == []  # a completed run removes its backups
    assert_same_model(work, sig)


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_backups(work):
    argv = command(work, "twice")
    first = killed_run(work, 1, 3, "SIGINT+SIGINT", argv)
    assert first.returncode == 130
    assert first.stderr.strip() == (f"xpnet: interrupted (the backups in {str(work / 'twice')!r} "
                                    "are kept: run the same command again to resume from the "
                                    "last one)")
    assert [p.name for p in (work / "twice").iterdir()] == ["backup-00000001.npz"]  # epoch 1's
    second = xpnet_run(work, argv)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0].endswith("backup-00000001.npz (epoch 2, step 0)")
    assert_same_model(work, "twice")


def test_sigkill_resumes_from_the_last_backup_every_n_steps(work):
    argv = command(work, "sigkill", "--backup-every", "4")
    # Every 4 steps, counted over the run: after steps 4 and 8 of epoch 1, 1 and 5 of epoch 2.
    first = killed_run(work, 1, 6, "SIGKILL", argv)
    assert first.returncode == -signal.SIGKILL
    assert len(list((work / "sigkill").iterdir())) == 2  # the newest two are kept
    second = xpnet_run(work, argv)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0].endswith("backup-00000004.npz (epoch 2, step 5)")
    assert list((work / "sigkill").iterdir()) == []
    assert_same_model(work, "sigkill", "--backup-every", "4")


@pytest.mark.skipif(mpi_skip_reason() is not None, reason=str(mpi_skip_reason()))
def test_mpi_one_rank_killed_then_the_same_mpiexec_resumes_printing_once(work):
    extra = ("--backup-every", "4", "--distributed")
    argv = command(work, "mpi", *extra)
    first = killed_run(work, 1, 6, "SIGKILL", argv, KILL_RANK="1")
    assert first.returncode != 0
    assert len(list((work / "mpi").iterdir())) == 2
    second = xpnet_run(work, argv)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("resuming from") == 1  # rank 0 only
    assert second.stdout.splitlines()[0].endswith("backup-00000004.npz (epoch 2, step 5)")
    assert list((work / "mpi").iterdir()) == []
    assert_same_model(work, "mpi", *extra)


@pytest.mark.skipif(mpi_skip_reason() is not None, reason=str(mpi_skip_reason()))
def test_mpi_sigterm_on_every_rank_backs_up_and_rank_0_says_how_to_resume(work):
    argv = command(work, "mpiterm", "--distributed")
    first = killed_run(work, 1, 3, "SIGTERM", argv)
    assert first.returncode == 143, first.stderr
    assert first.stderr.count("xpnet: training stopped by SIGTERM") == 1
    assert "xpnet: to resume, run the same command again (mpiexec ... xpnet train" in first.stderr
    second = xpnet_run(work, argv)
    assert second.returncode == 0, second.stderr
    # The ranks agree on stopping every STOP_CHECK_EVERY steps: at the first such step after 3.
    step = int(second.stdout.splitlines()[0].rsplit("step ", 1)[1].rstrip(")"))
    assert "(epoch 2, step" in second.stdout.splitlines()[0]
    assert 3 <= step <= 3 + xpnet.backup.STOP_CHECK_EVERY
    assert_same_model(work, "mpiterm", "--distributed")


@pytest.mark.parametrize("argv,needles", [
    (["--backup-dir", "b", "--backup-every", "0"],
     ["argument --backup-every", "expected 'epoch' or a positive number of steps, got '0'"]),
    (["--backup-dir", "b", "--backup-every", "x"], ["argument --backup-every", "got 'x'"]),
    (["--backup-every", "3"], ["--backup-every needs --backup-dir"]),
    (["--backup-dir", "FILE"], ["argument --backup-dir", "got the file"]),
])
def test_bad_backup_flags_exit_2_with_one_line(argv, needles, tmp_path, capsys):
    (tmp_path / "FILE").write_text("not a directory")
    argv = [str(tmp_path / a) if a in ("b", "FILE") else a for a in argv]
    try:  # argparse's own errors exit, the checks across flags return 2: the same line
        code = cli.main(["train", "--data", str(tmp_path / "missing.npz"), *argv])
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, *needles)


class _Crash(Exception):
    pass


def _crash(epoch, step):
    if (epoch, step) == (0, 3):
        raise _Crash


@pytest.mark.parametrize("other", [["--hidden", "9"], ["--batch-size", "8"]])
def test_a_backup_of_another_run_is_refused(work, other, tmp_path, monkeypatch, capsys):
    argv = ["train", "--data", str(work / "data.npz"), *OPTIONS, "--backup-every", "2",
            "--backup-dir", str(tmp_path / "b")]
    monkeypatch.setattr(xpnet.backup, "after_step_hook", _crash)
    with pytest.raises(_Crash):
        cli.main(argv)
    monkeypatch.setattr(xpnet.backup, "after_step_hook", None)
    capsys.readouterr()
    assert cli.main([*argv, *other]) == 1
    out, err = capsys.readouterr()
    assert_one_line_error(err, "was written by another run", str(tmp_path / "b"),
                          "delete the backup directory")
    assert "epoch 1/3" not in out  # refused before training
    assert len(list((tmp_path / "b").iterdir())) == 1  # and the backup is left alone
