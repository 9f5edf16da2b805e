"""``xpnet train --distributed`` where only rank 1 fails, run as
``mpiexec -n 2 python cli_one_rank_fails.py ARGS`` (without ``-m mpi4py``).

Started by tests/test_distributed_fit.py. Rank 1 cannot read MNIST (an injected
OSError) while rank 0 goes on into training and waits for it in a collective:
the command line must end the whole job (MPI_Abort) instead of leaving rank 0
waiting forever.
"""

import os
import sys

from xpnet import cli


def _unreadable(*args, **kwargs):
    raise OSError("rank 1 cannot read MNIST (injected by the test)")


if __name__ == "__main__":
    if os.environ.get("PMI_RANK") == "1":  # set by MPICH's launcher
        cli.load_mnist = _unreadable
    sys.exit(cli.main(sys.argv[1:]))
