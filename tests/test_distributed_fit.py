"""Data-parallel fit/predict/evaluate: 2 and 4 MPI ranks give one process's results.

The MPI runs start ``mpiexec -n 2|4 python -m mpi4py tests/mpi_scripts/fit.py``
(one job per rank count for the whole parity matrix, to keep start-ups few) on
loopback/shared memory with one BLAS thread per rank, each with a timeout; the
single-process references are computed here, in the pytest process. Skipped
with the reason when mpi4py or mpiexec is missing (``pip install "xpnet[mpi]"``).

Tolerances (relative: max |distributed - single| / max |single|, per parameter
array): float64 1e-12; float32 1e-5 (SGD, momentum) and 1e-4 (Adam). The
seed's in-backward SGD has no optimizer to share, so in distributed mode
``SGD()`` takes its step (``W -= lr * (x^T g)`` instead of ``W -= x^T (lr g)``):
it is compared with the single-process *seed* fit, within the same bounds.
Measured on this matrix (all backends, 2 and 4 ranks): at most 1.5e-15 in
float64 and 4e-7 in float32, for every optimizer -- the bounds leave margin
for other BLAS builds and summation orders.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import assert_ranks_ok, mpi_env, mpi_skip_reason, mpiexec_path
from _helpers import run_mpi as run_mpi_job

import xpnet
from xpnet._distributed_fit import on_every_rank
from xpnet.distributed import SingleProcessCommunicator, raised_on_every_rank

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "mpi_scripts"
sys.path.insert(0, str(SCRIPTS))
import fit as cases  # noqa: E402  (tests/mpi_scripts/fit.py: the runs both sides share)

TIMEOUT_S = 420  # a loaded 2-core machine: 4 ranks each importing torch and jax
BACKENDS = ("numpy", "array_api_strict", "torch", "jax")
RTOL = {("float64", "seed"): 1e-12, ("float64", "sgd"): 1e-12, ("float64", "momentum"): 1e-12,
        ("float64", "adam"): 1e-12, ("float32", "seed"): 1e-5, ("float32", "sgd"): 1e-5,
        ("float32", "momentum"): 1e-5, ("float32", "adam"): 1e-4}




needs_mpi = pytest.mark.skipif(mpi_skip_reason() is not None, reason=str(mpi_skip_reason()))


def _env() -> dict:
    return mpi_env(ROOT)


def run_mpi(n: int, *args: str, cwd=ROOT, timeout=TIMEOUT_S) -> subprocess.CompletedProcess:
    """``mpiexec -n n python -m mpi4py ARGS`` on loopback, with a timeout."""
    return run_mpi_job(n, *args, root=ROOT, cwd=cwd, timeout=timeout)


assert_all_ok = assert_ranks_ok


def _installed(backends) -> list:
    return [b for b in backends
            if importlib.util.find_spec({"jax": "jax"}.get(b, b)) is not None]


# -- parity: 2 and 4 ranks against one process ----------------------------------------

@pytest.fixture(scope="module")
def single_process():
    """Each case of the matrix trained in this process (``distributed=None``), cached."""
    cache = {}

    def result(backend, dtype, optimizer):
        key = (backend, dtype, optimizer)
        if key not in cache:
            trained = cases.train_case(backend, dtype, optimizer, None)
            cache[key] = cases.case_result(*trained, None)
        return cache[key]

    return result


def _pairs(n: int) -> list:
    """(backend, dtype) of the ``n``-rank job: everything on 2 ranks; on 4, float32 on NumPy only."""
    return [(b, d) for b in _installed(BACKENDS) for d in cases.DTYPES
            if n == 2 or d == "float64" or b == "numpy"]


@pytest.fixture(scope="module", params=[2, 4])
def mpi_results(request, tmp_path_factory):
    n = request.param
    out = tmp_path_factory.mktemp(f"ranks{n}")
    pairs = ",".join(f"{b}:{d}" for b, d in _pairs(n))
    if mpi_skip_reason() is None:
        assert_all_ok(run_mpi(n, str(SCRIPTS / "fit.py"), "parity", str(out), pairs), n)
    return n, out


def _relative_error(got, want) -> float:
    scale = float(np.max(np.abs(want))) or 1.0
    return float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) / scale


@needs_mpi
@pytest.mark.parametrize("dtype", cases.DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_ranks_reproduce_one_process(mpi_results, single_process, backend, dtype):
    if backend not in _installed(BACKENDS):
        pytest.skip(f"{backend} is not installed")
    n, out = mpi_results
    if (backend, dtype) not in _pairs(n):
        pytest.skip(f"{n} ranks run float32 on NumPy only (few 4-rank runs)")
    for optimizer in cases.OPTIMIZERS:
        want = single_process(backend, dtype, optimizer)
        with np.load(out / f"{backend}_{dtype}_{optimizer}.npz") as got:
            params = sorted(k for k in got.files if k.startswith("param"))
            assert len(params) == 6
            errors = [_relative_error(got[k], want[k]) for k in params]
            assert max(errors) <= RTOL[dtype, optimizer], (n, optimizer, errors)
            # Training moved the parameters (a frozen run would pass trivially).
            assert _relative_error(want["param0"], _initial_weights(backend, dtype)) > 1e-3
            # Sharded predict: the same classes as one process (blocks as one process cuts them).
            assert np.array_equal(got["predict"], want["predict"]), (n, optimizer)
            loss, accuracy = got["scores"]
            assert accuracy == want["scores"][1]
            assert loss == pytest.approx(want["scores"][0], rel=RTOL[dtype, optimizer] * 10)
            got_history = json.loads(str(got["history"]))
            want_history = json.loads(str(want["history"]))
            assert got_history["loss"] == pytest.approx(want_history["loss"], rel=1e-5)
            assert got_history["val_acc"] == want_history["val_acc"]


def _initial_weights(backend, dtype):
    be = xpnet.get_backend(backend, dtype=dtype)
    model = xpnet.Sequential.mlp(cases.SIZES, init="he_normal", seed=0, backend=be)
    return be.to_numpy(model.layers[0].weights)


# -- faults ----------------------------------------------------------------------

@needs_mpi
def test_a_rank_that_raises_mid_training_ends_the_job():
    # The timeout turns a hang into a failure (TimeoutExpired); no timing assertion.
    proc = run_mpi(2, str(SCRIPTS / "fit.py"), "raise", "3", timeout=120)
    assert proc.returncode != 0
    assert "rank 1 fails at step 3" in proc.stderr, proc.stderr[-4000:]
    assert "training went on" not in proc.stderr and "OK " not in proc.stdout


@needs_mpi
def test_disagreeing_ranks_are_refused_before_training():
    proc = run_mpi(2, str(SCRIPTS / "fit.py"), "refuse", timeout=120)
    assert_all_ok(proc, 2)
    text = proc.stdout  # ranks' lines may interleave: count markers, not lines
    assert text.count("REFUSED 0: ") == 4 and text.count("REFUSED 1: ") == 4, text
    assert text.count("(rank 0: {'X shape': (192, 12)") == 4  # both mismatches, named per rank
    assert "rank 1: {'X shape': (193, 12)" in text and "rank 1: {'X shape': (192, 13)" in text
    assert text.count("global_batch=5 is not divisible by the 2 ranks") == 2
    assert text.count("different training data") == 2


# -- the command line -----------------------------------------------------------------

def _mnist_present() -> bool:
    from xpnet import datasets as ds

    return ds._files_in(ds._checkout_dir())[0] is not None


@needs_mpi
@pytest.mark.skipif(not _mnist_present(), reason="no MNIST copy in data/mnist")
def test_cli_distributed_equals_one_process(tmp_path):
    args = ["-m", "xpnet", "train", "--epochs", "1", "--dtype", "float64", "--limit", "1024",
            "--hidden", "32", "--quiet"]
    proc = run_mpi(2, *args, "--distributed", "--save", "a.npz", "--plot", "a.png",
                   cwd=tmp_path)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    # Only rank 0 prints: one epoch line and one result line.
    assert proc.stdout.count("epoch 1/1") == 1 and proc.stdout.count("test_acc=") == 1, proc.stdout
    single = subprocess.run([sys.executable, *args, "--save", "b.npz"], env=_env(),
                            cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert single.returncode == 0, single.stderr[-4000:]
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        weights = [k for k in b.files if b[k].dtype.kind == "f"]
        assert len(weights) == 4
        for k in weights:
            assert _relative_error(a[k], b[k]) <= 1e-12, k
    assert (tmp_path / "a.png").stat().st_size > 0


def _cli_job(tmp_path, *command: str, batch_size: int) -> subprocess.CompletedProcess:
    """``mpiexec -n 2 COMMAND train --distributed ...`` without ``-m mpi4py``: the
    command line itself must end the job when a rank fails."""
    cmd = [mpiexec_path(), "-n", "2", sys.executable, *command, "train", "--distributed",
           "--epochs", "1", "--limit", "256", "--batch-size", str(batch_size), "--quiet",
           "--save", "never.npz"]
    return subprocess.run(cmd, env=_env(), cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)


@needs_mpi
@pytest.mark.skipif(not _mnist_present(), reason="no MNIST copy in data/mnist")
def test_cli_refuses_an_indivisible_batch_on_every_rank_and_exits_without_abort(tmp_path):
    proc = _cli_job(tmp_path, "-m", "xpnet", batch_size=33)
    assert proc.returncode == 1, proc.stderr[-4000:]
    # Every rank raised the error together: each exits by itself, so nothing is
    # aborted and both messages reach the launcher.
    assert proc.stderr.count("xpnet: error: global_batch=33 is not divisible by the 2 ranks") \
        == 2, proc.stderr[-4000:]
    assert "MPI_Abort" not in proc.stderr, proc.stderr[-4000:]
    assert "epoch 1/1" not in proc.stdout and not (tmp_path / "never.npz").exists()


@needs_mpi
@pytest.mark.skipif(not _mnist_present(), reason="no MNIST copy in data/mnist")
def test_cli_aborts_the_job_when_one_rank_fails_alone(tmp_path):
    # Rank 1 fails while rank 0 waits for it in a collective: without MPI_Abort the
    # job would hang until the timeout below turns it into a failure.
    proc = _cli_job(tmp_path, str(SCRIPTS / "cli_one_rank_fails.py"), batch_size=32)
    assert proc.returncode != 0, (proc.stdout + proc.stderr)[-4000:]
    assert "epoch 1/1" not in proc.stdout and not (tmp_path / "never.npz").exists()


# -- one process, no MPI needed ----------------------------------------------------------

def test_only_errors_shared_by_every_rank_are_marked_so():
    """The command line exits without MPI_Abort only after an error every rank raised."""
    def fails():
        raise OSError("disk full")

    with pytest.raises(OSError) as alone:
        fails()
    with pytest.raises(OSError, match="disk full") as shared:
        on_every_rank(SingleProcessCommunicator(), "writing", fails)
    assert not raised_on_every_rank(alone.value)
    assert raised_on_every_rank(shared.value)
    assert on_every_rank(SingleProcessCommunicator(), "adding", lambda: 1 + 1) == 2


class _TwoRanks:
    """What the command line's error path uses of a communicator: the abort it calls."""

    size, aborted = 2, None

    def abort(self, code):
        self.aborted = code


@pytest.mark.parametrize("shared,runner,aborted", [
    (True, False, None),  # every rank failed together: each exits by itself
    (True, True, 1),      # python -m mpi4py aborts any failing exit anyway
    (False, False, 1),    # one rank alone: the others would wait forever
])
def test_the_command_line_aborts_the_job_only_when_it_must(shared, runner, aborted,
                                                           monkeypatch):
    from xpnet import cli

    def fails():
        raise OSError("disk full")

    with pytest.raises(OSError) as caught:
        on_every_rank(SingleProcessCommunicator(), "writing", fails) if shared else fails()
    monkeypatch.setattr(cli, "_ABORT_GRACE_S", 0.0)
    if runner:
        monkeypatch.setitem(sys.modules, "mpi4py.run", object())
    else:
        monkeypatch.delitem(sys.modules, "mpi4py.run", raising=False)
    args = type("Args", (), {"communicator": _TwoRanks()})()
    cli._abort_other_ranks(args, 1, caught.value)
    assert args.communicator.aborted == aborted


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_one_rank_communicator_trains_like_no_communicator(backend, optimizer):
    """The split step (KeepGrads, allreduce, optimizer step) on one rank is the fused step:
    bit for bit, or to rounding where the gradient pass is compiled (JAX)."""
    runs = [cases.case_result(*cases.train_case(backend, backend.dtype_name, optimizer, comm), comm)
            for comm in (None, SingleProcessCommunicator())]
    rtol = 0.0 if not backend.compiles else RTOL[backend.dtype_name, optimizer]
    for k in runs[0]:
        if k.startswith("param"):
            assert _relative_error(runs[1][k], runs[0][k]) <= rtol, k
    assert np.array_equal(runs[0]["predict"], runs[1]["predict"])
    assert runs[0]["scores"][1] == runs[1]["scores"][1]


def _gradient_setup(backend):
    from xpnet.losses import one_hot
    from xpnet.training import first_trainable_index, loss_layers

    X, y = cases.synthetic(backend)
    model = xpnet.Sequential.mlp(cases.SIZES, init="he_normal", seed=0, backend=backend)
    layers = loss_layers(model.layers)
    onehot = one_hot(y, cases.N_CLASSES, dtype=backend.dtype, xp=backend.xp)
    idx = backend.asarray(np.arange(3, 35), dtype=backend.index_dtype)
    return model, layers, first_trainable_index(layers), X, onehot, idx


def test_the_gradient_pass_matches_its_portable_twin_and_changes_nothing(backend):
    from xpnet._distributed_fit import make_gradient_fn, portable_gradient_fn

    model, layers, first, X, onehot, idx = _gradient_setup(backend)
    before = [backend.to_numpy(p) for layer in layers for p in layer.params.values()]
    results = [fn(backend, layers, first)(X, onehot, idx)
               for fn in (portable_gradient_fn, make_gradient_fn)]
    rtol = 1e-12 if backend.dtype_name == "float64" else 1e-5
    (loss_a, grads_a), (loss_b, grads_b) = results
    assert float(loss_b) == pytest.approx(float(loss_a), rel=rtol)
    assert len(grads_a) == len(grads_b) == 6
    for a, b in zip(grads_a, grads_b):
        assert backend.owns(b) and _relative_error(backend.to_numpy(b), backend.to_numpy(a)) <= rtol
    after = [backend.to_numpy(p) for layer in layers for p in layer.params.values()]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    assert all(layer.grads == {} and layer.optimizer is None for layer in layers)


def test_a_compiling_backend_traces_the_gradient_pass_once_per_fit(backend):
    if not backend.compiles:
        pytest.skip(f"{backend.name} does not compile")
    X, y = cases.synthetic(backend)
    model = xpnet.Sequential.mlp(cases.SIZES, seed=0, backend=backend)
    calls = []
    forward = model.layers[0]._forward
    model.layers[0]._forward = lambda x: calls.append(1) or forward(x)
    model.fit(X, y, epochs=2, batch_size=16, train_accuracy=False,
              distributed=SingleProcessCommunicator())
    assert len(calls) == 1  # 24 steps, one trace


def test_distributed_fit_refuses_dropout():
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = cases.synthetic(be)
    model = xpnet.Sequential([xpnet.Dense(cases.N_FEATURES, 8, rng=0, backend=be),
                              xpnet.layers.Dropout(0.5, rng=0, backend=be),
                              xpnet.Dense(8, cases.N_CLASSES, rng=1, backend=be)])
    with pytest.raises(NotImplementedError, match="Dropout"):
        model.fit(X, y, batch_size=32, distributed=SingleProcessCommunicator())


def test_a_layer_that_updates_itself_without_handing_gradients_is_refused():
    from xpnet.errors import StateError

    class SelfUpdating(xpnet.Dense):  # ignores layer.optimizer: nothing to allreduce
        def _backward(self, input, grad_output, need_input_grad=True):
            return grad_output @ self.weights.T

    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = cases.synthetic(be)
    model = xpnet.Sequential([SelfUpdating(cases.N_FEATURES, cases.N_CLASSES, rng=0, backend=be)])
    with pytest.raises(StateError, match="computed no gradient for"):
        model.fit(X, y, batch_size=32, distributed=SingleProcessCommunicator())


@pytest.mark.parametrize("bad", [True, 2, "mpi"])
def test_distributed_must_be_a_communicator(bad):
    be = xpnet.get_backend("numpy", dtype="float64")
    X, y = cases.synthetic(be)
    model = xpnet.Sequential.mlp(cases.SIZES, seed=0, backend=be)
    for call in (lambda: model.fit(X, y, batch_size=32, distributed=bad),
                 lambda: model.predict(X, distributed=bad),
                 lambda: model.evaluate(X, y, distributed=bad)):
        with pytest.raises(TypeError, match="distributed must be a communicator"):
            call()


def test_shard_rows_deal_whole_blocks_and_cover_every_row():
    from xpnet.feeds.sharded import shard_rows

    for n, block, size in [(150, 40, 2), (150, 40, 4), (150, 40, 8), (0, 40, 2), (40, 40, 3)]:
        ranges = [shard_rows(n, block, r, size) for r in range(size)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert all(lo % block == 0 or lo == n for lo, _ in ranges)


def test_cli_help_lists_distributed_and_limit(capsys):
    from xpnet import cli

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--distributed" in text and "--limit" in text
