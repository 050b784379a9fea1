"""Shape model of a unit cell: exact against brute force on small grids, valid and distinct cells at 16x16.

The rule checker here is written from the rules in ``nnverify.bnn.shapes``' docstring and shares no code with the
model; 16x16 cells are also checked by ``nnverify.bnn.cells.check_cell`` (grains, border, separation).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from collections import deque

import numpy as np
import pytest

from nnverify.bnn.cells import check_cell
from nnverify.bnn.shapes import Clause, Linear, ShapeModel, ShapeParams, decode, seed_cells, shape_model

STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1))


@pytest.fixture(scope="module")
def cp_model():
    return pytest.importorskip("ortools.sat.python.cp_model")


# --- independent rule checker ---------------------------------------------------------------------------------


def _flood(mask: np.ndarray, start: tuple[int, int]) -> set[tuple[int, int]]:
    """Cells of ``mask`` 4-connected to ``start`` on the torus."""
    n = mask.shape[0]
    seen, queue = {start}, deque([start])
    while queue:
        r, c = queue.popleft()
        for dr, dc in STEPS:
            cell = ((r + dr) % n, (c + dc) % n)
            if mask[cell] and cell not in seen:
                seen.add(cell)
                queue.append(cell)
    return seen


def _grown_in_rings(grain: np.ndarray, seed: tuple[int, int]) -> bool:
    """Every grain cell joined to the seed by a path that moves one Manhattan ring inwards at each step."""
    cells = sorted(zip(*np.nonzero(grain), strict=True), key=lambda p: abs(p[0] - seed[0]) + abs(p[1] - seed[1]))
    reached = {seed}
    for r, c in cells[1:]:
        inward = [(r - np.sign(r - seed[0]), c), (r, c - np.sign(c - seed[1]))]
        if not any(cell != (r, c) and cell in reached for cell in inward):
            return False
        reached.add((r, c))
    return True


def _runs(line: np.ndarray) -> int:
    return int(line[0]) + int(np.count_nonzero(line[1:] & ~line[:-1]))


def violations(
    labels: np.ndarray,
    grains: int,
    seeds: tuple[tuple[int, int], ...],
    s: int | None = None,
    solid: tuple[int, int] | None = None,
    *,
    rings: bool = True,
    void: bool = True,
) -> list[str]:
    """The rules a label image breaks (``rings=False``: plain 4-connected grains; ``void=False``: no void rule)."""
    problems = []
    if labels[0].any() or labels[-1].any() or labels[:, 0].any() or labels[:, -1].any():
        problems.append("border")
    for k, seed in enumerate(seeds, start=1):
        if labels[seed] != k:
            problems.append(f"seed {k}")
    for axis in (0, 1):
        other = np.roll(labels, 1, axis=axis)
        if np.any((labels > 0) & (other > 0) & (labels != other)):
            problems.append("grains touch")
    if problems:
        return problems
    for k, seed in enumerate(seeds, start=1):
        grain = labels == k
        if len(_flood(grain, seed)) != grain.sum() or (rings and not _grown_in_rings(grain, seed)):
            problems.append(f"grain {k} not grown from its seed")
        if s is not None and max(max(_runs(row) for row in grain), max(_runs(col) for col in grain.T)) > s:
            problems.append(f"grain {k} has more than {s} runs in a line")
    if void and len(_flood(labels == 0, (0, 0))) != np.count_nonzero(labels == 0):
        problems.append("void not connected")
    if solid is not None and not solid[0] <= np.count_nonzero(labels) <= solid[1]:
        problems.append("solid fraction")
    return problems


def _labellings(params: ShapeParams, seeds: tuple[tuple[int, int], ...]):
    """All labellings of the interior with the seeds fixed (one grain and a solid count: only that many cells)."""
    n = params.size
    free = [(r, c) for r in range(1, n - 1) for c in range(1, n - 1) if (r, c) not in seeds]
    base = np.zeros((n, n), dtype=np.int8)
    for k, seed in enumerate(seeds, start=1):
        base[seed] = k
    if params.grains == 1 and params.solid_fraction is not None:
        lo, hi = params.solid_fraction
        for count in range(max(lo - 1, 0), hi):
            for cells in itertools.combinations(free, count):
                labels = base.copy()
                for cell in cells:
                    labels[cell] = 1
                yield labels
        return
    for choice in itertools.product(range(params.grains + 1), repeat=len(free)):
        labels = base.copy()
        labels[tuple(np.array(free).T)] = choice
        yield labels


def brute_force(params: ShapeParams, *, rings: bool = True, void: bool = True) -> set[bytes]:
    """Every valid label image (as bytes) among all labellings of the interior."""
    seeds = seed_cells(params)
    return {
        labels.tobytes()
        for labels in _labellings(params, seeds)
        if not violations(
            labels, params.grains, seeds, params.compactness, params.solid_fraction, rings=rings, void=void
        )
    }


def model_images(params: ShapeParams, cp_model) -> set[bytes]:
    """Every label image of the model: solve, block that labelling, repeat until infeasible.

    (Projected enumeration; ``enumerate_all_solutions`` would list every parent tree and level assignment too.)
    """
    from nnverify.bnn.cpsat_shapes import to_cpsat

    model = shape_model(params)
    cp, variables = to_cpsat(model)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    images = set()
    while solver.solve(cp) in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        values = {name: solver.value(variables[name]) for name in model.labels.values()}
        image = decode(values, model, params)
        assert image.tobytes() not in images
        images.add(image.tobytes())
        cp.add_bool_or([~variables[model.labels[r, c, int(image[r, c])]] for r, c in np.ndindex(image.shape)])
    return images


# --- exactness on small grids ------------------------------------------------------------------------------------

SMALL = {
    "5x5-w1": ShapeParams(grains=1, size=5, seeds=((2, 2),)),
    "5x5-w1-corner-seed": ShapeParams(grains=1, size=5, seeds=((1, 1),)),
    "5x5-w1-s1": ShapeParams(grains=1, size=5, seeds=((3, 2),), compactness=1),
    "5x5-w2": ShapeParams(grains=2, size=5, seeds=((1, 1), (3, 3))),
    "5x5-w2-s1": ShapeParams(grains=2, size=5, seeds=((1, 2), (3, 2)), compactness=1),
    "5x5-w2-solid4": ShapeParams(grains=2, size=5, seeds=((1, 1), (3, 3)), solid_fraction=(4, 4)),
    "6x6-w1-solid5": ShapeParams(grains=1, size=6, seeds=((2, 2),), solid_fraction=(5, 5)),
    "6x6-w1-s1-solid5": ShapeParams(grains=1, size=6, seeds=((1, 2),), compactness=1, solid_fraction=(5, 5)),
}


@pytest.mark.parametrize("params", SMALL.values(), ids=SMALL.keys())
def test_model_images_equal_brute_force(params, cp_model):
    expected = brute_force(params)
    assert len(expected) > 1
    assert model_images(params, cp_model) == expected


def test_every_rule_matters_in_the_small_cases():
    """Without each rule, some small case would admit more images: the brute-force comparison tests them all."""
    loose = {k: dataclasses.replace(p, compactness=None, solid_fraction=None) for k, p in SMALL.items()}
    assert brute_force(loose["5x5-w1-s1"]) > brute_force(SMALL["5x5-w1-s1"])  # compactness
    assert brute_force(loose["5x5-w2-solid4"]) > brute_force(SMALL["5x5-w2-solid4"])  # solid fraction
    assert brute_force(SMALL["5x5-w1-corner-seed"], void=False) > brute_force(SMALL["5x5-w1-corner-seed"])
    assert brute_force(SMALL["6x6-w1-solid5"], rings=False) > brute_force(SMALL["6x6-w1-solid5"])


@pytest.mark.parametrize("key", ["5x5-w1-s1", "5x5-w2-s1", "6x6-w1-s1-solid5"])
def test_convex_grains_grow_in_rings(key):
    """With s = 1 the ring rule removes nothing: every convex grain around its seed is grown in rings."""
    params = SMALL[key]
    assert brute_force(params, rings=False) == brute_force(params)


def _random_candidates(rng: np.random.Generator, params: ShapeParams, count: int):
    """Near-valid label images: grains grown at random from their seeds, then one cell relabelled in half of them."""
    n, seeds = params.size, seed_cells(params)
    for _ in range(count):
        labels = np.zeros((n, n), dtype=np.int8)
        for k, seed in enumerate(seeds, start=1):
            labels[seed] = k
            for _ in range(int(rng.integers(0, 2 * n))):
                r, c = map(int, rng.choice(np.argwhere(labels == k)))
                dr, dc = STEPS[int(rng.integers(4))]
                if 0 < r + dr < n - 1 and 0 < c + dc < n - 1 and labels[r + dr, c + dc] == 0:
                    labels[r + dr, c + dc] = k
        if rng.random() < 0.5:
            labels[int(rng.integers(1, n - 1)), int(rng.integers(1, n - 1))] = int(rng.integers(params.grains + 1))
        yield labels


@pytest.mark.parametrize("compactness", [2, 3])
def test_model_accepts_exactly_the_valid_images_7x7(compactness, cp_model):
    """On 7x7 (where s = 2 and s = 3 differ), sampled images: feasible with the labels fixed iff valid."""
    from nnverify.bnn.cpsat_shapes import to_cpsat

    params = ShapeParams(grains=2, size=7, seeds=((2, 2), (4, 4)), compactness=compactness)
    model = shape_model(params)
    cp, variables = to_cpsat(model)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    verdicts = []
    for labels in _random_candidates(np.random.default_rng(compactness), params, 100):
        valid = not violations(labels, 2, model.seeds, compactness)
        cp.clear_assumptions()
        cp.add_assumptions([variables[model.labels[r, c, int(labels[r, c])]] for r, c in np.ndindex(labels.shape)])
        feasible = solver.solve(cp) == cp_model.OPTIMAL
        assert feasible == valid, labels
        verdicts.append(valid)
    assert 15 <= sum(verdicts) <= 85


# --- the model's form ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grains", [2, 3])
def test_model_form(grains):
    params = ShapeParams(grains=grains, compactness=1, solid_fraction=(60, 90))
    model = shape_model(params)
    names = [v.name for v in model.variables]
    assert len(names) == len(set(names))
    assert model.pixels == tuple(f"X_{i}" for i in range(256))
    assert all(re.fullmatch(r"A_[A-Za-z0-9_]+", name) for name in names if name not in model.pixels)
    assert set(model.labels) == {(r, c, k) for r in range(16) for c in range(16) for k in range(grains + 1)}
    domains = {v.name: (v.lb, v.ub) for v in model.variables}
    assert all(isinstance(row, Linear) and all(n in domains for n, _ in row.terms) for row in model.linear)
    assert all(isinstance(cl, Clause) and all(domains[n] == (0, 1) for n, _ in cl.literals) for cl in model.clauses)
    assert len(model.variables) < 4000


def test_seeds_drawn_apart_and_deterministic():
    params = ShapeParams(grains=3, random_seed=7)
    seeds = seed_cells(params)
    assert seeds == seed_cells(params) == shape_model(params).seeds
    assert all(0 < v < 15 for seed in seeds for v in seed)
    assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) >= 2 for a, b in itertools.combinations(seeds, 2))


@pytest.mark.parametrize(
    "params",
    [
        ShapeParams(grains=2, seeds=((3, 3),)),
        ShapeParams(grains=1, seeds=((3, 16),)),
        ShapeParams(grains=0),
        ShapeParams(grains=1, compactness=0),
        ShapeParams(grains=1, solid_fraction=(5, 4)),
    ],
    ids=["seed-count", "seed-off-grid", "no-grain", "s=0", "fraction-order"],
)
def test_bad_params_rejected(params):
    with pytest.raises(ValueError):
        shape_model(params)


def test_decode_rejects_two_labels():
    params = ShapeParams(grains=1, size=3, seeds=((1, 1),))
    model: ShapeModel = shape_model(params)
    values = {name: int(k == 0) for (r, c, k), name in model.labels.items()}
    assert decode(values, model, params).tolist() == [[0] * 3] * 3
    values[model.labels[1, 1, 1]] = 1
    with pytest.raises(ValueError, match="carries labels"):
        decode(values, model, params)


# --- 16x16 -------------------------------------------------------------------------------------------------------


def _check16(image: np.ndarray, params: ShapeParams) -> None:
    assert image.shape == (16, 16) and image.dtype == np.int8
    assert check_cell(image, params.grains) == []
    seeds = seed_cells(params)
    assert violations(image, params.grains, seeds, params.compactness, params.solid_fraction) == []


@pytest.mark.parametrize("grains", [2, 3])
def test_16x16_distinct_valid_cells(grains, cp_model):
    from nnverify.bnn.cpsat_shapes import solve_shapes

    params = ShapeParams(grains=grains, random_seed=grains)
    images = solve_shapes(params, count=5, time_limit_s=20)
    assert len(images) == 5
    assert len({(image > 0).tobytes() for image in images}) == 5
    for image in images:
        _check16(image, params)


@pytest.mark.parametrize("grains", [2, 3])
def test_16x16_convex_with_exact_solid_fraction(grains, cp_model):
    from nnverify.bnn.cpsat_shapes import solve_shapes

    params = ShapeParams(grains=grains, compactness=1, solid_fraction=(70, 70), random_seed=1)
    images = solve_shapes(params, count=2, time_limit_s=20)
    assert len(images) == 2
    for image in images:
        _check16(image, params)
        assert np.count_nonzero(image) == 70
        for k in range(1, grains + 1):
            grain = image == k
            assert all(_runs(line) <= 1 for line in [*grain, *grain.T])  # row- and column-convex


@pytest.mark.parametrize(
    "params",
    [
        ShapeParams(grains=2, seeds=((5, 5), (5, 6))),
        ShapeParams(grains=2, seeds=((0, 5), (9, 9))),
        ShapeParams(grains=2, seeds=((5, 5), (5, 5))),
        ShapeParams(grains=1, seeds=((2, 2),), solid_fraction=(197, 256)),
        ShapeParams(grains=2, solid_fraction=(195, 196)),
    ],
    ids=["adjacent-seeds", "border-seed", "shared-seed", "fraction-above-interior", "no-room-to-separate"],
)
def test_16x16_infeasible(params, cp_model):
    from nnverify.bnn.cpsat_shapes import solve_shapes

    assert solve_shapes(params, time_limit_s=10) == []
