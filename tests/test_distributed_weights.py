"""Data-parallel fit with other losses, sample/class weights, validation_split and alpha.

Two MPI jobs in all (``mpiexec -n 2|4 python -m mpi4py tests/mpi_scripts/weights.py``,
loopback/shared memory, one BLAS thread per rank, each with a timeout): the
2-rank job trains every case of ``weights.CASES`` on every installed backend and
then tries the bad inputs; the 4-rank job trains the cases on NumPy. The
single-process references are trained here, in the pytest process, with
``distributed=None``. All in float64: parameters within 1e-12 (relative, per
array), as the parity of the default loss (tests/test_distributed_fit.py).

The cases weigh the first global batch zero and the next one in part, so a
rank's slice or a whole batch of zero weight is in every weighted run; one
case stops early (EarlyStopping on the reduced ``val_loss``) and must stop at
one process's epoch on every rank.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import assert_ranks_ok, mpi_skip_reason, run_mpi

import xpnet
from xpnet.distributed import SingleProcessCommunicator

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "mpi_scripts"
sys.path.insert(0, str(SCRIPTS))
import weights as cases  # noqa: E402  (tests/mpi_scripts/weights.py: the runs both sides share)

TIMEOUT_S = 420  # a loaded 2-core machine: ranks importing torch and jax
BACKENDS = ("numpy", "array_api_strict", "torch", "jax")
RTOL = 1e-12  # float64 parameters, relative per array
SCORE_RTOL = 1e-10  # losses and accuracies: sums over ranks added in another order

needs_mpi = pytest.mark.skipif(mpi_skip_reason() is not None, reason=str(mpi_skip_reason()))


def _installed(backends) -> list:
    return [b for b in backends if importlib.util.find_spec(b) is not None]


def _job_backends(n: int) -> list:
    return _installed(BACKENDS) if n == 2 else ["numpy"]


@pytest.fixture(scope="module", params=[2, 4])
def mpi_job(request, tmp_path_factory):
    """One MPI job per rank count: parity of every case (and, on 2 ranks, the bad inputs)."""
    n = request.param
    out = tmp_path_factory.mktemp(f"weights{n}")
    if mpi_skip_reason() is None:
        proc = run_mpi(n, str(SCRIPTS / "weights.py"), "both" if n == 2 else "parity",
                       str(out), ",".join(_job_backends(n)), root=ROOT, timeout=TIMEOUT_S)
        assert_ranks_ok(proc, n)
    return n, out


@pytest.fixture(scope="module")
def single_process():
    cache: dict = {}

    def result(backend, case):
        if (backend, case) not in cache:
            cache[backend, case] = cases.train_case(backend, case, None)
        return cache[backend, case]

    return result


def _relative_error(got, want) -> float:
    scale = float(np.max(np.abs(want))) or 1.0
    return float(np.max(np.abs(got - want))) / scale


def assert_same_run(got, want, label) -> None:
    """Parameters, predictions, scores and history of two runs of one case agree (float64)."""
    params = sorted(k for k in want if k.startswith("param"))
    assert len(params) == 4 and sorted(k for k in got if k.startswith("param")) == params
    errors = [_relative_error(got[k], want[k]) for k in params]
    assert max(errors) <= RTOL, (label, errors)
    if want["predict"].dtype.kind == "f" and want["predict"].ndim == 2 \
            and not np.all(np.isin(want["predict"], (0.0, 1.0))):  # the MSE's outputs
        assert _relative_error(got["predict"], want["predict"]) <= RTOL, label
    else:  # classes, or 0/1 per output
        assert np.array_equal(got["predict"], want["predict"]), label
    for key in ("scores", "weighted_scores"):
        np.testing.assert_allclose(got[key], want[key], rtol=SCORE_RTOL, err_msg=label)
    got_history, want_history = (json.loads(str(r["history"])) for r in (got, want))
    assert sorted(got_history) == sorted(want_history), label
    assert got_history["epoch"] == want_history["epoch"], label  # early stopping: same epoch
    for key in got_history:
        assert got_history[key] == pytest.approx(want_history[key], rel=SCORE_RTOL), (label, key)


@needs_mpi
@pytest.mark.parametrize("case", list(cases.CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_ranks_reproduce_one_process(mpi_job, single_process, backend, case):
    n, out = mpi_job
    if backend not in _job_backends(n):
        pytest.skip(f"{backend} is not installed" if n == 2 else "4 ranks run NumPy only")
    want = single_process(backend, case)
    with np.load(out / f"{backend}_{case}.npz") as got:
        assert_same_run(dict(got), want, (n, backend, case))
    # Training moved the parameters: a frozen run would pass trivially.
    initial = _initial_first_weights(backend, case)
    assert _relative_error(want["param0"], initial) > 1e-3


def _initial_first_weights(backend, case):
    loss, outputs = cases.CASES[case][:2]
    be = xpnet.get_backend(backend, dtype="float64")
    model = xpnet.Sequential.mlp([cases.N_FEATURES, 16, outputs], init="he_normal", seed=0,
                                 backend=be)
    return be.to_numpy(model.layers[0].weights)


def test_the_early_stopping_case_stops_early(single_process):
    history = json.loads(str(single_process("numpy", "early")["history"]))
    assert len(history["epoch"]) < cases.CASES["early"][4]


#: label -> what each rank must say (rank 1 raises its own error where only it is wrong).
REFUSALS = {
    "fit-weights-differ": ["DistributedError: the ranks were given different sample weights"] * 2,
    "fit-length-differs": ["DistributedError: the ranks were given different data sizes"] * 2,
    "fit-length-wrong": ["ShapeError: sample_weight must have shape (192,), got (191,)"] * 2,
    "fit-negative-on-one-rank": [
        "DistributedError: another rank failed while checking the sample weights",
        "ValueError: sample_weight must be >= 0"],
    "fit-nan": ["ValueError: sample_weight contains NaN or infinite values (1 of 192)"] * 2,
    "fit-class-weight-differs": ["DistributedError: the ranks were given different settings"] * 2,
    "fit-alpha-differs": ["DistributedError: the ranks were given different settings"] * 2,
    "fit-split-differs": ["DistributedError: the ranks were given different settings"] * 2,
    "evaluate-weights-differ": [
        "DistributedError: the ranks were given different sample weights"] * 2,
    "evaluate-negative-on-one-rank": [
        "DistributedError: another rank failed while checking the sample weights",
        "ValueError: sample_weight must be >= 0"],
}


@needs_mpi
def test_bad_weights_and_disagreeing_options_fail_on_every_rank(mpi_job):
    n, out = mpi_job
    if n != 2:
        pytest.skip("the bad inputs run in the 2-rank job")
    # No epoch started (the script's spy would have raised) and the job ended: no hang.
    for rank in range(n):
        refused = json.loads((out / f"refused{rank}.json").read_text())
        assert sorted(refused) == sorted(REFUSALS)
        for label, wanted in REFUSALS.items():
            assert wanted[rank] in refused[label], (label, rank, refused[label])


# -- one process, no MPI needed ----------------------------------------------------------

@pytest.mark.parametrize("case", list(cases.CASES))
def test_a_one_rank_communicator_trains_like_no_communicator(backend64, case):
    """The split step with losses, weights and the penalty, on one rank, is one process's step."""
    runs = [cases.train_case(backend64, case, comm) for comm in
            (None, SingleProcessCommunicator())]
    assert_same_run(runs[1], runs[0], case)
