"""Follow-ups: ``generate`` keeps its budget in every phase, multi-network results go through ``outputs.py``,
a VNN-LIB 2 file given the 1.0 way gets a hint, repeated notes are collapsed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from click.testing import CliRunner

from nnverify.bnn import sampling
from nnverify.bnn.generate import GenerateParams, build_query, shape_proposals
from nnverify.bnn.shapes import ShapeParams
from nnverify.budget import Budget, BudgetExpired
from nnverify.cli import main
from nnverify.encode.bnn import encode_bnn
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers

D3 = "networks/porous_bnn_d3.onnx"
#: An interval inside the network's output range that the proposals never hit: they grow all their batches.
NARROW = ("70.5", "70.51")


@pytest.fixture
def grow_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the batches of proposal cells grown (``sampling.grow`` calls)."""
    calls: list[int] = []
    real = sampling.grow

    def counting(*args: object, **kwargs: object) -> np.ndarray:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sampling, "grow", counting)
    return calls


@pytest.mark.parametrize("timeout", ["0", "1"])
def test_generate_answers_timeout_within_its_budget(timeout: str, grow_calls: list[int]) -> None:
    start = time.monotonic()
    args = ["generate", "--network", D3, "--grains", "3", "--interval", *NARROW, "--timeout", timeout]
    result = CliRunner().invoke(main, args)
    elapsed = time.monotonic() - start
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["timeout"]
    assert "note: the time budget ran out while" in result.stderr
    assert len(grow_calls) <= 1  # it grew all 8 batches of proposals before it looked at the budget
    assert elapsed < float(timeout) + 6.0  # a generous slack (it took 10-13 s)


def test_an_expired_budget_stops_encoding_and_proposals() -> None:
    layers = to_layers(load_network(D3))
    spent = Budget(time.monotonic() - 1.0)
    with pytest.raises(BudgetExpired, match="encoding the network"):
        encode_bnn(layers, np.zeros(256), np.ones(256), budget=spent)
    params = GenerateParams(ShapeParams(3), float(NARROW[0]), float(NARROW[1]))
    _, model = build_query(params)
    with pytest.raises(BudgetExpired, match="growing proposal cells"):
        next(shape_proposals(layers, model, params, budget=spent))
