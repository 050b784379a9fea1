"""Random unit cells: every generated cell passes the independent checker; the checker catches bad cells."""

from __future__ import annotations

import numpy as np
import pytest

from nnverify.bnn import cells


def _touching(labels: np.ndarray) -> bool:
    """Whether two different grains are 4-neighbours (periodic), checked directly."""
    for axis in (0, 1):
        other = np.roll(labels, 1, axis=axis)
        if np.any((labels > 0) & (other > 0) & (labels != other)):
            return True
    return False


@pytest.mark.parametrize("grains", [2, 3], ids=["w2", "w3"])
def test_generated_cells_are_valid(grains: int) -> None:
    for seed in range(60):
        labels = cells.random_cell(np.random.default_rng(seed), grains)
        assert labels.dtype == np.int8 and labels.shape == (16, 16)
        assert set(np.unique(labels)) == set(range(grains + 1))
        assert not labels[[0, -1], :].any() and not labels[:, [0, -1]].any()
        assert not _touching(labels)
        assert cells.check_cell(labels, grains, min_compactness=cells.DEFAULT_MIN_COMPACTNESS) == []
        pixels = cells.solid(labels)
        assert pixels.dtype == np.uint8 and set(np.unique(pixels)) == {0, 1}
        assert cells.check_cell(pixels.reshape(-1), grains) == []  # the flat 0/1 image, as the BNN sees it
        areas = np.bincount(labels.reshape(-1), minlength=grains + 1)[1:]
        assert np.all((areas >= cells.DEFAULT_AREA[0]) & (areas <= cells.DEFAULT_AREA[1]))


def test_generation_is_deterministic_and_sized() -> None:
    first = cells.random_cell(np.random.default_rng(7), 3)
    assert np.array_equal(first, cells.random_cell(np.random.default_rng(7), 3))
    assert not np.array_equal(first, cells.random_cell(np.random.default_rng(8), 3))
    small = cells.random_cell(np.random.default_rng(0), 2, size=9, area=(3, 6))
    assert small.shape == (9, 9) and cells.check_cell(small, 2) == []


def test_generation_rejects_impossible_requests() -> None:
    with pytest.raises(cells.CellGenerationError):
        cells.random_cell(np.random.default_rng(0), 2, area=(150, 190), max_attempts=5)
    with pytest.raises(ValueError, match="grains"):
        cells.random_cell(np.random.default_rng(0), 0)


def test_compactness_scores() -> None:
    assert cells.compactness(16, 16) == 1.0  # 4x4 square
    assert cells.compactness(12, 14) == 1.0  # 3x4 rectangle: the least perimeter for 12 cells
    assert cells.compactness(16, 34) < 0.5  # 1x16 line


def _cell(*grains: list[tuple[int, int]], size: int = 8) -> np.ndarray:
    labels = np.zeros((size, size), dtype=np.int8)
    for grain, pixels in enumerate(grains, start=1):
        for r, c in pixels:
            labels[r, c] = grain
    return labels


GOOD = _cell([(1, 1), (1, 2), (2, 1), (2, 2)], [(4, 4), (4, 5), (5, 4), (5, 5)])


def test_checker_accepts_a_good_cell() -> None:
    assert cells.check_cell(GOOD, 2, min_compactness=1.0) == []
    assert cells.check_cell(cells.solid(GOOD), 2) == []


def test_checker_accepts_diagonal_contact() -> None:
    """Grains may meet at a corner: they are still two 4-connected components."""
    labels = _cell([(1, 1), (2, 1), (2, 2)], [(3, 3), (3, 4)])
    assert cells.check_cell(labels, 2) == []


@pytest.mark.parametrize(
    ("labels", "grains", "expected"),
    [
        (_cell([(0, 3), (1, 3), (1, 2)]), 1, "border not void"),
        (_cell([(1, 1), (1, 2)], [(1, 3), (2, 3)]), 2, "grains touch"),
        (_cell([(1, 1), (1, 2)], [(1, 3), (2, 3)]), 2, "expected 2 grains, found 1"),
        (_cell([(1, 1), (1, 2), (5, 5)], [(3, 3)]), 2, "grain 1 is not 4-connected"),
        (_cell([(1, 1)], [(4, 4)]), 3, "expected 3 grains, found 2"),
        (_cell([(r, c) for r in range(1, 6) for c in range(1, 6) if (r, c) != (3, 3)]), 1, "void not 4-connected"),
        (np.zeros((3, 4)), 1, "expected a square image"),
    ],
    ids=["border", "touch", "touch-count", "split-grain", "count", "enclosed-void", "not-square"],
)
def test_checker_catches_bad_cells(labels: np.ndarray, grains: int, expected: str) -> None:
    problems = cells.check_cell(labels, grains)
    assert any(expected in problem for problem in problems), problems


def test_checker_uses_periodic_neighbours() -> None:
    """Solid pixels on opposite edges of a row are 4-neighbours on the torus: one component, not two."""
    pixels = np.zeros((8, 8), dtype=np.uint8)
    pixels[3, 0] = pixels[3, 7] = 1
    problems = cells.check_cell(pixels, 2)
    assert any("found 1" in problem for problem in problems) and any("border" in problem for problem in problems)


def test_checker_compactness_is_optional() -> None:
    line = _cell([(2, c) for c in range(1, 7)])
    assert cells.check_cell(line, 1) == []
    assert any("not compact" in problem for problem in cells.check_cell(line, 1, min_compactness=0.75))
