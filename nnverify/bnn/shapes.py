"""Shape rules of a porous-media unit cell as a solver-neutral integer model: Booleans, linear rows and clauses.

Builds the "geometric" constraints of Korneev, Narodytska, Pulina, Tacchella, Bjørner and Sagiv, "Constrained
Image Generation Using Binarized Neural Networks with Decision Procedures", SAT 2018: a ``size x size`` periodic
unit cell of void (label 0) and ``w`` grains (labels ``1 .. w``) whose 0/1 pixels ``X_0 .. X_{size²-1}`` (row-major,
1 = solid) are the inputs of the BNN surrogate. It does not encode the network or its output range, and it solves
nothing (``cpsat_shapes`` lowers the model to CP-SAT; a MILP or a SAT encoding can be built just as mechanically).

From the paper (its full text was not in our reference store; we follow the project issue's summary of it and the
introduction: grains are connected sets of solid pixels, the void a connected set of white pixels) come the rules
and their vocabulary: one label per cell; grains never share a side; each grain grows from a seed cell through a
parent DAG, and so does the void; "compactness rings" with a parameter ``s``, ``s = 1`` giving convex grains; a
void border; pixels tied to labels; optional hard linear rows such as a solid fraction. The precise definitions
below, and the meaning of ``s``, are our design:

- **labels**: Booleans ``A_L_r_c_k`` (cell ``(r, c)`` has label ``k``), exactly one per cell (a linear row).
- **pixels**: ``X_i + A_L_r_c_0 = 1`` with ``i = r * size + c``: a pixel is solid iff its cell carries a grain.
- **border**: rows and columns ``0`` and ``size - 1`` are void. Neighbours are periodic (``(r ± 1) mod size``),
  but behind a void frame no grain cell has a wrapped neighbour, so periodic and planar adjacency agree below.
- **seeds**: the seed cell of grain ``k`` has label ``k`` (seeds given, or drawn from ``random_seed``).
- **separation**: for 4-neighbours ``a, b`` and grains ``k != k'``: the clause ``¬A_L_a_k ∨ ¬A_L_b_k'``.
- **grains grow in rings**: ring ``d`` of grain ``k`` is the set of cells at Manhattan distance ``d`` from its
  seed. A cell of grain ``k`` on ring ``d >= 1`` has a parent in grain ``k`` on ring ``d - 1``: one clause
  ``¬A_L_c_k ∨ A_L_p1_k [∨ A_L_p2_k]`` over its one or two inward 4-neighbours. The arcs to those parents form a
  DAG (rings strictly decrease) rooted at the seed, so each grain is 4-connected; more precisely every grain cell
  is joined to the seed by a shortest (monotone) path inside the grain. No parent variables are needed: any
  inward grain neighbour serves as the parent, and the clause says one exists.
- **the void is connected**: its root is the whole void frame (the frame is 4-connected, so this is the same as
  one border seed). Every interior void cell has exactly one parent ``A_P_r_c_d`` (``d`` in N/S/W/E) among its
  void 4-neighbours (``Σ_d A_P_r_c_d = A_L_r_c_0``, clauses ``¬A_P ∨ A_L_parent_0``), and an interior parent has
  a strictly lower level: ``A_D_cell - A_D_parent - K * A_P >= 1 - K``, ``A_D_r_c`` in ``[dist to frame, K]``,
  ``K`` = number of interior non-seed cells (big-M with the exact range). Parent chains thus reach the frame. It is
  exact: for a connected void, breadth-first distances to the frame satisfy every row.
- **compactness** ``s`` (optional): every row and every column of every grain is made of at most ``s`` maximal
  runs of consecutive cells. With ``s = 1`` the grains are row- and column-convex, hence (being connected)
  convex polyominoes (Delest and Viennot, "Algebraic languages and polyominoes enumeration", TCS 34, 1984);
  every convex polyomino containing the seed also satisfies the ring rule (its cells are joined by monotone
  paths), so ``s = 1`` admits exactly the convex grains around the seeds. Larger ``s`` admits strictly more
  shapes. Encoding: a run-start Boolean ``A_RS_k_r_c`` (rows) or ``A_CS_k_r_c`` (columns), forced by the clause
  ``¬A_L_cell_k ∨ A_L_previous_k ∨ A_RS_k_r_c``, and per line a row ``Σ starts <= s`` (the first interior cell
  of a line follows the void border, so its own label counts as a start).
- **solid fraction** (optional): ``lo <= Σ X_i <= hi``, a number of solid pixels. Further hard rows ``A·x = b``
  can be appended to ``ShapeModel.linear`` by the caller (the model is plain data).

The model is exact for these rules: its solutions, projected on the labels, are exactly the label images that
satisfy them (``tests/bnn/test_shapes.py`` compares both sets by brute force on small grids). Every variable other
than the pixels is named ``A_...`` with ``[A-Za-z0-9_]`` only, so the model can be written as VNN-LIB
``declare-const`` lines. For 16x16: 1,986 variables (w = 2) or 2,235 (w = 3), plus 728 or 1,092 run starts with
compactness.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

logger = logging.getLogger(__name__)

#: The four directions of a 4-neighbourhood: name, row step, column step.
STEPS = (("N", -1, 0), ("S", 1, 0), ("W", 0, -1), ("E", 0, 1))


@dataclass(frozen=True, slots=True)
class IntVar:
    """An integer variable ``lb <= name <= ub``; a Boolean when ``(lb, ub) == (0, 1)``."""

    name: str
    lb: int
    ub: int


@dataclass(frozen=True, slots=True)
class Linear:
    """``lo <= sum(coef * var) <= hi``; ``None`` leaves that side unbounded."""

    terms: tuple[tuple[str, int], ...]
    lo: int | None
    hi: int | None
    comment: str = ""


@dataclass(frozen=True, slots=True)
class Clause:
    """The disjunction of literals ``(var name, True for the variable / False for its negation)``; Booleans only."""

    literals: tuple[tuple[str, bool], ...]
    comment: str = ""


@dataclass(frozen=True, slots=True)
class ShapeParams:
    """What to generate.

    Attributes:
        grains: Number of grains ``w >= 1`` (the paper uses 2 and 3).
        size: Side of the square cell in pixels (at least 3; the paper uses 16).
        seeds: One seed cell ``(row, col)`` per grain, in grain order; ``None`` draws them from ``random_seed``.
            The void's root is the border frame (see the module docstring), so it takes no seed here. Seeds on the
            border, shared or 4-adjacent seeds are accepted and make the model infeasible.
        compactness: ``s >= 1``, the most runs any row or column of a grain may have; ``None`` for no bound.
        solid_fraction: Inclusive bounds ``(lo, hi)`` on the number of solid pixels; ``None`` for no bound.
        random_seed: Seed of the draw of the seed cells (and of the solver, in ``cpsat_shapes``).
    """

    grains: int
    size: int = 16
    seeds: tuple[tuple[int, int], ...] | None = None
    compactness: int | None = None
    solid_fraction: tuple[int, int] | None = None
    random_seed: int = 0


@dataclass(frozen=True, slots=True)
class ShapeModel:
    """The constraints of a unit cell over integer and Boolean variables.

    Attributes:
        variables: Every variable, pixels first.
        linear: Linear rows.
        clauses: Clauses over Boolean variables.
        pixels: ``X_0 .. X_{size²-1}``, row-major, 1 = solid: the network's input variables.
        labels: ``(row, col, label) -> `` name of the Boolean "cell has label", label 0 void, ``1 .. w`` grains.
        seeds: The seed cell of each grain (as given, or as drawn).
    """

    variables: tuple[IntVar, ...]
    linear: tuple[Linear, ...]
    clauses: tuple[Clause, ...]
    pixels: tuple[str, ...]
    labels: dict[tuple[int, int, int], str]
    seeds: tuple[tuple[int, int], ...] = field(default=())


@dataclass(slots=True)
class _Builder:
    """Accumulates variables and constraints while the rules are added."""

    size: int
    grains: int
    variables: list[IntVar] = field(default_factory=list)
    linear: list[Linear] = field(default_factory=list)
    clauses: list[Clause] = field(default_factory=list)

    def var(self, name: str, lb: int = 0, ub: int = 1) -> str:
        self.variables.append(IntVar(name, lb, ub))
        return name

    def row(self, terms: list[tuple[str, int]], lo: int | None, hi: int | None, comment: str = "") -> None:
        self.linear.append(Linear(tuple(terms), lo, hi, comment))

    def clause(self, literals: list[tuple[str, bool]], comment: str = "") -> None:
        self.clauses.append(Clause(tuple(literals), comment))

    def interior(self) -> list[tuple[int, int]]:
        return [(r, c) for r in range(1, self.size - 1) for c in range(1, self.size - 1)]


def label_name(r: int, c: int, k: int) -> str:
    """Name of the Boolean "cell ``(r, c)`` has label ``k``"."""
    return f"A_L_{r}_{c}_{k}"


def neighbour(r: int, c: int, step: tuple[str, int, int], size: int) -> tuple[int, int]:
    """The neighbour of ``(r, c)`` in direction ``step`` on the torus."""
    return (r + step[1]) % size, (c + step[2]) % size


def seed_cells(params: ShapeParams) -> tuple[tuple[int, int], ...]:
    """The grains' seed cells: ``params.seeds`` checked, or drawn from ``params.random_seed``.

    Drawn seeds are distinct interior cells, spread out: the largest pairwise Manhattan distance (from half the
    interior's side down to 2, i.e. never 4-adjacent) for which 200 draws find a placement.

    Raises:
        ValueError: Bad parameters (see ``ShapeParams``), or no non-adjacent placement exists.
    """
    _check_params(params)
    if params.seeds is not None:
        return tuple((int(r), int(c)) for r, c in params.seeds)
    rng = np.random.default_rng(params.random_seed)
    inner = params.size - 2
    cells = [(r, c) for r in range(1, params.size - 1) for c in range(1, params.size - 1)]
    for min_distance in range(max(2, inner // 2), 1, -1):
        for _ in range(200):
            picks = [cells[int(i)] for i in rng.choice(len(cells), size=params.grains, replace=False)]
            if all(abs(a[0] - b[0]) + abs(a[1] - b[1]) >= min_distance for i, a in enumerate(picks) for b in picks[:i]):
                return tuple(picks)
    raise ValueError(f"cannot place {params.grains} non-adjacent seeds in a {inner}x{inner} interior")


def _check_params(params: ShapeParams) -> None:
    if params.grains < 1 or params.size < 3:
        raise ValueError(f"need grains >= 1 and size >= 3, got grains={params.grains}, size={params.size}")
    if params.grains > (params.size - 2) ** 2:
        raise ValueError(f"{params.grains} grains do not fit in a {params.size - 2}x{params.size - 2} interior")
    if params.seeds is not None:
        if len(params.seeds) != params.grains:
            raise ValueError(f"need one seed per grain: {params.grains} grains, {len(params.seeds)} seeds")
        off_grid = [s for s in params.seeds if not all(0 <= v < params.size for v in s)]
        if off_grid:
            raise ValueError(f"seeds outside the {params.size}x{params.size} grid: {off_grid}")
    if params.compactness is not None and params.compactness < 1:
        raise ValueError(f"compactness s must be >= 1, got {params.compactness}")
    if params.solid_fraction is not None and params.solid_fraction[0] > params.solid_fraction[1]:
        raise ValueError(f"solid_fraction (lo, hi) needs lo <= hi, got {params.solid_fraction}")


def shape_model(params: ShapeParams) -> ShapeModel:
    """Build the integer model of the shape rules (module docstring) for ``params``.

    Raises:
        ValueError: Bad parameters (see ``ShapeParams``).
    """
    seeds = seed_cells(params)
    b = _Builder(params.size, params.grains)
    pixels, labels = _labels_and_pixels(b)
    _border_and_seeds(b, seeds)
    _separation(b)
    _grain_rings(b, seeds)
    _void_tree(b, seeds)
    if params.compactness is not None:
        _compactness(b, params.compactness)
    if params.solid_fraction is not None:
        lo, hi = params.solid_fraction
        b.row([(x, 1) for x in pixels], lo, hi, f"solid pixels in [{lo}, {hi}]")
    logger.debug("shape model: %d variables, %d rows, %d clauses", len(b.variables), len(b.linear), len(b.clauses))
    return ShapeModel(tuple(b.variables), tuple(b.linear), tuple(b.clauses), pixels, labels, seeds)


def _labels_and_pixels(b: _Builder) -> tuple[tuple[str, ...], dict[tuple[int, int, int], str]]:
    """Pixel and label variables; exactly one label per cell; pixel = 1 iff the label is a grain."""
    pixels = tuple(b.var(f"X_{i}") for i in range(b.size * b.size))
    labels: dict[tuple[int, int, int], str] = {}
    for r in range(b.size):
        for c in range(b.size):
            for k in range(b.grains + 1):
                labels[r, c, k] = b.var(label_name(r, c, k))
            b.row([(labels[r, c, k], 1) for k in range(b.grains + 1)], 1, 1, f"one label at ({r},{c})")
            b.row([(pixels[r * b.size + c], 1), (labels[r, c, 0], 1)], 1, 1, f"pixel ({r},{c}) solid iff grain")
    return pixels, labels


def _border_and_seeds(b: _Builder, seeds: tuple[tuple[int, int], ...]) -> None:
    for r in range(b.size):
        for c in range(b.size):
            if r in (0, b.size - 1) or c in (0, b.size - 1):
                b.row([(label_name(r, c, 0), 1)], 1, 1, f"border ({r},{c}) void")
    for k, (r, c) in enumerate(seeds, start=1):
        b.row([(label_name(r, c, k), 1)], 1, 1, f"seed of grain {k} at ({r},{c})")


def _separation(b: _Builder) -> None:
    """No two 4-neighbours carry different grains (border cells are void, so only interior pairs can)."""
    for r, c in b.interior():
        for step in STEPS[1::2]:  # S and E: each unordered pair once
            nr, nc = neighbour(r, c, step, b.size)
            if not (0 < nr < b.size - 1 and 0 < nc < b.size - 1):
                continue
            for k in range(1, b.grains + 1):
                for other in range(1, b.grains + 1):
                    if other != k:
                        lits = [(label_name(r, c, k), False), (label_name(nr, nc, other), False)]
                        b.clause(lits, f"grains {k},{other} apart at ({r},{c})-({nr},{nc})")


def _grain_rings(b: _Builder, seeds: tuple[tuple[int, int], ...]) -> None:
    """Each grain cell off its seed has a parent in the grain one ring closer to the seed (ring = L1 distance)."""
    for k, seed in enumerate(seeds, start=1):
        for r, c in b.interior():
            if (r, c) == seed:
                continue
            closer = _closer(r, c, seed)
            lits = [(label_name(r, c, k), False)] + [(label_name(*cell, k), True) for cell in closer]
            b.clause(lits, f"grain {k} at ({r},{c}) has a parent on ring {_ring(r, c, seed) - 1}")


def _ring(r: int, c: int, seed: tuple[int, int]) -> int:
    """The ring of ``(r, c)`` around ``seed``: their Manhattan distance (no wrap-around: grains avoid the border)."""
    return abs(r - seed[0]) + abs(c - seed[1])


def _closer(r: int, c: int, seed: tuple[int, int]) -> list[tuple[int, int]]:
    """The one or two 4-neighbours of ``(r, c) != seed`` on the next ring inwards."""
    cells = []
    if r != seed[0]:
        cells.append((r - 1 if r > seed[0] else r + 1, c))
    if c != seed[1]:
        cells.append((r, c - 1 if c > seed[1] else c + 1))
    return cells


def _void_tree(b: _Builder, seeds: tuple[tuple[int, int], ...]) -> None:
    """Each interior void cell has one void parent; a parent inside the interior has a strictly lower level."""
    cells = [cell for cell in b.interior() if cell not in seeds]
    top = len(cells)  # a chain of interior void cells is at most this long
    for r, c in cells:
        # a void path to the frame is at least as long as the distance to the frame
        b.var(f"A_D_{r}_{c}", min(r, c, b.size - 1 - r, b.size - 1 - c), top)
    for r, c in cells:
        arcs = []
        for step in STEPS:
            nr, nc = neighbour(r, c, step, b.size)
            if (nr, nc) in seeds:
                continue  # a seed carries a grain, never a void parent
            arc = b.var(f"A_P_{r}_{c}_{step[0]}")
            arcs.append((arc, 1))
            if 0 < nr < b.size - 1 and 0 < nc < b.size - 1:  # a frame cell is a void root: no condition
                b.clause([(arc, False), (label_name(nr, nc, 0), True)], f"parent of ({r},{c}) is void")
                terms = [(f"A_D_{r}_{c}", 1), (f"A_D_{nr}_{nc}", -1), (arc, -top)]
                b.row(terms, 1 - top, None, f"level of ({r},{c}) above its parent ({nr},{nc})")
        b.row([*arcs, (label_name(r, c, 0), -1)], 0, 0, f"one parent iff ({r},{c}) is void")


def _compactness(b: _Builder, s: int) -> None:
    """At most ``s`` runs in each row and each column of each grain."""
    for k in range(1, b.grains + 1):
        for line in range(1, b.size - 1):
            row = [(line, i) for i in range(1, b.size - 1)]
            _at_most_runs(b, k, s, row, f"A_RS_{k}", f"row {line}")
            _at_most_runs(b, k, s, [(r, c) for c, r in row], f"A_CS_{k}", f"column {line}")


def _at_most_runs(b: _Builder, k: int, s: int, line: list[tuple[int, int]], prefix: str, what: str) -> None:
    """Grain ``k`` has at most ``s`` maximal runs along ``line`` (interior cells in order, border before it)."""
    starts = [(label_name(*line[0], k), 1)]  # the cell before is border: a grain cell here starts a run
    for prev, (r, c) in pairwise(line):
        start = b.var(f"{prefix}_{r}_{c}")
        lits = [(label_name(r, c, k), False), (label_name(*prev, k), True), (start, True)]
        b.clause(lits, f"run of grain {k} starts at ({r},{c})")
        starts.append((start, 1))
    b.row(starts, None, s, f"grain {k}: at most {s} runs in {what}")


def decode(values: dict[str, int], model: ShapeModel, params: ShapeParams) -> np.ndarray:
    """The label image of a solution.

    Args:
        values: A value for every label variable of ``model`` (other entries are ignored).
        model: The model the values solve.
        params: The parameters the model was built from.

    Returns:
        ``int8`` array ``(size, size)``: 0 void, ``1 .. grains`` the grains.

    Raises:
        ValueError: Some cell does not carry exactly one label.
    """
    image = np.full((params.size, params.size), -1, dtype=np.int8)
    for (r, c, k), name in model.labels.items():
        if values[name]:
            if image[r, c] != -1:
                raise ValueError(f"cell ({r},{c}) carries labels {image[r, c]} and {k}")
            image[r, c] = k
    missing = np.argwhere(image < 0)
    if len(missing):
        raise ValueError(f"{len(missing)} cells carry no label, first ({missing[0][0]},{missing[0][1]})")
    return image
