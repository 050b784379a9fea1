"""Run options: one frozen dataclass passed down the pipeline (no module-level globals)."""

from __future__ import annotations

from dataclasses import dataclass

#: Relative safety margin added to every floating-point bound (see ``bounds/interval.py``).
BOUND_MARGIN_REL = 1e-9
#: Absolute safety margin added to every floating-point bound.
BOUND_MARGIN_ABS = 1e-12


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
            before its whole-box MILP (``bounds/refine.py``). Off by default: it pays when the instance has
            both cores to itself and needs it (README "MILP-refined intermediate bounds").
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
    refine_bounds: bool = False
