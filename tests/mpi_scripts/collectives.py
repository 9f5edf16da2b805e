"""Checks run on every rank of ``mpiexec -n N python -m mpi4py collectives.py MODE [ARGS]``.

Started by tests/test_distributed.py. Each rank prints ``OK <rank>`` when all
its checks pass; a failed assertion raises, and ``-m mpi4py`` aborts the job.
"""

import sys

import numpy as np

import xpnet
from xpnet.distributed import DistributedError, init

SHAPES = [(3, 4), (4,), (2, 2, 2), (1,)]


def rank_arrays(rank, dtype):
    """Host arrays that differ on every rank (float64 draws, cast once)."""
    rng = np.random.default_rng(100 + rank)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def check_allreduce(comm, backend_name):
    for dtype, rtol in (("float64", 1e-15), ("float32", 2e-7)):
        be = xpnet.get_backend(backend_name, dtype=dtype)
        for trial in range(2):  # the second call reuses the fused buffer
            mine = rank_arrays(comm.rank + 10 * trial, dtype)
            everyone = comm.comm.allgather(mine)
            out = comm.allreduce_mean_([be.asarray(a) for a in mine], be)
            for i, got in enumerate(out):
                want = np.mean(np.stack([r[i].astype(np.float64) for r in everyone]), axis=0)
                assert be.owns(got) and tuple(got.shape) == SHAPES[i], (got, SHAPES[i])
                np.testing.assert_allclose(be.to_numpy(got), want, rtol=rtol, atol=rtol)
            comm.check_equal(out, be, "allreduce results")  # bitwise equal on every rank
        assert len(comm._buffers) == 1, comm._buffers  # one buffer per list of shapes
        comm._buffers.clear()
    scalars = [comm.allreduce_scalar(float(comm.rank + 1), op) for op in ("sum", "mean", "max")]
    n = comm.size
    assert scalars == [n * (n + 1) / 2, (n + 1) / 2, float(n)], scalars


def check_broadcast(comm):
    be = xpnet.get_backend("numpy", dtype="float64")
    params = [be.asarray(a) for a in rank_arrays(comm.rank, "float64")]
    try:
        comm.check_equal(params, be)
        raise AssertionError("different parameters passed check_equal")
    except DistributedError as exc:
        assert "differ between ranks" in str(exc), exc
    params = comm.broadcast(params, be)
    comm.check_equal(params, be)
    for got, want in zip(params, rank_arrays(0, "float64")):
        assert np.array_equal(got, want)


def check_gather(comm):
    be = xpnet.get_backend("numpy", dtype="float32")
    block = be.asarray(np.full((comm.rank + 1, 3), comm.rank, dtype=np.float32))
    labels = be.asarray(np.arange(comm.rank + 1), dtype=be.index_dtype)
    want = np.repeat(np.arange(comm.size), np.arange(1, comm.size + 1))
    gathered = comm.gather(block, be)
    if comm.is_root:
        assert gathered.shape == (len(want), 3) and np.array_equal(gathered[:, 0], want)
    else:
        assert gathered is None
    assert np.array_equal(comm.allgather(block, be)[:, 1], want)
    every_label = comm.allgather(labels, be)
    assert every_label.dtype == be.index_dtype and every_label.shape == (len(want),)


def check_shard(comm, n=103, global_batch=None):
    global_batch = 4 * comm.size if global_batch is None else global_batch
    steps = comm.shard(n, global_batch, rng=7)
    every = comm.comm.allgather(steps)
    order = np.random.default_rng(7).permutation(n)  # what one process draws
    assert len(steps) == n // global_batch
    for s in range(len(steps)):
        batch = np.concatenate([every[r][s] for r in range(comm.size)])
        assert np.array_equal(batch, order[s * global_batch:(s + 1) * global_batch])
    try:
        comm.shard(n, global_batch, rng=comm.rank)  # different seeds: refused
        raise AssertionError("different seeds passed")
    except DistributedError as exc:
        assert "batch order" in str(exc), exc


def expect_error(kind, text, fn, *args):
    try:
        fn(*args)
    except kind as exc:
        assert text in str(exc), exc
        print(f"ERROR {kind.__name__}: {exc}", flush=True)
        return
    raise AssertionError(f"{fn} accepted {args}")


def main(mode, *args):
    comm = init(require_mpi=True)
    assert comm.size > 1, "start me with mpiexec -n N (N >= 2)"
    if mode == "allreduce":
        check_allreduce(comm, args[0])
    elif mode == "collectives":
        check_broadcast(comm)
        check_gather(comm)
        check_shard(comm)
    elif mode == "mismatch":  # rank 1 loaded a different data set
        n_samples = 1000 + (comm.rank == 1)
        expect_error(DistributedError, "different number of training samples",
                     comm.check_same, n_samples, "number of training samples")
        expect_error(ValueError, "not divisible", comm.shard, 1000, 2 * comm.size + 1, 0)
    elif mode == "raise":  # rank 1 fails at step 3; the others wait in the allreduce
        be = xpnet.get_backend("numpy")
        grads = [be.zeros(s) for s in SHAPES]
        for step in range(10):
            if comm.rank == 1 and step == 3:
                raise RuntimeError("rank 1 fails at step 3")
            grads = comm.allreduce_mean_(grads, be)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(f"OK {comm.rank}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
