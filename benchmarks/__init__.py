"""Benchmarks for xpnet: ``python -m benchmarks.mlp`` (see benchmarks/README.md).

Modules
-------
mlp
    The harness: interleaved per-epoch training and prediction timings for
    xpnet on every backend, the hand-written NumPy reference and idiomatic
    PyTorch; matmul ceiling, GFLOP/s, machine and BLAS report; ``--memory``.
handwritten_numpy
    The reference: the tutorial's NumPy MLP written out by hand.
torch_idiomatic
    The same MLP as ``nn.Sequential`` + ``CrossEntropyLoss`` + ``optim.SGD``.
memory
    A full training run in a child process, recording its RSS after each epoch.
"""
