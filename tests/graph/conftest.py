"""Fixtures for the graph tests (the helpers themselves live in ``onnx_nets.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx_nets import SaveNet, build_model


@pytest.fixture
def save_net(tmp_path: Path) -> SaveNet:
    """``save_net(nodes, input_shape, initializers, opset=13, name="net.onnx") -> path`` in ``tmp_path``."""

    def save(
        nodes: Sequence[onnx.NodeProto],
        input_shape: Sequence[int | str],
        initializers: dict[str, np.ndarray] | None = None,
        opset: int = 13,
        name: str = "net.onnx",
    ) -> Path:
        path = tmp_path / name
        onnx.save(build_model(nodes, input_shape, initializers, opset), path)
        return path

    return save
