"""PDE labeller: the effective diffusion coefficient along x of a periodic unit cell (finite volumes, scipy).

The cell problem of periodic homogenization (Bensoussan, Lions and Papanicolaou, "Asymptotic Analysis for
Periodic Structures", 1978; Hornung, "Homogenization and Porous Media", 1997, ch. 1): on the unit cell
``Y = [0, 1]^2`` with pore space ``P`` (void pixels) and impermeable grains ``Y \\ P``, find the corrector ``chi``
with

    div(grad chi + e_x) = 0          in P,
    (grad chi + e_x) . n = 0         on the grain boundaries dP \\ dY (no flux into the grains),
    chi Y-periodic,

unique up to an additive constant on each connected piece of ``P``. The effective (homogenized) diffusion
coefficient along x is

    D_eff = (1 / |Y|) * integral over P of (1 + d chi / dx) dy,

so ``0 <= D_eff <= porosity = |P| / |Y| <= 1``: 1 for an empty cell, the porosity for layers parallel to x, 0 when
a wall of grain cuts every path along x. This is the quantity the images of Korneev et al. (SAT 2018) are
labelled with.

Discretisation: each pixel is split into ``k x k`` square sub-cells of side ``h``; the unknowns are
``psi = chi / h`` at the pore sub-cell centres. Two-point fluxes on the faces between pore sub-cells
(``q . n h = psi_j - psi_i + [x-face] * (+-1)``) and zero flux on pore/grain faces give, per pore sub-cell ``i``,
``sum_j (psi_i - psi_j) = [right neighbour is pore] - [left neighbour is pore]``: a periodic graph Laplacian
(symmetric, singular on each connected piece of the pore space, right-hand side summing to zero on each). One
value per piece is pinned to 0 and the rest is solved by a sparse LU factorisation (SuperLU, minimum-degree
ordering of ``A + A^T``, symmetric mode). Then ``D_k = (1 / (n_x n_y)) * sum over pore-pore x-faces of
(1 + psi_right - psi_left)``, the mean flux through the vertical grid lines (the same on every line by
conservation). Layers parallel to x are exact on any grid, as are empty cells and cells cut by a wall.

Convergence: the grains are unions of pixels, so the geometry is exact on every grid and the error comes from the
re-entrant (270 degree) corners of the pore space, where ``chi ~ r^(2/3)``; the flux error is then
``O(h^(4/3))``. On 40 random cells the observed orders between k = 1, 2, 4, 8, 16 are 1.18 .. 1.37 (mean 1.33 for
k = 4, 8, 16). ``effective_diffusion`` therefore returns the Richardson extrapolation
``D = D_k + (D_k - D_{k/2}) / (2^(4/3) - 1)`` with ``k = DEFAULT_REFINE = 4``: within 2.3e-4 (mean 6e-5) of the
converged value (k = 8, 16 extrapolated) on those cells, against 6.5e-3 for ``D_4`` alone and 2.6e-3 for ``D_8``
(which costs 4x more), far below the label step 0.01 (no label differs). ``bench/bnn_pde_convergence.py``
reproduces these numbers (``bench/results/bnn-surrogate/pde_convergence.md``). Each plain grid is
monotone (adding solid never increases ``D_k``: Rayleigh's principle on the conductance network); the
extrapolation is not monotone by construction, but never increased in 200 random additions of a solid pixel.

Labels (``diffusion_label``): the issue's "D scaled to [0.4, 1] and quantised to integers 40..100, samples below
0.4 dropped" is read as ``label = floor(100 * D_eff + 1/2)`` for ``D_eff >= 0.4`` and no label below, i.e. the
label is D_eff in hundredths. This module does not generate cells (see ``cells``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

#: Sub-cells per pixel side of the finer grid of the extrapolation (the coarser one has half as many).
DEFAULT_REFINE = 4
#: Convergence order of the finite-volume ``D_k`` (re-entrant corners: ``O(h^(4/3))``).
CONVERGENCE_ORDER = 4.0 / 3.0
#: Cells with ``D_eff`` below this get no label (dropped from the datasets).
MIN_DIFFUSION = 0.4


def effective_diffusion(solid: np.ndarray, *, refine: int = DEFAULT_REFINE) -> float:
    """Effective diffusion coefficient along x of the periodic cell, extrapolated from two grids.

    Args:
        solid: 2-D array of square pixels, nonzero = impermeable grain, 0 = pore (see ``grid_diffusion``).
        refine: Sub-cells per pixel side of the finer grid; even (the coarser grid has ``refine // 2``).

    Returns:
        ``D_refine + (D_refine - D_{refine/2}) / (2^(4/3) - 1)`` (see the module docstring).

    Raises:
        ValueError: ``refine`` is not a positive even number, or ``solid`` is not a 2-D array.
    """
    if refine < 2 or refine % 2:
        raise ValueError(f"refine must be a positive even number, got {refine}")
    fine = grid_diffusion(solid, refine=refine)
    coarse = grid_diffusion(solid, refine=refine // 2)
    return fine + (fine - coarse) / (2.0**CONVERGENCE_ORDER - 1.0)


def grid_diffusion(solid: np.ndarray, *, refine: int) -> float:
    """Finite-volume ``D_k`` along x (axis 1, the columns) of the periodic cell ``solid`` on one grid.

    Args:
        solid: 2-D array of square pixels, nonzero = impermeable grain, 0 = pore; any shape whose refined grid has
            both sides >= 2. Axis 0 is y (rows), axis 1 is x (columns); the array is one period.
        refine: Each pixel is split into ``refine x refine`` finite-volume sub-cells.

    Returns:
        ``D_k`` in ``[0, porosity]`` (up to the solver's rounding).

    Raises:
        ValueError: ``solid`` is not 2-D, ``refine < 1`` or the refined grid is smaller than 2x2.
    """
    grid = np.asarray(solid)
    if grid.ndim != 2 or refine < 1:
        raise ValueError(f"need a 2-D array and refine >= 1, got shape {grid.shape} and refine {refine}")
    pore = np.kron(grid == 0, np.ones((refine, refine), dtype=bool))
    n_rows, n_cols = pore.shape
    if min(n_rows, n_cols) < 2:
        raise ValueError(f"the refined grid must be at least 2x2, got {pore.shape}")
    n_pore = int(pore.sum())
    if n_pore == 0:
        return 0.0
    index = np.full(pore.shape, -1, dtype=np.int64)
    index[pore] = np.arange(n_pore)
    left, right = _faces(index, np.roll(index, -1, axis=1))
    low, high = _faces(index, np.roll(index, -1, axis=0))
    psi = _solve_potential(n_pore, np.concatenate([left, low]), np.concatenate([right, high]), left, right)
    return float((len(left) + np.sum(psi[right] - psi[left])) / (n_rows * n_cols))


def _faces(index: np.ndarray, neighbour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (first, second) of the faces between two pore sub-cells."""
    both = (index >= 0) & (neighbour >= 0)
    return index[both], neighbour[both]


def _solve_potential(n: int, first: np.ndarray, second: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Solve the graph-Laplacian system for ``psi``, pinning one value per connected piece of the pore space."""
    adjacency = sp.coo_matrix((np.ones(len(first)), (first, second)), shape=(n, n)).tocsr()
    adjacency = adjacency + adjacency.T
    laplacian = (sp.diags(np.asarray(adjacency.sum(axis=1)).ravel()) - adjacency).tocsr()
    rhs = np.bincount(left, minlength=n) - np.bincount(right, minlength=n).astype(np.float64)
    _, piece = connected_components(adjacency, directed=False)
    pinned = np.zeros(n, dtype=bool)
    pinned[np.unique(piece, return_index=True)[1]] = True
    free = np.flatnonzero(~pinned)
    psi = np.zeros(n)
    if len(free):
        reduced = laplacian[free][:, free].tocsc()
        lu = splu(reduced, permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})
        psi[free] = lu.solve(rhs[free])
    return psi


def porosity(solid: np.ndarray) -> float:
    """Fraction of void pixels."""
    return float(np.mean(np.asarray(solid) == 0))


def diffusion_label(d_eff: float) -> int | None:
    """The dataset label ``floor(100 * d_eff + 1/2)`` (40 .. 100), or None when ``d_eff < MIN_DIFFUSION``."""
    if d_eff < MIN_DIFFUSION:
        return None
    return int(np.floor(100.0 * d_eff + 0.5))


def convergence_table(cells: list[np.ndarray], refinements: tuple[int, ...] = (1, 2, 4, 8, 16)) -> np.ndarray:
    """``D_k`` (``grid_diffusion``) of each cell (rows) at each refinement ``k`` (columns)."""
    return np.array([[grid_diffusion(cell, refine=k) for k in refinements] for cell in cells])
