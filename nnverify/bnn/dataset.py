"""The labelled datasets D_2 and D_3 of Korneev et al. (SAT 2018): random cells and their diffusion labels.

Candidate cell ``i`` of a dataset is drawn by ``cells.random_cell`` from ``numpy.random.default_rng((seed, grains,
i))`` and labelled by ``pde.diffusion_label(pde.effective_diffusion(...))``; candidates below ``MIN_DIFFUSION``
are dropped, and candidates are drawn in order until ``n`` are kept. A dataset is therefore a deterministic
function of ``(n, grains, seed, refine, area)``, and a smaller dataset is a prefix of a larger one with the same
parameters. Datasets are saved as compressed ``.npz`` files. Nothing here trains a network (see ``train``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnverify.bnn import cells, pde

log = logging.getLogger(__name__)

#: Dataset sizes of the paper: D_2 has 10,000 images with 2 grains, D_3 has 5,000 with 3 grains.
PAPER_SIZES = {2: 10_000, 3: 5_000}
#: Default seed of the shipped datasets.
DEFAULT_SEED = 2018


@dataclass(frozen=True, slots=True)
class Dataset:
    """Labelled unit cells.

    Attributes:
        pixels: ``uint8 (N, size*size)``, row-major 0/1 pixels (1 = solid), the network's inputs.
        labels: ``int64 (N,)``, ``floor(100 * D_eff + 1/2)`` in 40 .. 100.
        d_eff: ``float64 (N,)``, the effective diffusion coefficients behind the labels.
        grains: Number of grains per cell.
        seed: The seed the candidates were drawn from.
        refine: ``pde.effective_diffusion``'s refinement.
        area: Inclusive range of grain areas given to ``cells.random_cell``.
        n_drawn: Candidates drawn (kept + dropped by the 0.4 cut).
        build_seconds: Wall time of the build (0 if unknown).
        build_cpu_seconds: CPU time of the build (0 if unknown); the wall time depends on the machine's load.
    """

    pixels: np.ndarray
    labels: np.ndarray
    d_eff: np.ndarray
    grains: int
    seed: int
    refine: int
    area: tuple[int, int]
    n_drawn: int
    build_seconds: float = 0.0
    build_cpu_seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def dropped_fraction(self) -> float:
        """Fraction of the drawn candidates that the ``D_eff >= 0.4`` cut dropped."""
        return 1.0 - len(self) / self.n_drawn if self.n_drawn else 0.0


def build_dataset(
    n: int,
    grains: int,
    *,
    seed: int = DEFAULT_SEED,
    refine: int = pde.DEFAULT_REFINE,
    area: tuple[int, int] = cells.DEFAULT_AREA,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Draw candidates until ``n`` cells with ``D_eff >= 0.4`` are found; single-threaded.

    Args:
        n: Number of labelled cells wanted.
        grains: Grains per cell.
        seed: Seed of the candidates (candidate ``i`` uses ``default_rng((seed, grains, i))``).
        refine: Refinement of the PDE solve.
        area: Inclusive range of grain areas.
        progress: Called as ``progress(kept, drawn)`` after every candidate (e.g. a progress bar).

    Returns:
        The dataset, in candidate order.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    pixels: list[np.ndarray] = []
    labels: list[int] = []
    d_effs: list[float] = []
    drawn = 0
    while len(labels) < n:
        rng = np.random.default_rng((seed, grains, drawn))
        image = cells.solid(cells.random_cell(rng, grains, area=area))
        d_eff = pde.effective_diffusion(image, refine=refine)
        label = pde.diffusion_label(d_eff)
        drawn += 1
        if label is not None:
            pixels.append(image.reshape(-1))
            labels.append(label)
            d_effs.append(d_eff)
        if progress is not None:
            progress(len(labels), drawn)
    seconds = time.perf_counter() - start
    log.info("built %d cells with %d grains from %d candidates in %.1f s", n, grains, drawn, seconds)
    return Dataset(
        pixels=np.array(pixels, dtype=np.uint8).reshape(n, -1),
        labels=np.array(labels, dtype=np.int64),
        d_eff=np.array(d_effs, dtype=np.float64),
        grains=grains,
        seed=seed,
        refine=refine,
        area=area,
        n_drawn=drawn,
        build_seconds=seconds,
        build_cpu_seconds=time.process_time() - cpu_start,
    )


def save_dataset(dataset: Dataset, path: str | os.PathLike[str]) -> None:
    """Write ``dataset`` as a compressed ``.npz`` (arrays plus the scalar parameters), creating the directory."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        np.savez_compressed(
            file,
            pixels=dataset.pixels,
            labels=dataset.labels,
            d_eff=dataset.d_eff,
            grains=dataset.grains,
            seed=dataset.seed,
            refine=dataset.refine,
            area=np.array(dataset.area),
            n_drawn=dataset.n_drawn,
            build_seconds=dataset.build_seconds,
            build_cpu_seconds=dataset.build_cpu_seconds,
        )


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Read a dataset written by ``save_dataset``."""
    with np.load(path) as data:
        return Dataset(
            pixels=data["pixels"],
            labels=data["labels"],
            d_eff=data["d_eff"],
            grains=int(data["grains"]),
            seed=int(data["seed"]),
            refine=int(data["refine"]),
            area=(int(data["area"][0]), int(data["area"][1])),
            n_drawn=int(data["n_drawn"]),
            build_seconds=float(data["build_seconds"]),
            build_cpu_seconds=float(data["build_cpu_seconds"]) if "build_cpu_seconds" in data else 0.0,
        )


def dataset_path(directory: str | os.PathLike[str], grains: int, n: int, seed: int) -> Path:
    """The cache file name of a dataset: ``<directory>/porous_d<grains>_n<n>_seed<seed>.npz``."""
    return Path(directory) / f"porous_d{grains}_n{n}_seed{seed}.npz"


def load_or_build(
    directory: str | os.PathLike[str],
    grains: int,
    *,
    n: int | None = None,
    seed: int = DEFAULT_SEED,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[Dataset, Path]:
    """The cached dataset for ``(grains, n, seed)`` under ``directory``, built and saved first if missing.

    A cached file made with another refinement or grain-area range than the current defaults is rebuilt.

    Args:
        directory: Cache directory (created if needed).
        grains: Grains per cell.
        n: Number of cells; the paper's size (``PAPER_SIZES``) by default.
        seed: Seed of the candidates.
        progress: Passed to ``build_dataset`` when building.

    Returns:
        The dataset and its file.
    """
    size = PAPER_SIZES[grains] if n is None else n
    path = dataset_path(directory, grains, size, seed)
    if path.is_file():
        cached = load_dataset(path)
        if (cached.refine, cached.area) == (pde.DEFAULT_REFINE, cells.DEFAULT_AREA):
            return cached, path
        log.warning("%s was built with other parameters (refine, area); rebuilding it", path)
    dataset = build_dataset(size, grains, seed=seed, progress=progress)
    save_dataset(dataset, path)
    return dataset, path
