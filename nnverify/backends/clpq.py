"""The ``clpq`` backend: exact decision in SWI-Prolog's clpq (rationals), called in-process through janus-swi.

The problem is written as a constraint logic program (``encode/prolog.py``; the search itself is
``clpq_solver.pl``), loaded into a temporary Prolog module and run under ``call_with_time_limit/2``. Prolog
returns plain numbers only (janus cannot hand back constrained variables): the solver grounds every variable
at a vertex before answering. ``Precision.FLOAT`` runs the same program on clpr (floating point) instead.

Guarantees: in ``exact`` precision an INFEASIBLE answer is exact for the constraints as written, whose
numbers are the exact values of the float64 weights and bounds (no solver tolerance). In ``float``
precision clpr compares with a small epsilon, so INFEASIBLE is as reliable as a floating-point LP. Either
way a FEASIBLE answer is only a candidate until onnxruntime replays it.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from fractions import Fraction
from typing import Any, ClassVar

from nnverify.backends.base import BackendResult, Capabilities, SolveStatus
from nnverify.backends.pool import SolverPool
from nnverify.encode.problem import Problem
from nnverify.encode.prolog import Precision, write_program
from nnverify.options import Options

#: Defined once per process in module ``user``: load a program into a temporary module and decide it.
_RUNNER = """
:- use_module(library(time)).
:- use_module(library(modules)).
nnverify_clpq_run(File, Seconds, Status, Values) :-
    catch(call_with_time_limit(Seconds,
              in_temporary_module(M, load_files(M:File, [silent(true)]), M:nnv_decide(Status, Values))),
          Error,
          nnverify_clpq_error(Error, Status, Values)).

nnverify_clpq_error(time_limit_exceeded, timeout, []) :- !.
nnverify_clpq_error(error(Formal, _), error, Message) :- !,
    format(atom(Message), "~q", [Formal]).
nnverify_clpq_error(Error, error, Message) :-
    format(atom(Message), "~q", [Error]).
"""

INSTALL_HINT = (
    "it needs SWI-Prolog >= 9.1.12 and janus-swi: run `make setup` in the nnverify checkout (it builds "
    "SWI-Prolog if needed), or install SWI-Prolog >= 9.1.12 yourself and then `pip install janus-swi`"
)

#: An unlimited budget (timeout_s=inf) becomes this many seconds (call_with_time_limit needs a number).
MAX_SECONDS = 1e7

_runner_loaded = False


def _janus() -> Any:
    """The ``janus_swi`` module with the runner predicate loaded."""
    global _runner_loaded
    import janus_swi

    if not _runner_loaded:
        janus_swi.consult("nnverify_clpq_runner", data=_RUNNER)
        _runner_loaded = True
    return janus_swi


def swipl_executable() -> str | None:
    """The ``swipl`` program of the SWI-Prolog that janus-swi uses (to run exported programs), if found."""
    import shutil
    from pathlib import Path

    if importlib.util.find_spec("janus_swi") is not None:
        try:
            answer = _janus().query_once("current_prolog_flag(home, Home), current_prolog_flag(arch, Arch)")
            candidate = Path(str(answer["Home"])) / "bin" / str(answer["Arch"]) / "swipl"
            if candidate.is_file():
                return str(candidate)
        except Exception:  # a broken installation: fall back to PATH
            pass
    return shutil.which("swipl")


class ClpqBackend:
    """Exact feasibility in SWI-Prolog clpq (or clpr with ``precision="float"``)."""

    name: ClassVar[str] = "clpq"

    def __init__(self, *, precision: Precision | str = Precision.EXACT) -> None:
        self.precision = Precision(precision)

    @classmethod
    def from_options(cls, options: Options, pool: SolverPool | None = None) -> ClpqBackend:
        return cls(precision=options.precision)

    @property
    def capabilities(self) -> Capabilities:
        """Exact in ``exact`` precision; one SWI-Prolog engine per process, so not thread-safe."""
        return Capabilities(exact=self.exact)

    @property
    def exact(self) -> bool:
        """True if the backend decides in exact rational arithmetic (then the network should not be merged)."""
        return self.precision is Precision.EXACT

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None if janus-swi loads and finds a new enough SWI-Prolog, else the install hint."""
        if importlib.util.find_spec("janus_swi") is None:
            return INSTALL_HINT
        try:
            if not _janus().query_once("exists_source(library(clpq)), exists_source(library(clpr))")["truth"]:
                return f"SWI-Prolog has no library(clpq)/library(clpr); {INSTALL_HINT}"
        except Exception as err:  # ImportError/OSError for a missing libswipl, PrologError for libraries
            return f"janus-swi failed to start SWI-Prolog ({err}); {INSTALL_HINT}"
        return None

    def solve(self, problem: Problem, *, timeout_s: float) -> BackendResult:
        """Decide feasibility of ``problem``; a solution's values are the Problem's variables."""
        start = time.perf_counter()
        if timeout_s <= 0:
            return BackendResult(SolveStatus.TIMEOUT, note="no time left to solve")
        program = write_program(problem, self.precision)
        fd, path = tempfile.mkstemp(prefix="nnverify-", suffix=".pl")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(program.body)
            left = timeout_s - (time.perf_counter() - start)
            if left <= 0:
                return BackendResult(SolveStatus.TIMEOUT, note="time budget spent writing the program")
            inputs = {"File": path, "Seconds": min(float(left), MAX_SECONDS)}
            answer = _janus().query_once("nnverify_clpq_run(File, Seconds, Status, Values)", inputs)
        finally:
            os.unlink(path)
        seconds = time.perf_counter() - start
        status = str(answer["Status"])
        if status == "sat":
            values = program.values([_to_float(v) for v in answer["Values"]])
            return BackendResult(SolveStatus.FEASIBLE, values, f"clpq ({self.precision})", seconds)
        if status == "unsat":
            return BackendResult(SolveStatus.INFEASIBLE, None, f"clpq ({self.precision})", seconds)
        if status == "timeout":
            return BackendResult(SolveStatus.TIMEOUT, None, "clpq: time limit", seconds)
        return BackendResult(SolveStatus.UNKNOWN, None, f"clpq failed: {str(answer['Values'])[:300]}", seconds)


def _to_float(value: object) -> float:
    """A Prolog number (int, ``Fraction`` or float) as the nearest float64."""
    if isinstance(value, Fraction | int | float):
        return float(value)
    raise TypeError(f"clpq returned a non-number {value!r}")
