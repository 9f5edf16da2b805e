"""Benchmarks for xpnet: ``python -m benchmarks.mlp`` (see benchmarks/README.md).

Modules
-------
mlp
    The harness and its command line: interleaved per-epoch training and
    prediction timings, ratios, GFLOP/s, ``--memory``.
workload
    The seed MLP's sizes, its nominal FLOP count and the data.
machine
    Machine, BLAS and thread-pool report; CPU contention while timing.
contenders
    xpnet per backend, hand-written NumPy, idiomatic PyTorch, the GEMMs-only
    floor and the matmul ceiling.
report
    The result as text or Markdown tables.
targets
    Issue 4's targets and whether a run meets them.
handwritten_numpy
    The reference: the tutorial's NumPy MLP written out by hand.
torch_idiomatic
    The same MLP as ``nn.Sequential`` + ``CrossEntropyLoss`` + ``optim.SGD``.
memory
    A full training run in a child process, recording its RSS after each epoch.
"""
