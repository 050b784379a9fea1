"""Random layer graphs shared by the bound and search tests (``tests/`` is on ``sys.path`` via conftest)."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from nnverify.graph.layers import ActivationLayer, AffineLayer, InputLayer, LayerGraph
from nnverify.graph.ops.base import ActKind


def random_net(
    rng: np.random.Generator, widths: list[int], *, residual: bool = False, sign: bool = False
) -> LayerGraph:
    """A random fully connected net; optionally a residual (two-source) layer and a Sign activation."""
    layers: list = [InputLayer(widths[0])]
    prev = 0
    for k, (n_in, n_out) in enumerate(pairwise(widths)):
        w = rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)
        layers.append(AffineLayer(f"fc{k}", (prev,), (w,), rng.normal(size=n_out) * 0.3))
        if k < len(widths) - 2:
            kind = ActKind.SIGN if sign and k == 1 else ActKind.RELU
            layers.append(ActivationLayer(f"act{k}", len(layers) - 1, kind, n_out))
        prev = len(layers) - 1
    if residual:
        pre = next(i for i, layer in enumerate(layers) if isinstance(layer, ActivationLayer))
        size = layers[pre].size
        out = layers[-1].size
        layers.append(AffineLayer("res", (prev, pre), (np.eye(out), rng.normal(size=(out, size))), np.zeros(out)))
    return LayerGraph(tuple(layers), len(layers) - 1)
