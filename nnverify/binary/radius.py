"""Exact robustness radii: the fewest pixel flips that change the vote, or one network's answer, around test images
(increasing Hamming radii, each decided by the exact BNN encoding on the vote model, whose outputs hold all four)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnverify.backends.base import Backend
from nnverify.binary.onnx_export import run_onnx
from nnverify.binary.vote import VoteQuery, query_text
from nnverify.bnn.query import decide_query
from nnverify.result import Verdict

#: Output columns of the vote model: the three networks and the vote.
COLUMNS = ("net1", "net2", "net3", "vote")


@dataclass(frozen=True, slots=True)
class Radius:
    """For one image and output column: the fewest flips that change it (``None``: none up to ``max_radius``, or
    an answer other than sat/unsat), and the seconds spent."""

    image: int
    column: int
    flips: int | None
    seconds: float


def min_flips(
    model: str | os.PathLike[str], image: np.ndarray, column: int, max_radius: int, backend: Backend, workdir: Path
) -> int | None:
    """The smallest ``k <= max_radius`` whose ``ROBUST`` query on output ``column`` is ``sat`` (replayed on the
    vote model), or ``None`` if every radius up to ``max_radius`` is ``unsat`` or one is not decided."""
    target = int(run_onnx(model, image[None, :])[0, column])
    query = workdir / "radius.vnnlib"
    for k in range(1, max_radius + 1):
        query.write_text(query_text(VoteQuery.ROBUST, image, k, target, column=column))
        result = decide_query(model, query, backend, 60.0)
        if result.verdict is Verdict.SAT and result.counterexample is not None:
            flips = int(np.sum(np.rint(result.counterexample.x) != image))
            if flips != k or int(result.counterexample.y[column]) == target:
                return None  # never expected: a smaller radius was unsat
            return k
        if result.verdict is not Verdict.UNSAT:
            return None
    return None


def radii(
    model: str | os.PathLike[str], images: np.ndarray, max_radius: int, backend: Backend, workdir: Path
) -> list[Radius]:
    """``min_flips`` for every image and every output column."""
    out = []
    for index, image in enumerate(images):
        for column in range(len(COLUMNS)):
            started = time.monotonic()
            flips = min_flips(model, image, column, max_radius, backend, workdir)
            out.append(Radius(index, column, flips, time.monotonic() - started))
    return out
