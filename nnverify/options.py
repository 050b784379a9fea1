"""Run options: one frozen dataclass passed down the pipeline (no module-level globals)."""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Relative safety margin added to every floating-point bound (see ``bounds/interval.py``).
BOUND_MARGIN_REL = 1e-9
#: Absolute safety margin added to every floating-point bound.
BOUND_MARGIN_ABS = 1e-12
#: The MILP refinement of intermediate bounds is on by default from this many cores: on one core it takes the
#: search's time and lost two late whole-box MILP wins on MNIST-FC (380be1b:bench/results/2026-11-23-relu-bab-refine).
REFINE_MIN_CORES = 2


@dataclass(frozen=True, slots=True)
class Options:
    """How ``verify()`` runs.

    Attributes:
        timeout_s: Wall-clock budget for the whole run (start-up excluded in the API, included in the CLI).
        backend: Name of the exact backend (see ``nnverify.backends.BACKENDS``).
        seed: Seed of every random choice (sampling attack).
        attack_samples: Number of random points tried before the exact search.
        output_rtol: VNN-COMP witness rule: onnxruntime output vs. claimed output, relative tolerance.
        violation_atol: VNN-COMP witness rule: absolute tolerance on the violated output constraints.
        bound_margin_rel: Relative outward margin on floating-point bounds (soundness; do not set to 0).
        bound_margin_abs: Absolute outward margin on floating-point bounds.
        precision: Arithmetic of the clpq backend: ``"exact"`` (rationals, clpq) or ``"float"`` (clpr).
        refine_bounds: ReLU search with HiGHS: refine the intermediate bounds by MILPs in the racing thread
            before its whole-box MILP (``bounds/refine.py``). ``None`` (the default) decides by the cores:
            on when the run has at least ``REFINE_MIN_CORES`` (README "MILP-refined intermediate bounds").
        threads: CPU cores the run may use (the refinement's parallel MILP solves, or without refinement the
            ReLU search's threads, ``search_threads``); 0: every core the process may run on
            (``os.sched_getaffinity``). ``nnverify bench run --jobs J`` gives each instance
            ``cores // J``.
        memory_limit_mb: Resident memory the run may use, in MB; ``None`` (the default): ``MEMORY_SHARE``
            (60 %) of the machine's available memory when the run starts (``budget.default_memory_limit_mb``).
            A large allocation that would not fit ends the run with ``unknown`` and a note naming the phase.
    """

    timeout_s: float = 60.0
    backend: str = "highs"
    seed: int = 0
    attack_samples: int = 2000
    output_rtol: float = 1e-3
    violation_atol: float = 1e-4
    bound_margin_rel: float = BOUND_MARGIN_REL
    bound_margin_abs: float = BOUND_MARGIN_ABS
    precision: str = "exact"
    refine_bounds: bool | None = None
    threads: int = 0
    memory_limit_mb: float | None = None

    def cores(self) -> int:
        """The cores this run may use (``threads``, or what the process may run on)."""
        if self.threads > 0:
            return self.threads
        return available_cores()

    def memory_limit(self) -> float:
        """The memory cap in MB (``memory_limit_mb``, else the default share of the machine's memory)."""
        if self.memory_limit_mb is not None:
            return self.memory_limit_mb
        from nnverify.budget import default_memory_limit_mb

        return default_memory_limit_mb()

    def refines(self) -> bool:
        """Whether the ReLU search refines intermediate bounds by MILPs (``refine_bounds``, else by cores)."""
        if self.refine_bounds is not None:
            return self.refine_bounds
        return self.cores() >= REFINE_MIN_CORES

    def search_threads(self) -> int:
        """Threads of the ReLU search: 1 while the MILP refinement runs (it takes the cores: two search
        threads beside it slowed it down enough that MNIST 256x4 prop_14 eps 0.05 went from unsat in 69 s to
        a timeout), else the cores left beside the racing whole-box MILP."""
        return 1 if self.refines() else max(1, self.cores() - 1)


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
