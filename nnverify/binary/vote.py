"""The 2-of-3 vote verified as one system: discrete queries over the vote model in a Hamming ball around a test
image, decided exactly and replayed on every network."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass

import numpy as np

from nnverify.backends.base import Backend
from nnverify.binary.onnx_export import VoteRule, run_onnx
from nnverify.bnn.query import decide_query
from nnverify.result import Result, Verdict
from nnverify.spec.discrete import DiscreteRow, DiscreteVar, write_discrete


class VoteQuery(enum.Enum):
    """The question asked in a Hamming ball of radius ``k`` (the L1 ball; on {0, 1} pixels an L∞ ball of radius
    < 1 is the image itself and >= 1 is every image) around a binarised test image.

    ``ROBUST``: the vote differs from its value at the image (``unsat``: the vote is robust at radius ``k``).
    ``DIFFERS``: network 1 gives the image's label and the vote does not ("wrong where network 1 is right").
    Queries are discrete queries (``spec/discrete.py``) over the vote model's inputs ``X_0..X_63`` (Bool pixels)
    and outputs ``Y_0..Y_3`` = ``[y1, y2, y3, vote]``.
    """

    ROBUST = "robust"
    DIFFERS = "differs"


@dataclass(frozen=True, slots=True)
class VoteAnswer:
    """A decided vote query: the verdict, the witness (``sat``), the three networks' outputs and the vote on it
    replayed on onnxruntime, and seconds spent."""

    verdict: Verdict
    x: np.ndarray | None
    replayed: tuple[int, int, int, int] | None
    method: str
    seconds: float
    note: str


def ball_rows(image: np.ndarray, radius: int) -> list[DiscreteRow]:
    """``sum_{image_i = 0} X_i + sum_{image_i = 1} (1 - X_i) <= radius`` (omitted when it always holds)."""
    image = np.asarray(image).ravel()
    if radius >= image.size:
        return []
    terms = tuple((f"X_{i}", 1.0 if v == 0 else -1.0) for i, v in enumerate(image))
    return [DiscreteRow(terms, -float("inf"), float(radius - int(image.sum())))]


def query_text(
    kind: VoteQuery, image: np.ndarray, radius: int, target: int, comment: str = "", *, column: int = 3
) -> str:
    """The discrete query: for ``ROBUST`` ``target`` is the value at the image of output ``column`` (3: the vote,
    0-2: one network), for ``DIFFERS`` the image's label (``column`` must be 3)."""
    n = int(np.asarray(image).size)
    variables = [DiscreteVar(f"X_{i}", "Bool", 0.0, 1.0) for i in range(n)]
    variables += [DiscreteVar(f"Y_{j}", "Real", -float("inf"), float("inf")) for j in range(4)]
    rows = ball_rows(image, radius)
    other = float(1 - target)
    rows.append(DiscreteRow(((f"Y_{column}", 1.0),), other, other))
    if kind is VoteQuery.DIFFERS:
        rows.append(DiscreteRow((("Y_0", 1.0),), float(target), float(target)))
    header = [comment] if comment else []
    return "".join(write_discrete(variables, rows, (), header))


def holds(kind: VoteQuery, ys: tuple[int, int, int, int], target: int) -> bool:
    """Whether outputs ``(y1, y2, y3, vote)`` satisfy the query's output conditions."""
    if kind is VoteQuery.ROBUST:
        return ys[3] != target
    return ys[0] == target and ys[3] != target


def decide(
    vote_model: str | os.PathLike[str],
    nets: tuple[str | os.PathLike[str], ...],
    rule: VoteRule,
    query: tuple[VoteQuery, np.ndarray, int, int],
    query_path: str | os.PathLike[str],
    backend: Backend,
    timeout_s: float = 60.0,
) -> VoteAnswer:
    """Decide the query at ``query_path`` (``query`` = its kind, image, radius, target) on the vote model and
    replay a ``sat`` on the three network files ``nets``.

    ``bnn.query.decide_query`` decides it (exact encoding; its ``sat`` is already replayed on the vote model);
    then the witness is run on each network's own ONNX file, the vote recomputed in numpy with ``rule``: these
    outputs must equal the vote model's, satisfy the query and lie in the ball, else the answer is ``unknown``.
    """
    kind, image, radius, target = query
    result: Result = decide_query(vote_model, query_path, backend, timeout_s)
    if result.verdict is not Verdict.SAT or result.counterexample is None:
        return VoteAnswer(result.verdict, None, None, result.method, result.seconds, result.note)
    x = np.rint(result.counterexample.x).astype(np.int64)
    ys = [int(run_onnx(path, x[None, :])[0, 0]) for path in nets]
    vote = int(rule.apply(*(np.array([y]) for y in ys))[0])
    replayed = (ys[0], ys[1], ys[2], vote)
    distance = int(np.sum(x != np.asarray(image).ravel()))
    vote_model_y = tuple(int(v) for v in result.counterexample.y)
    if not holds(kind, replayed, target) or distance > radius or vote_model_y != replayed:
        note = f"replay failed: networks {replayed}, vote model {vote_model_y}, distance {distance}"
        return VoteAnswer(Verdict.UNKNOWN, None, None, result.method, result.seconds, note)
    return VoteAnswer(Verdict.SAT, x, replayed, result.method, result.seconds, result.note)
