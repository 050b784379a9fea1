"""Verdicts, counterexamples and results, and the VNN-COMP result/witness text format."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class Verdict(StrEnum):
    """VNN-COMP verdicts: ``sat`` = the property is violated (counterexample found), ``unsat`` = it holds."""

    SAT = "sat"
    UNSAT = "unsat"
    TIMEOUT = "timeout"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Counterexample:
    """A replayed counterexample: flat input ``x`` (C order of the ONNX input) and onnxruntime's output ``y``."""

    x: np.ndarray
    y: np.ndarray

    def to_vnncomp(self) -> str:
        """The witness in VNN-COMP format ``((X_0 v) ... (Y_m v))``, values printed exactly (repr)."""
        rows = [f"(X_{i} {float(v)!r})" for i, v in enumerate(self.x.ravel())]
        rows += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(self.y.ravel())]
        return "(" + "\n".join(rows) + ")\n"


@dataclass(frozen=True, slots=True)
class Result:
    """What ``verify()`` returns.

    Attributes:
        verdict: sat / unsat / timeout / unknown.
        counterexample: Present exactly when ``verdict`` is sat; already replayed on onnxruntime.
        method: Which phase decided (``interval``, ``attack``, ``milp:highs`` ...).
        seconds: Wall time spent in ``verify()``.
        note: Human-readable detail (why unknown, what was replayed ...).
        stats: Counters for ``--json`` (disjuncts pruned, solver calls ...).
    """

    verdict: Verdict
    counterexample: Counterexample | None = None
    method: str = ""
    seconds: float = 0.0
    note: str = ""
    stats: dict[str, float | int | str] = field(default_factory=dict)

    def to_vnncomp(self) -> str:
        """The VNN-COMP result file: the verdict line, then the witness after ``sat``."""
        text = f"{self.verdict.value}\n"
        if self.verdict is Verdict.SAT and self.counterexample is not None:
            text += self.counterexample.to_vnncomp()
        return text

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable summary (used by ``nnverify check --json``); NaN and infinities become ``None``
        (``json.dumps`` would write ``NaN``, which is not JSON)."""
        data: dict[str, object] = {
            "verdict": self.verdict.value,
            "method": self.method,
            "seconds": round(self.seconds, 6),
            "note": self.note,
            "stats": {key: _finite_or_none(value) for key, value in self.stats.items()},
        }
        if self.counterexample is not None:
            data["counterexample"] = {
                "x": [_finite_or_none(float(v)) for v in self.counterexample.x.ravel()],
                "y": [_finite_or_none(float(v)) for v in self.counterexample.y.ravel()],
            }
        return data


def _finite_or_none(value: float | int | str) -> float | int | str | None:
    """``value`` unless it is a non-finite float."""
    return None if isinstance(value, float) and not np.isfinite(value) else value
