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


@pytest.mark.parametrize("group,least", [(3, 4), (48, 1)], ids=["fixed-groups", "halved-groups"])
def test_windowed_layer_bounds_equal_the_whole_network_and_contain_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, group: int, least: int
) -> None:
    """Groups of 3 (one position's channels: corner windows pay, inner ones not), or of 48 halved until they pay."""
    monkeypatch.setattr(conv_kernels, "PAYS_FACTOR", 0)  # the kernel maps even on these small convs
    monkeypatch.setattr(relu_windows, "GROUP", group)
    monkeypatch.setattr(relu_windows, "MIN_GROUP", least)
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


def test_recomputing_domains_with_given_slopes_on_windows_equals_the_whole_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ReLU search's per-domain recomputation (``iterations=0``, the root's slopes as ``given``) on windows:
    the same bounds for a batch of domains as on the whole network."""
    from functools import partial

    from nnverify.bounds.backward import LayerBounds
    from nnverify.bounds.optimized import neuron_bounds

    monkeypatch.setattr(conv_kernels, "PAYS_FACTOR", 0)
    monkeypatch.setattr(relu_windows, "GROUP", 3)
    net = small_cnn_layers(tmp_path / "cnn2.onnx")
    windows = relu_windows.windows_of(net)
    assert windows is not None
    rng = np.random.default_rng(8)
    centre = rng.uniform(-1, 1, net.n_inputs)
    itv = interval_bounds(net, centre - 0.3, centre + 0.3, **MARGINS)
    slopes: dict[int, Slopes] = {}
    root = optimized_layer_bounds(
        net, crown_bounds(net, itv.lb, itv.ub, **MARGINS), iterations=5, slopes=slopes, **MARGINS
    )
    k = max(slopes)  # the second Conv
    assert net.layers[k].map_of(0) is not None  # type: ignore[union-attr]
    # three domains: the first Conv's unstable neurons clamped at 0 one way or the other, at random
    lbs, ubs = [np.repeat(v, 3, axis=0) for v in root.lb], [np.repeat(v, 3, axis=0) for v in root.ub]
    first = min(slopes)
    flip = rng.integers(-1, 2, size=lbs[first].shape)
    lbs[first] = np.where((flip > 0) & (ubs[first] > 0), np.maximum(lbs[first], 0.0), lbs[first])
    ubs[first] = np.where((flip < 0) & (lbs[first] < 0), np.minimum(ubs[first], 0.0), ubs[first])
    for i, layer in enumerate(net.layers):
        if hasattr(layer, "kind"):
            lbs[i], ubs[i] = np.maximum(lbs[layer.source], 0.0), np.maximum(ubs[layer.source], 0.0)  # type: ignore[union-attr]
    bounds = LayerBounds(lbs, ubs)
    idx = np.nonzero(np.any((lbs[k] < 0) & (ubs[k] > 0), axis=0))[0]
    given = slopes[k].rows(idx)
    bound = partial(neuron_bounds, iterations=0, **MARGINS)
    taken = {"windows": 0}
    restrict = relu_windows.Windows._restrict

    def counted(self: relu_windows.Windows, support: dict, k: int) -> object:
        taken["windows"] += 1
        return restrict(self, support, k)

    monkeypatch.setattr(relu_windows.Windows, "_restrict", counted)
    lo, hi, _ = windows.neuron_bounds(bounds, k, idx, bound, given=given, slopes=False)
    assert taken["windows"] > 0
    want_lo, want_hi, _ = neuron_bounds(net, bounds, k, idx, iterations=0, alpha=given, **MARGINS)
    np.testing.assert_allclose(lo, want_lo, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(hi, want_hi, rtol=1e-12, atol=1e-12)
