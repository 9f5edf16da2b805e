"""xpnet.distributed: the single-process communicator here, the MPI one under real ``mpiexec``.

The MPI tests start ``mpiexec -n 2|4 python -m mpi4py tests/mpi_scripts/collectives.py``
(through ``-m mpi4py`` so an exception on one rank aborts the job instead of
hanging the others), over loopback/shared memory only, each with a timeout.
They are skipped, with the reason, when mpi4py or mpiexec is missing
(``pip install "xpnet[mpi]"``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import mpi_skip_reason, mpiexec_path

import xpnet
from xpnet.distributed import (
    DistributedError,
    FusedHostBuffer,
    SingleProcessCommunicator,
    _collective_path,
    init,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "mpi_scripts" / "collectives.py"
TIMEOUT_S = 180  # a slow shared machine: several Python start-ups with torch/jax per rank




needs_mpi = pytest.mark.skipif(mpi_skip_reason() is not None, reason=str(mpi_skip_reason()))


def run_mpi(n: int, *args: str) -> subprocess.CompletedProcess:
    """``mpiexec -n n python -m mpi4py collectives.py args`` on loopback, with a timeout."""
    env = dict(os.environ, UCX_TLS="self,sm", HYDRA_IFACE="lo", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", JAX_ENABLE_X64="1",
               JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    cmd = [mpiexec_path(), "-n", str(n), sys.executable, "-m", "mpi4py", str(SCRIPT), *args]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def assert_all_ok(proc, n: int) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # Ranks' lines may interleave in the launcher's output: count markers, not lines.
    assert sorted(map(int, re.findall(r"OK (\d+)", proc.stdout))) == list(range(n)), out[-4000:]


# -- under mpiexec ---------------------------------------------------------------

@needs_mpi
@pytest.mark.parametrize("n", [2, 4])
@pytest.mark.parametrize("backend", ["numpy", "array_api_strict", "torch", "jax"])
def test_allreduce_mean_equals_numpy_mean(n, backend):
    pytest.importorskip({"jax": "jax.numpy"}.get(backend, backend))
    assert_all_ok(run_mpi(n, "allreduce", backend), n)


@needs_mpi
@pytest.mark.parametrize("n", [2, 4])
def test_broadcast_check_equal_gather_shard(n):
    assert_all_ok(run_mpi(n, "collectives"), n)


@needs_mpi
@pytest.mark.parametrize("n", [2, 4])
def test_different_data_sizes_and_indivisible_batch_fail_on_every_rank(n):
    proc = run_mpi(n, "mismatch")
    assert_all_ok(proc, n)
    assert proc.stdout.count("(rank 0: 1000, rank 1: 1001") == n, proc.stdout  # the message names the ranks
    assert proc.stdout.count(f"is not divisible by the {n} ranks") == n, proc.stdout


@needs_mpi
def test_a_rank_that_raises_ends_the_job_instead_of_hanging():
    # The timeout of run_mpi turns a hang into a failure (TimeoutExpired).
    proc = run_mpi(2, "raise")
    assert proc.returncode != 0
    assert "rank 1 fails at step 3" in proc.stderr, proc.stderr[-4000:]
    assert "OK " not in proc.stdout


# -- one process, no MPI needed -----------------------------------------------------

def test_init_without_a_launcher_is_single_process(monkeypatch):
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    comm = init()
    assert isinstance(comm, SingleProcessCommunicator)
    assert (comm.rank, comm.size, comm.is_root) == (0, 1, True)


def test_missing_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    # From a checkout the hint is an editable install of it; from a wheel, the extra by name.
    with pytest.raises(ImportError, match=r'pip install (-e "\S+|"xpnet)\[mpi\]"'):
        init(require_mpi=True)


def test_single_process_collectives_return_copies(backend):
    comm = SingleProcessCommunicator()
    xs = [backend.asarray(np.arange(6.0).reshape(2, 3)), backend.asarray([5.0])]
    for out in (comm.allreduce_mean_(xs, backend), comm.broadcast(xs, backend)):
        assert all(backend.owns(o) and o is not x for o, x in zip(out, xs))
        assert [backend.to_numpy(o).tolist() for o in out] == [[[0, 1, 2], [3, 4, 5]], [5]]
    assert comm.allreduce_scalar(backend.asarray(2.5), "mean") == 2.5
    assert comm.gather(xs[0], backend) is xs[0] and comm.check_same(3, "n") == 3
    assert comm.check_equal(xs, backend) == comm.check_equal(xs, backend)
    with pytest.raises(ValueError, match="op must be"):
        comm.allreduce_scalar(1.0, "prod")


def test_fused_buffer_is_allocated_once_per_list_of_shapes(backend):
    comm = SingleProcessCommunicator()
    xs = [backend.zeros((3, 2)), backend.zeros((2,))]
    comm.allreduce_mean_(xs, backend)
    data = comm._buffers[next(iter(comm._buffers))].data
    comm.allreduce_mean_([backend.asarray(np.ones((3, 2))), backend.asarray([1.0, 2.0])], backend)
    assert len(comm._buffers) == 1 and comm._buffers[next(iter(comm._buffers))].data is data
    assert data.tolist() == [1, 1, 1, 1, 1, 1, 1, 2]


def test_fused_buffer_refuses_mixed_dtypes_and_empty_lists():
    be = xpnet.get_backend("numpy", dtype="float64")
    comm = SingleProcessCommunicator()
    with pytest.raises(TypeError, match="share a dtype"):
        comm.allreduce_mean_([be.zeros(2), be.zeros(2, dtype=be.xp.float32)], be)
    with pytest.raises(ValueError, match="non-empty"):
        comm.allreduce_mean_([], be)
    assert FusedHostBuffer([(2, 3), (4,)], "float32").offsets == [0, 6, 10]


def test_an_unimplemented_device_path_stages_through_the_host():
    class NcclBackend:  # a backend declaring the capability of the planned NCCL path
        device_collectives = "nccl"

    assert _collective_path(NcclBackend()) == "host"
    assert _collective_path(xpnet.get_backend("numpy")) == "host"


class _FakeRanks(SingleProcessCommunicator):
    """The sharding arithmetic of rank ``rank`` of ``size``, without MPI."""

    def __init__(self, rank, size):
        super().__init__()
        self.rank, self.size = rank, size


@pytest.mark.parametrize("size", [1, 2, 4])
def test_shards_cover_each_global_batch_exactly_once(size):
    n, global_batch = 50, 8
    shards = [_FakeRanks(r, size).shard(n, global_batch, rng=3) for r in range(size)]
    order = np.random.default_rng(3).permutation(n)
    assert all(len(s) == n // global_batch for s in shards)
    for step in range(n // global_batch):
        batch = np.concatenate([shards[r][step] for r in range(size)])
        assert np.array_equal(batch, order[step * global_batch:(step + 1) * global_batch])
    unshuffled = _FakeRanks(size - 1, size).shard(n, global_batch, shuffle=False)
    assert unshuffled[0].tolist() == list(range(8 - 8 // size, 8))


@pytest.mark.parametrize("bad", [6, 0, -4, 2.0, True])
def test_indivisible_or_invalid_global_batch_is_refused(bad):
    with pytest.raises(ValueError, match="global_batch"):
        _FakeRanks(0, 4).shard(100, bad, rng=0)


def test_distributed_error_is_a_value_error():
    assert issubclass(DistributedError, ValueError)


def test_benchmark_counts_the_seed_mlp_parameters():
    from benchmarks.distributed import seed_parameter_shapes

    shapes = seed_parameter_shapes()
    assert len(shapes) == 6 and sum(int(np.prod(s)) for s in shapes) == 100_710


@needs_mpi
def test_benchmark_runs_undermpiexec_path():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "benchmarks.distributed", "--repeats", "5",
                           "--rows", "640", "--timeout", "120"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "100,710 float32 parameters" in proc.stdout and "2 ranks" in proc.stdout, proc.stdout
    out = proc.stdout
    assert "correctness and overhead, not speed-up" in out
    # Per-epoch figures for 1 and 2 ranks at the batches that fit in 640 rows.
    assert out.count("global batch    32:") == 1 + 1 + 2 * 2 and out.count("s/epoch") == 4, out
    assert "8 GPUs" in out and "4 CPU nodes" in out and "speed-up" in out, out


def test_scaling_model_is_compute_over_compute_plus_ring_allreduce():
    from benchmarks.distributed import scaling_model

    m = scaling_model(1000, batch=400, workers=4, flops=6e6, floor_s=0.0, bandwidth=4e3,
                      latency=0.0)
    # 6 * 1000 * 400 FLOP at 6 MFLOP/s = 0.4 s alone; 0.1 s each on 4 workers, plus
    # 2 * 3/4 * 4000 bytes / 4000 B/s = 1.5 s of ring allreduce.
    assert m["one_s"] == pytest.approx(0.4) and m["compute_s"] == pytest.approx(0.1)
    assert m["comm_s"] == pytest.approx(1.5) and m["speedup"] == pytest.approx(0.4 / 1.6)
