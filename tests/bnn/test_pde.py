"""PDE labeller: known answers, symmetries, monotonicity, convergence of the extrapolation, labels."""

from __future__ import annotations

import numpy as np
import pytest

from nnverify.bnn import cells, pde


@pytest.mark.parametrize("refine", [1, 2, 3], ids=["k1", "k2", "k3"])
def test_empty_cell_has_unit_diffusion(refine: int) -> None:
    assert pde.grid_diffusion(np.zeros((16, 16)), refine=refine) == pytest.approx(1.0, abs=1e-12)
    assert pde.effective_diffusion(np.zeros((5, 7))) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("column", "width"), [(0, 1), (5, 1), (7, 3), (15, 2)], ids=["c0", "c5", "c7w3", "c15w2"])
def test_wall_across_x_blocks_diffusion(column: int, width: int) -> None:
    wall = np.zeros((16, 16))
    wall[:, column : column + width] = 1
    wall[5:9, 10:12] = 1  # some clutter elsewhere
    assert abs(pde.grid_diffusion(wall, refine=2)) < 1e-12
    assert abs(pde.effective_diffusion(wall)) < 1e-12


def test_layers_parallel_to_x_give_the_porosity() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        rows = rng.random(16) < 0.4
        rows[rng.integers(16)] = False  # at least one pore layer
        layers = np.repeat(rows[:, None], 16, axis=1).astype(np.uint8)
        porosity = pde.porosity(layers)
        assert pde.grid_diffusion(layers, refine=1) == pytest.approx(porosity, abs=1e-12)
        assert pde.effective_diffusion(layers) == pytest.approx(porosity, abs=1e-12)
        # the same layers turned 90 degrees block x entirely
        assert abs(pde.effective_diffusion(layers.T)) < 1e-12


def test_all_solid_and_bad_arguments() -> None:
    assert pde.grid_diffusion(np.ones((4, 4)), refine=1) == 0.0
    with pytest.raises(ValueError, match="2-D"):
        pde.grid_diffusion(np.zeros(16), refine=1)
    with pytest.raises(ValueError, match="even"):
        pde.effective_diffusion(np.zeros((4, 4)), refine=3)


def _random_solid(seed: int, grains: int = 2) -> np.ndarray:
    return cells.solid(cells.random_cell(np.random.default_rng(seed), grains))


def test_symmetries() -> None:
    """D_xx is invariant under periodic shifts and under mirroring either axis; transposing a
    transpose-symmetric cell changes nothing; the y-coefficient of a cell is the x-coefficient of its transpose."""
    solid = _random_solid(3)
    reference = pde.effective_diffusion(solid)
    for variant in (np.roll(solid, (5, 9), axis=(0, 1)), solid[::-1, :], solid[:, ::-1], solid[::-1, ::-1]):
        assert pde.effective_diffusion(variant) == pytest.approx(reference, abs=1e-10)
    symmetric = np.zeros((16, 16), dtype=np.uint8)
    symmetric[3:9, 4:10] = 1
    symmetric[4:10, 3:9] = 1
    assert np.array_equal(symmetric, symmetric.T)
    rectangle = np.zeros((16, 16), dtype=np.uint8)
    rectangle[2:14, 6:9] = 1  # tall and thin: blocks x more than y
    assert pde.effective_diffusion(rectangle) < pde.effective_diffusion(rectangle.T)
    assert pde.effective_diffusion(np.rot90(symmetric)) == pytest.approx(pde.effective_diffusion(symmetric), abs=1e-10)


def test_bounds_on_random_cells() -> None:
    for seed in range(5):
        solid = _random_solid(seed, grains=3)
        d_eff = pde.effective_diffusion(solid)
        assert 0.0 < d_eff <= pde.porosity(solid)


@pytest.mark.parametrize("refine", [1, 2], ids=["k1", "k2"])
def test_adding_solid_never_increases_diffusion(refine: int) -> None:
    """Rayleigh monotonicity: removing pore cells removes conductances of the discrete network."""
    rng = np.random.default_rng(1)
    solid = _random_solid(11)
    previous = pde.grid_diffusion(solid, refine=refine)
    for _ in range(25):
        r, c = rng.integers(16, size=2)
        solid[r, c] = 1
        current = pde.grid_diffusion(solid, refine=refine)
        assert current <= previous + 1e-12
        previous = current


def test_enclosed_pore_carries_no_flux() -> None:
    """A pocket of void inside a grain is a separate piece of the pore space: it changes nothing."""
    ring = np.zeros((12, 12), dtype=np.uint8)
    ring[3:8, 3:8] = 1
    filled = ring.copy()
    ring[5, 5] = 0
    assert pde.effective_diffusion(ring) == pytest.approx(pde.effective_diffusion(filled), abs=1e-12)


def test_extrapolation_is_close_to_the_converged_value() -> None:
    """On a small cell the extrapolated D (grids 2 and 4) matches finer grids (16 and 32, extrapolated)."""
    solid = np.zeros((4, 4), dtype=np.uint8)
    solid[1:3, 1:2] = 1
    solid[1, 2] = 1
    fine = pde.grid_diffusion(solid, refine=32)
    converged = fine + (fine - pde.grid_diffusion(solid, refine=16)) / (2**pde.CONVERGENCE_ORDER - 1)
    plain_error = abs(pde.grid_diffusion(solid, refine=4) - converged)
    extrapolated_error = abs(pde.effective_diffusion(solid) - converged)
    assert extrapolated_error < 1e-3 and extrapolated_error < plain_error / 10


def test_labels() -> None:
    assert pde.diffusion_label(0.3999) is None
    assert pde.diffusion_label(0.4) == 40
    assert pde.diffusion_label(0.6349) == 63
    assert pde.diffusion_label(0.6351) == 64
    assert pde.diffusion_label(1.0) == 100
