"""Random periodic unit cells of a porous medium: a square label image with a few compact, separated grains.

A cell is a ``size x size`` array of ``int8`` labels: ``0`` is void (pore space), ``1 .. w`` are the grains. It is
the unit cell of a periodic medium (Korneev et al., SAT 2018, §5: 16x16 images with 2 or 3 grains). Every cell
made here satisfies, and ``check_cell`` independently re-checks:

- **border**: rows ``0`` and ``size-1`` and columns ``0`` and ``size-1`` are void, so the periodic copies of a grain
  never touch each other and the pore space is connected around every grain;
- **connectivity**: each grain is one 4-connected set of pixels (periodic neighbours count, though the border
  makes wrap-around moot);
- **separation**: no pixel of one grain is a 4-neighbour of a pixel of another grain, so the solid pixels alone
  (``solid(labels)``) determine the grains as their 4-connected components;
- **connected void**: the void pixels are one 4-connected set (no grain encloses a pocket of void), as in the
  paper, where the void grows from a seed like the grains;
- **compactness**: a grain of area ``A`` and perimeter ``P`` (number of pixel edges between the grain and other
  pixels) has ``P_min(A) / P >= min_compactness``, where ``P_min(A) = 2 * ceil(2 * sqrt(A))`` is the smallest
  perimeter of any ``A``-cell polyomino (Harary and Harborth, "Extremal animals", J. Combin. Inform. System Sci.,
  1976). Squares score 1; a one-pixel-wide line of ``A`` cells scores about ``2 / sqrt(A)``; holes lower the score.

Growth (``random_cell``): grain by grain, a seed pixel is drawn from the allowed pixels and the grain grows one
pixel at a time; a frontier pixel with ``n`` grain neighbours is chosen with weight ``GROWTH_WEIGHT ** (n - 1)``,
which fills concavities first (a biased Eden growth) and gives blob-like grains. Cells whose grains cannot reach
their drawn area, fail the compactness bound or enclose void are redrawn. This module does not compute labels
(see ``pde``).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

#: Side of the unit cell in pixels (the paper's images are 16x16).
CELL_SIZE = 16
#: Default range (inclusive) of the area, in pixels, drawn uniformly for each grain.
DEFAULT_AREA = (8, 32)
#: Default lower bound on ``P_min(A) / P`` for every grain.
DEFAULT_MIN_COMPACTNESS = 0.75
#: A frontier pixel with ``n`` grain neighbours is chosen with weight ``GROWTH_WEIGHT ** (n - 1)``.
GROWTH_WEIGHT = 8.0
#: Unit steps to the four neighbours of a pixel.
_STEPS = ((-1, 0), (1, 0), (0, -1), (0, 1))


class CellGenerationError(RuntimeError):
    """No cell satisfying the constraints was found in the allowed number of attempts."""


def random_cell(
    rng: np.random.Generator,
    grains: int,
    *,
    size: int = CELL_SIZE,
    area: tuple[int, int] = DEFAULT_AREA,
    min_compactness: float = DEFAULT_MIN_COMPACTNESS,
    max_attempts: int = 1000,
) -> np.ndarray:
    """Draw a random unit cell with ``grains`` compact, separated grains and a void border.

    Args:
        rng: The random source (the cell is a deterministic function of its state).
        grains: Number of grains ``w >= 1``.
        size: Side of the square cell in pixels (at least 5: a void border around a 3x3 interior).
        area: Inclusive range of each grain's area in pixels, drawn uniformly per grain.
        min_compactness: Lower bound on ``P_min(A) / P`` for each grain (see the module docstring).
        max_attempts: Number of cells drawn before giving up.

    Returns:
        ``int8`` labels of shape ``(size, size)``: 0 void, ``1 .. grains`` the grains.

    Raises:
        ValueError: Invalid arguments.
        CellGenerationError: No valid cell in ``max_attempts`` draws (areas too large for the cell).
    """
    if grains < 1 or size < 5 or not 1 <= area[0] <= area[1]:
        raise ValueError(f"need grains >= 1, size >= 5 and 1 <= area[0] <= area[1]; got {grains}, {size}, {area}")
    for _ in range(max_attempts):
        labels = _try_cell(rng, grains, size, area, min_compactness)
        if labels is not None:
            return labels
    raise CellGenerationError(f"no {size}x{size} cell with {grains} grains of area {area} in {max_attempts} draws")


def solid(labels: np.ndarray) -> np.ndarray:
    """The 0/1 pixel image of a cell (``uint8``, 1 = solid grain, 0 = void)."""
    return (np.asarray(labels) > 0).astype(np.uint8)


def compactness(area: int, perimeter: int) -> float:
    """``P_min(area) / perimeter`` with ``P_min(A) = 2 * ceil(2 * sqrt(A))`` (1 for a square, lower is thinner)."""
    return 2 * math.ceil(2 * math.sqrt(area) - 1e-9) / perimeter


def _try_cell(
    rng: np.random.Generator, grains: int, size: int, area: tuple[int, int], min_compactness: float
) -> np.ndarray | None:
    """One attempt: grow the grains in turn; None if a grain is blocked, not compact enough or encloses void."""
    labels = np.zeros((size, size), dtype=np.int8)
    # Pixels a new grain may use: the interior, minus other grains and their 4-neighbours.
    allowed = np.zeros((size, size), dtype=bool)
    allowed[1:-1, 1:-1] = True
    for grain in range(1, grains + 1):
        target = int(rng.integers(area[0], area[1] + 1))
        pixels = _grow(rng, allowed, target)
        if pixels is None or compactness(len(pixels), _perimeter(pixels)) < min_compactness:
            return None
        if _encloses_void(labels > 0, pixels):
            return None
        for r, c in pixels:
            labels[r, c] = grain
            allowed[r, c] = False
            for dr, dc in _STEPS:
                allowed[(r + dr) % size, (c + dc) % size] = False
    return labels


def _grow(rng: np.random.Generator, allowed: np.ndarray, target: int) -> set[tuple[int, int]] | None:
    """Biased Eden growth of one grain inside ``allowed``; None if it cannot reach ``target`` pixels."""
    size = allowed.shape[0]
    candidates = np.argwhere(allowed)
    if len(candidates) == 0:
        return None
    seed = candidates[rng.integers(len(candidates))]
    grain = {(int(seed[0]), int(seed[1]))}
    while len(grain) < target:
        neighbours: dict[tuple[int, int], int] = {}
        for r, c in grain:
            for dr, dc in _STEPS:
                pixel = ((r + dr) % size, (c + dc) % size)
                if pixel not in grain and allowed[pixel]:
                    neighbours[pixel] = neighbours.get(pixel, 0) + 1
        if not neighbours:
            return None
        frontier = sorted(neighbours)  # a fixed order, so the draw depends on the rng state only
        weights = np.array([GROWTH_WEIGHT ** (neighbours[p] - 1) for p in frontier])
        grain.add(frontier[int(rng.choice(len(frontier), p=weights / weights.sum()))])
    return grain


def _encloses_void(solid: np.ndarray, pixels: set[tuple[int, int]]) -> bool:
    """Whether adding ``pixels`` to ``solid`` cuts some void off the (void) border, by iterated dilation."""
    void = ~solid
    for r, c in pixels:
        void[r, c] = False
    reached = np.zeros_like(void)
    reached[[0, -1], :] = reached[:, [0, -1]] = True
    while True:
        grown = reached.copy()
        grown[1:] |= reached[:-1]
        grown[:-1] |= reached[1:]
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        grown &= void
        if np.array_equal(grown, reached):
            return bool(np.any(void & ~reached))
        reached = grown


def _perimeter(pixels: set[tuple[int, int]]) -> int:
    """Number of pixel edges between the set and its complement (no wrap-around: grains avoid the border)."""
    return sum((r + dr, c + dc) not in pixels for r, c in pixels for dr, dc in _STEPS)


def check_cell(labels: np.ndarray, grains: int, *, min_compactness: float | None = None) -> list[str]:
    """Re-check a cell from scratch (shares no code with the generator); the problems found, empty if valid.

    Grains are found by a periodic 4-connected flood fill of the solid pixels (``labels > 0``), so a plain 0/1
    image (e.g. one produced by constrained generation) can be checked too. When ``labels`` carries grain ids
    (values above 1), each id must also be exactly one of those components.

    Args:
        labels: A square image of labels, or of 0/1 pixels; a flat vector of a square length is reshaped.
        grains: The expected number of grains.
        min_compactness: If given, also require ``P_min(A) / P >= min_compactness`` for each grain.

    Returns:
        One human-readable sentence per problem (border, grain count, grain connectivity, separation, void
        connectivity, compactness).
    """
    image = np.asarray(labels)
    if image.ndim == 1 and math.isqrt(image.size) ** 2 == image.size:
        image = image.reshape(math.isqrt(image.size), -1)
    if image.ndim != 2 or image.shape[0] != image.shape[1]:
        return [f"expected a square image, got shape {image.shape}"]
    if np.any(image < 0):
        return ["negative labels"]
    problems = []
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    if np.any(border > 0):
        problems.append(f"border not void: {int(np.count_nonzero(border))} solid border pixels (corners twice)")
    components = _flood_components(image > 0)
    if len(components) != grains:
        problems.append(f"expected {grains} grains, found {len(components)} 4-connected solid components")
    problems += _check_ids(image, components)
    voids = _flood_components(image == 0)
    if len(voids) > 1:
        sizes = sorted((len(v) for v in voids), reverse=True)
        problems.append(f"void not 4-connected: {len(voids)} pieces of {sizes} pixels (a grain encloses void)")
    if min_compactness is not None:
        for index, component in enumerate(components):
            score = compactness(len(component), _edges_out(image > 0, component))
            if score < min_compactness:
                problems.append(
                    f"component {index} (area {len(component)}) not compact: {score:.3f} < {min_compactness}"
                )
    return problems


def _flood_components(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """4-connected components of ``mask`` on the torus, by breadth-first flood fill, in raster order."""
    n_rows, n_cols = mask.shape
    seen = np.zeros_like(mask, dtype=bool)
    components = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        seen[start] = True
        queue, component = deque([(int(start[0]), int(start[1]))]), []
        while queue:
            r, c = queue.popleft()
            component.append((r, c))
            for nr, nc in ((r - 1) % n_rows, c), ((r + 1) % n_rows, c), (r, (c - 1) % n_cols), (r, (c + 1) % n_cols):
                if mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    queue.append((nr, nc))
        components.append(component)
    return components


def _edges_out(mask: np.ndarray, component: list[tuple[int, int]]) -> int:
    """Number of pixel edges from ``component`` to pixels outside ``mask`` (periodic)."""
    n_rows, n_cols = mask.shape
    return sum(
        not mask[(r + dr) % n_rows, (c + dc) % n_cols]
        for r, c in component
        for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0))
    )


def _check_ids(image: np.ndarray, components: list[list[tuple[int, int]]]) -> list[str]:
    """With grain ids: each id one whole component (connectivity), no two ids 4-adjacent (separation)."""
    if image.max(initial=0) <= 1:
        return []
    problems = []
    for axis in (0, 1):
        shifted = np.roll(image, -1, axis=axis)
        touching = (image > 0) & (shifted > 0) & (image != shifted)
        if np.any(touching):
            pairs = sorted({(int(a), int(b)) for a, b in zip(image[touching], shifted[touching], strict=True)})
            problems.append(f"grains touch (4-neighbours, periodic): id pairs {pairs}")
    for grain in (int(g) for g in np.unique(image) if g > 0):
        pieces = sum(1 for component in components if any(image[p] == grain for p in component))
        if pieces != 1:
            problems.append(f"grain {grain} is not 4-connected: it lies in {pieces} components")
    return problems
