"""α-CROWN bounds of Conv neurons on their receptive fields (``bounds/relu_windows.py``): the same bounds and
slopes as on the whole network, sound on sampled points, and the windows are really taken."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nnverify.bounds import optimized, relu_windows
from nnverify.bounds.backward import crown_bounds
from nnverify.bounds.interval import interval_bounds
from nnverify.bounds.optimized import Slopes, optimized_layer_bounds
from nnverify.graph.ops import conv_kernels

sys.path.insert(0, str(Path(__file__).parent.parent / "graph"))
from onnx_nets import small_cnn_layers

MARGINS = {"margin_rel": 1e-9, "margin_abs": 1e-12}


def test_windowed_layer_bounds_equal_the_whole_network_and_contain_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conv_kernels, "PAYS_FACTOR", 0)  # the kernel maps even on these small convs
    monkeypatch.setattr(relu_windows, "GROUP", 3)  # one position's channels: corner windows pay, inner ones not
    net = small_cnn_layers(tmp_path / "cnn.onnx")
    assert relu_windows.windows_of(net) is not None
    rng = np.random.default_rng(3)
    centre = rng.uniform(-1, 1, net.n_inputs)
    lb, ub = centre - 0.3, centre + 0.3
    itv = interval_bounds(net, lb, ub, **MARGINS)
    crown = crown_bounds(net, itv.lb, itv.ub, **MARGINS)
    taken = {"windows": 0}
    restrict = relu_windows.Windows._restrict

    def counted(self: relu_windows.Windows, support: dict, k: int) -> object:
        taken["windows"] += 1
        return restrict(self, support, k)

    monkeypatch.setattr(relu_windows.Windows, "_restrict", counted)
    slopes: dict[int, Slopes] = {}
    mine = optimized_layer_bounds(net, crown, iterations=8, slopes=slopes, **MARGINS)
    assert taken["windows"] > 0
    monkeypatch.setattr(optimized, "windows_of", lambda graph: None)
    whole_slopes: dict[int, Slopes] = {}
    whole = optimized_layer_bounds(net, crown, iterations=8, slopes=whole_slopes, **MARGINS)
    for a, b in zip(mine.lb + mine.ub, whole.lb + whole.ub, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert slopes.keys() == whole_slopes.keys() and slopes
    for k, s in slopes.items():
        np.testing.assert_array_equal(s.idx, whole_slopes[k].idx)
        for r, a in s.alpha.items():
            # outside a row's windows its coefficients are 0, so the whole network's ascent leaves CROWN's slope
            np.testing.assert_allclose(a, whole_slopes[k].alpha[r], rtol=0, atol=1e-9)
            np.testing.assert_array_equal(s.default[r], whole_slopes[k].default[r])
    x = rng.uniform(lb, ub, size=(4000, net.n_inputs))
    for v, lo, hi in zip(net.eval_all(x), mine.lb, mine.ub, strict=True):
        assert np.all(v >= lo - 1e-12) and np.all(v <= hi + 1e-12)


def test_fully_connected_networks_have_no_windows() -> None:
    from netgen import random_net

    net = random_net(np.random.default_rng(0), [3, 5, 2])
    assert relu_windows.windows_of(net) is None
