"""One BLAS thread per process unless the user says otherwise: imported by ``cli`` before numpy.

nnverify's parallelism is explicit: the ReLU search's threads, the HiGHS refinement workers, ``bench run
--jobs``. BLAS's own thread pool on top of those oversubscribes the cores: on a 2-core machine whose cores
were busy, the attack phase of an MNIST-FC instance took 3.2 s with OpenBLAS's default threads and 0.31 s
with one (26.5 s once). A value already in the environment wins. It only works before numpy is first
imported, which is why the command line imports this module first; the library leaves the caller's
environment alone.
"""

from __future__ import annotations

import os

#: The variables OpenBLAS, OpenMP builds and MKL read when they start their pools.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

for _name in BLAS_THREAD_VARIABLES:
    os.environ.setdefault(_name, "1")
