"""Kill tests (issue #24): SIGKILL a training process at seeded random steps, rerun, and end
bit for bit where the uninterrupted run ends.

Each configuration of tests/backup_scripts/train.py is trained once without
backups (the reference), then with ``fit(backup_dir=DIR, backup_every=...)``
in a chain of processes: the first is killed from inside (the
``xpnet.backup.after_step_hook`` test hook, so nothing depends on timing) at
step K1, the next, which resumes from the backup, at K2 > K1, ..., and a last
one runs to the end. Its parameters (host arrays, ``numpy.array_equal``) and
History (every key but ``seconds``, wall time) must equal the reference's,
and the backup directory must be empty.

After every kill the test also checks where the next run starts: a small model
of the documented policy (:func:`expected_runs`: step backups every
``backup_every`` steps counted from the process's start, epoch backups at the
start of every epoch after the first one a process trains, batch iterables at
epoch starts, compiled JAX epochs seen at their end) says whether a backup
must exist and at which global step the next run's first hook call comes.

Ten kills per configuration, except torch and JAX: four each, because every
process start there imports the library (about 2-4 s on the shared 2-core
machine) and JAX compiles the epoch again (about 2.5 s), so ten kills would
cost a minute per configuration. Under ``mpiexec -n 2`` rank 1 is killed once
mid-epoch and the job is rerun.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import mpi_skip_reason
from _helpers import run_mpi as run_mpi_job

from xpnet.feeds import HostData

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "backup_scripts" / "train.py"
MPI_SCRIPT = ROOT / "tests" / "mpi_scripts" / "backup.py"
sys.path.insert(0, str(CHILD.parent))
sys.path.insert(0, str(MPI_SCRIPT.parent))
import backup as mpi_case  # noqa: E402  (tests/mpi_scripts/backup.py: its constants)
import train as child  # noqa: E402  (tests/backup_scripts/train.py: the configurations)

TIMEOUT_S = 120  # one process; torch or JAX start-up on a loaded 2-core machine is a few s
MPI_TIMEOUT_S = 180
SPE = child.STEPS_PER_EPOCH

#: config -> number of kills (see the module docstring for torch and JAX).
KILLS = {"numpy": 10, "torch": 4, "jax": 4, "memmap": 10, "adam_epoch": 10,
         "adam_steps": 10, "batches": 10}
NEEDS = {"torch": "torch", "jax": "jax"}


def _env(tmp_path: Path) -> dict:
    return dict(os.environ, XPNET_BLAS_THREADS="1", OMP_NUM_THREADS="1",
                OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", JAX_ENABLE_X64="1",
                JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT),
                KILL_TEST_MEMMAP=str(tmp_path / "X.float64"))


def run_child(tmp_path: Path, config: str, out: Path, *, backup: Path | None = None,
              kill: int | None = None, callback: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(CHILD), config, str(out)]
    if backup is not None:
        cmd += ["--backup", str(backup)]
    if kill is not None:
        cmd += ["--kill", str(kill)]
    if callback:
        cmd.append("--callback")
    return subprocess.run(cmd, env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def finished(proc: subprocess.CompletedProcess, out: Path) -> tuple[dict, dict]:
    """The parameters and result.json of a run that must have completed."""
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    with np.load(out / "params.npz") as npz:
        params = {k: npz[k] for k in npz.files}
    return params, json.loads((out / "result.json").read_text())


def first_hook(proc: subprocess.CompletedProcess) -> tuple[int | None, str | None]:
    """``(global step, restored_from)`` of the run's first hook call (None: no step was left)."""
    found = re.findall(r"^FIRST (\d+) (.*)$", proc.stdout, flags=re.M)
    assert len(found) <= 1, (proc.stdout + proc.stderr)[-4000:]
    return (int(found[0][0]), found[0][1]) if found else (None, None)


def assert_same_params(got: dict, want: dict, dtype: str) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype == np.dtype(dtype), key
        assert np.array_equal(got[key], want[key]), (
            f"{key} differs: max |diff| {np.max(np.abs(got[key] - want[key]))}")


def draw_kills(name: str, total: int, n: int, compiled: bool) -> list[int]:
    """``n`` sorted distinct global steps in ``[1, total)``, from a seeded Generator.

    A compiled epoch is seen by the hook at its end only: there the kills are drawn
    in distinct epochs (a step inside each), so that each kill ends another epoch.
    """
    rng = np.random.default_rng(list(KILLS).index(name) + 2400)
    if compiled:
        epochs = np.sort(rng.choice(total // SPE, size=n, replace=False))
        return [int(e * SPE + rng.integers(1, SPE)) for e in epochs]
    return sorted(int(k) for k in rng.choice(np.arange(1, total), size=n, replace=False))


def expected_runs(cfg: dict, total: int, kills: list[int], compiled: bool) -> list:
    """Per run ``(first hook step, backup step after its kill or None)``: the policy's model.

    Steps are global (``epoch * SPE + steps done``). A run starts at its backup's
    step (0 without one); step backups come every ``every`` steps counted from
    the run's start (before the hook of that step, so the kill sees it); epoch
    backups (also batch iterables) at the start of every epoch but the one the
    run starts with; a compiled epoch advances a whole epoch per hook call.
    """
    by_epoch = cfg["every"] == "epoch" or cfg["kind"] == "batches"
    restored, runs = None, []
    for kill in [*kills, None]:
        start = 0 if restored is None else restored
        pos, since, last, first = start, 0, restored, None
        while pos < total:
            if by_epoch and pos % SPE == 0 and pos > start:
                last = pos
            advance = SPE - pos % SPE if compiled else 1
            pos += advance
            if not by_epoch:
                since += advance
                if since >= cfg["every"]:
                    since, last = 0, pos
            first = pos if first is None else first
            if kill is not None and pos >= kill:
                break
        runs.append((first, last))
        restored = last
    return runs


def backups(directory: Path) -> list[Path]:
    return sorted(directory.glob("backup-*.npz"))


@pytest.mark.parametrize("name", list(KILLS))
def test_killed_and_resumed_runs_end_bit_for_bit(name, tmp_path, monkeypatch):
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{NEEDS[name]} is not installed")
    cfg = child.CONFIGS[name]
    if cfg["kind"] == "memmap":  # writes the file the runs read; an epoch is 4 chunks of 4 steps
        monkeypatch.setenv("KILL_TEST_MEMMAP", _env(tmp_path)["KILL_TEST_MEMMAP"])
        model, (X, y), kwargs = child.build(cfg)
        assert isinstance(X, np.memmap)
        data = HostData.of(model, X, y, chunk_bytes=kwargs["chunk_bytes"])
        assert data.rows_per_chunk(child.BATCH) == 4 * child.BATCH == child.N_ROWS // 4
    ref = tmp_path / "ref"
    want_params, want = finished(run_child(tmp_path, name, ref), ref)
    compiled = want["compiled_epoch"]
    assert compiled == (name == "jax"), "JAX trains whole compiled epochs, the others do not"
    epochs_run = len(want["history"]["loss"])
    if name == "adam_steps":  # EarlyStopping stops the run: the resumed runs must stop there too
        assert epochs_run < cfg["epochs"], want["history"]
    else:
        assert epochs_run == cfg["epochs"]
    total = epochs_run * SPE
    kills = draw_kills(name, total, KILLS[name], compiled)
    runs = expected_runs(cfg, total, kills, compiled)
    directory, out = tmp_path / "backups", tmp_path / "resumed"

    for i, kill in enumerate(kills):
        proc = run_child(tmp_path, name, out, backup=directory, kill=kill)
        where = f"run {i + 1}, killed at step {kill} of {total} (kills {kills})"
        assert proc.returncode == -signal.SIGKILL, f"{where}: {(proc.stdout + proc.stderr)[-4000:]}"
        killed_at = int(re.findall(r"^KILL (\d+)$", proc.stdout, flags=re.M)[0])
        assert killed_at == (-(-kill // SPE) * SPE if compiled else kill), where
        first, backup_step = runs[i]
        assert first_hook(proc)[0] == first, f"{where}: resumed at the wrong step"
        files = backups(directory)
        if backup_step is None:
            assert files == [], f"{where}: a backup before the first one was due"
        else:
            assert 1 <= len(files) <= 2, f"{where}: {files}"

    proc = run_child(tmp_path, name, out, backup=directory)
    got_params, got = finished(proc, out)
    assert first_hook(proc)[0] == runs[-1][0], "the last run did not resume from the backup"
    assert_same_params(got_params, want_params, cfg["dtype"])
    assert got["history"] == want["history"]
    assert list(directory.iterdir()) == [], "the completed run left backups behind"
    if compiled:  # the last run's epochs (none when it resumed at the very end) were compiled
        assert all(steps == SPE for _, steps in got["hook_calls"])
        assert got["compiled_epoch"] or not got["hook_calls"]


def test_second_run_starts_from_the_backup(tmp_path):
    """With an explicit BackupAndRestore: a kill before the first backup leaves nothing to resume
    (``restored_from`` None, the rerun starts at step 1); a later kill leaves backup files, and the
    rerun's first hook call already has ``restored_from`` set and comes right after its step."""
    directory, out = tmp_path / "backups", tmp_path / "out"
    every = child.CONFIGS["numpy"]["every"]
    proc = run_child(tmp_path, "numpy", out, backup=directory, kill=every - 1, callback=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-4000:]
    assert first_hook(proc) == (1, "None")
    assert backups(directory) == []

    proc = run_child(tmp_path, "numpy", out, backup=directory, kill=20, callback=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-4000:]
    assert first_hook(proc) == (1, "None")  # nothing to resume: a fresh start
    files = backups(directory)
    assert [f.name for f in files] == ["backup-00000005.npz", "backup-00000006.npz"]

    proc = run_child(tmp_path, "numpy", out, backup=directory, callback=True)
    params, result = finished(proc, out)
    step, restored = first_hook(proc)
    assert restored == str(files[-1]) == result["restored_from"]
    assert step == 6 * every + 1  # the newest backup holds step 18 of the 20 the kill left
    assert list(directory.iterdir()) == []


# -- MPI: kill one rank of mpiexec -n 2, rerun ------------------------------------------------

@pytest.mark.skipif(mpi_skip_reason() is not None, reason=str(mpi_skip_reason()))
def test_mpi_rank_killed_and_job_rerun_ends_bit_for_bit(tmp_path):
    def job(out: Path, *extra: str) -> subprocess.CompletedProcess:
        # hydra ends the whole job when one rank dies (killed by a signal), so no launcher
        # option is needed; the timeout turns a hang into a failure.
        return run_mpi_job(2, str(MPI_SCRIPT), str(out), *extra, root=ROOT,
                           timeout=MPI_TIMEOUT_S)

    spe, every = mpi_case.STEPS_PER_EPOCH, mpi_case.EVERY
    rng = np.random.default_rng(2424)
    kill = int(spe + rng.integers(every + 1, spe - 1))  # mid-epoch 2, a few steps after a backup
    assert kill % spe and kill % every
    ref = job(tmp_path / "ref")
    assert ref.returncode == 0, (ref.stdout + ref.stderr)[-4000:]

    directory = tmp_path / "backups"
    killed = job(tmp_path / "out", "--backup", str(directory), "--kill", str(kill))
    assert killed.returncode != 0, (killed.stdout + killed.stderr)[-4000:]
    assert f"KILL 1 {kill}" in killed.stdout
    assert "OK 0" not in killed.stdout and "OK 1" not in killed.stdout
    assert backups(directory)

    resumed = job(tmp_path / "out", "--backup", str(directory))
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    assert sorted(re.findall(r"OK (\d)", resumed.stdout)) == ["0", "1"]
    backup_step = kill // every * every
    assert sorted(re.findall(r"FIRST (\d) (\d+)", resumed.stdout)) == [
        ("0", str(backup_step + 1)), ("1", str(backup_step + 1))]  # both ranks resumed
    with np.load(tmp_path / "ref" / "params.npz") as a, \
            np.load(tmp_path / "out" / "params.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert np.array_equal(a[key], b[key]), key
    assert (json.loads((tmp_path / "out" / "history.json").read_text())
            == json.loads((tmp_path / "ref" / "history.json").read_text()))
    assert list(directory.iterdir()) == []
