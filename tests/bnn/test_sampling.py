"""Proposals for generation: grown cells obey the shape rules, and only the exact backend makes them answers."""

from __future__ import annotations

import numpy as np
import pytest

from nnverify.backends import get_backend
from nnverify.backends.base import SolveStatus
from nnverify.bnn.cells import check_cell
from nnverify.bnn.generate import GenerateParams, build_query, shape_proposals, solve_query
from nnverify.bnn.sampling import admissible, grow, propose
from nnverify.bnn.shapes import ShapeParams, decode, seed_cells, shape_model
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.spec.discrete import parse_discrete

PARAMS = [
    ShapeParams(2, random_seed=3),
    ShapeParams(3, random_seed=4),
    ShapeParams(2, size=8, random_seed=1, compactness=1),
    ShapeParams(3, size=10, random_seed=2, compactness=2),
    ShapeParams(2, size=9, random_seed=5, solid_fraction=(10, 14)),
]


@pytest.fixture(scope="module")
def d2():
    return to_layers(load_network("networks/porous_bnn_d2.onnx"))


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: f"w{p.grains}-{p.size}-s{p.compactness}-{p.solid_fraction}")
def test_admissible_grown_cells_are_exactly_the_models_solutions(params: ShapeParams) -> None:
    """With the labels fixed, the exact shape model is feasible iff ``admissible`` accepts the grown cell."""
    from ortools.sat.python import cp_model

    from nnverify.bnn.cpsat_shapes import to_cpsat

    model = shape_model(params)
    cp, variables = to_cpsat(model)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    labels = grow(params, model.seeds, np.random.default_rng(0), 60)
    ok = admissible(labels, params)
    for image, accepted in zip(labels, ok, strict=True):
        cp.clear_assumptions()
        cp.add_assumptions([variables[model.labels[r, c, int(image[r, c])]] for r, c in np.ndindex(image.shape)])
        assert (solver.solve(cp) == cp_model.OPTIMAL) == bool(accepted), image
    assert ok.sum() >= 10  # the growth is useful, not only safe
    if params.compactness is None and params.solid_fraction is None:
        assert not any(check_cell(image, params.grains) for image in labels[ok])


def test_growth_spans_small_and_large_grains() -> None:
    params = ShapeParams(2, random_seed=0)
    areas = (grow(params, seed_cells(params), np.random.default_rng(1), 256) > 0).sum(axis=(1, 2))
    assert areas.min() <= 10 and areas.max() >= 80


def test_proposals_are_distinct_admissible_and_inside_the_interval(d2) -> None:
    params = ShapeParams(2, random_seed=0)
    found = list(propose(d2, params, seed_cells(params), 60.0, 70.0, rng=np.random.default_rng(0), batches=2))
    assert len(found) >= 5
    assert len({p.pixels.tobytes() for p in found}) == len(found)
    for p in found:
        assert 60.0 <= p.output <= 70.0
        assert p.output == pytest.approx(float(d2.eval(p.pixels[None].astype(float))[0, 0]))
        assert admissible(p.labels[None], params)[0]
        assert np.array_equal(p.pixels, (p.labels > 0).ravel())


def _query(params: GenerateParams):
    text, model = build_query(params)
    return parse_discrete(text), model


def test_an_accepted_proposal_is_a_checked_answer(d2) -> None:
    params = GenerateParams(ShapeParams(2, random_seed=1), 60.0, 70.0)
    query, model = _query(params)
    out = solve_query(d2, query, get_backend("cpsat"), count=2, proposals=shape_proposals(d2, model, params))
    assert out.status is SolveStatus.FEASIBLE and out.method == "proposal+cpsat"
    assert out.proposals_accepted == 2 and len(out.images) == 2
    for values in out.values:
        labels = decode(values, model, params.shape)
        assert not check_cell(labels, 2)
        assert 60.0 <= float(d2.eval((labels > 0).reshape(1, -1).astype(float))[0, 0]) <= 70.0


def test_wrong_proposals_are_rejected_and_the_search_still_answers(d2) -> None:
    """Cells valid for another interval, and pixel vectors that break the shape rules, are never accepted."""
    params = GenerateParams(ShapeParams(2, random_seed=1), 80.0, 90.0)
    query, model = _query(params)
    elsewhere = GenerateParams(params.shape, 60.0, 70.0)
    wrong = [p for _, p in zip(range(3), shape_proposals(d2, model, elsewhere), strict=False)]
    wrong += [np.ones(256, dtype=np.int64), np.random.default_rng(0).integers(0, 2, 256)]
    out = solve_query(d2, query, get_backend("cpsat"), proposals=iter(wrong), timeout_s=120)
    assert out.proposals_tried == 5 and out.proposals_accepted == 0
    assert out.status is SolveStatus.FEASIBLE and out.method == "bnn+cpsat"
    labels = decode(out.values[0], model, params.shape)
    assert not check_cell(labels, 2)
    assert 80.0 <= float(d2.eval((labels > 0).reshape(1, -1).astype(float))[0, 0]) <= 90.0
