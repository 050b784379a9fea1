"""Datasets: deterministic from the seed, prefix-stable, labels consistent with D_eff, cached as .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nnverify.bnn import cells, dataset, pde


@pytest.fixture(scope="module")
def small() -> dataset.Dataset:
    return dataset.build_dataset(12, 3, seed=3)


def test_build_is_deterministic_and_prefix_stable(small: dataset.Dataset) -> None:
    again = dataset.build_dataset(12, 3, seed=3)
    prefix = dataset.build_dataset(5, 3, seed=3)
    for name in ("pixels", "labels", "d_eff"):
        assert np.array_equal(getattr(small, name), getattr(again, name))
        assert np.array_equal(getattr(small, name)[:5], getattr(prefix, name))
    other = dataset.build_dataset(5, 3, seed=4)
    assert not np.array_equal(other.pixels, prefix.pixels)


def test_contents(small: dataset.Dataset) -> None:
    assert small.pixels.shape == (12, 256) and small.pixels.dtype == np.uint8
    assert small.labels.dtype == np.int64 and len(small) == 12
    assert np.all((small.labels >= 40) & (small.labels <= 100))
    assert np.all(small.d_eff >= pde.MIN_DIFFUSION)
    assert np.array_equal(small.labels, np.floor(100 * small.d_eff + 0.5))
    assert small.n_drawn >= 12 and 0.0 <= small.dropped_fraction < 1.0
    for image, d_eff in zip(small.pixels, small.d_eff, strict=True):
        assert cells.check_cell(image, 3) == []
        assert pde.effective_diffusion(image.reshape(16, 16)) == d_eff


def test_save_load_round_trip(small: dataset.Dataset, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "d.npz"
    dataset.save_dataset(small, path)
    loaded = dataset.load_dataset(path)
    for name in ("pixels", "labels", "d_eff"):
        assert np.array_equal(getattr(loaded, name), getattr(small, name))
    assert (loaded.grains, loaded.seed, loaded.refine, loaded.area, loaded.n_drawn) == (
        small.grains,
        small.seed,
        small.refine,
        small.area,
        small.n_drawn,
    )


def test_load_or_build_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built, path = dataset.load_or_build(tmp_path, 2, n=4, seed=9)
    assert path == tmp_path / "porous_d2_n4_seed9.npz" and path.is_file()

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt a cached dataset")

    monkeypatch.setattr(dataset, "build_dataset", fail)
    cached, _ = dataset.load_or_build(tmp_path, 2, n=4, seed=9)
    assert np.array_equal(cached.pixels, built.pixels)
