"""Upsample and Resize (nearest, linear): eval equals onnxruntime in every coordinate mode; cubic is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import helper
from onnx_nets import SaveNet, check_net

from nnverify.cli import main
from nnverify.errors import UnsupportedOpsError
from nnverify.graph.onnx_import import load_network
from nnverify.graph.ops.resize import _COORDINATE_MODES, _NEAREST_MODES


def floats(*values: float) -> np.ndarray:
    """A float initializer."""
    return np.array(values, dtype=np.float64)


def resize(shape: tuple[int, ...], scales: tuple[float, ...] = (), sizes: tuple[int, ...] = (), **attrs: Any) -> tuple:
    """A Resize (opset 13) by scales or sizes: (nodes, input shape, initializers, opset)."""
    inits: dict[str, np.ndarray] = {"s": floats(*scales)} if scales else {}
    if sizes:
        inits["n"] = np.array(sizes, dtype=np.int64)
    node = helper.make_node("Resize", ["x", "", "s" if scales else "", *(["n"] if sizes else [])], ["y"], **attrs)
    return [node], shape, inits, 13


CASES: dict[str, tuple[list[onnx.NodeProto], tuple[int, ...], dict[str, np.ndarray], int]] = {
    "upsample-opset9-input": (
        [helper.make_node("Upsample", ["x", "s"], ["y"], mode="nearest")],
        (1, 2, 3, 3),
        {"s": floats(1, 1, 2, 2)},
        9,
    ),
    "upsample-opset7-attr-fractional": (
        [helper.make_node("Upsample", ["x"], ["y"], scales=[1.0, 1.0, 1.5, 2.5])],
        (1, 1, 3, 2),
        {},
        7,
    ),
    "resize-opset10": ([helper.make_node("Resize", ["x", "s"], ["y"])], (1, 1, 3, 4), {"s": floats(1, 1, 2, 0.5)}, 10),
    "resize-half-pixel-default": resize((1, 1, 3, 4), scales=(1, 1, 2, 1.5)),
    "resize-down-prefer-ceil": resize((1, 1, 6, 5), scales=(1, 1, 0.5, 0.6), nearest_mode="round_prefer_ceil"),
    "resize-asymmetric-floor": resize(
        (1, 1, 3, 3), sizes=(1, 1, 7, 5), coordinate_transformation_mode="asymmetric", nearest_mode="floor"
    ),
    "resize-align-corners-ceil": resize(
        (1, 2, 3, 4), sizes=(1, 2, 5, 9), coordinate_transformation_mode="align_corners", nearest_mode="ceil"
    ),
    "resize-pytorch-half-pixel": resize(
        (1, 1, 4, 3), sizes=(1, 1, 1, 7), coordinate_transformation_mode="pytorch_half_pixel"
    ),
    "upsample-linear-opset9": (
        [helper.make_node("Upsample", ["x", "s"], ["y"], mode="linear")],
        (1, 2, 3, 3),
        {"s": floats(1, 1, 2, 1.5)},
        9,
    ),
    "resize-linear-opset10": (
        [helper.make_node("Resize", ["x", "s"], ["y"], mode="linear")],
        (1, 1, 3, 4),
        {"s": floats(1, 1, 2, 0.5)},
        10,
    ),
    "resize-linear-half-pixel": resize((1, 2, 3, 4), scales=(1, 1, 2, 1.5), mode="linear"),
    "resize-linear-align-corners-down": resize(
        (1, 1, 5, 6), sizes=(1, 1, 3, 4), mode="linear", coordinate_transformation_mode="align_corners"
    ),
    "resize-linear-pytorch-asymmetric": resize(
        (1, 1, 4, 3), sizes=(1, 1, 1, 7), mode="linear", coordinate_transformation_mode="pytorch_half_pixel"
    ),
    "resize-linear-asymmetric-3d": resize(
        (1, 1, 2, 3, 2), scales=(1, 1, 2, 1, 2.5), mode="linear", coordinate_transformation_mode="asymmetric"
    ),
    "resize-aspect-not-larger-opset18": (
        [helper.make_node("Resize", ["x", "", "", "n"], ["y"], axes=[2, 3], keep_aspect_ratio_policy="not_larger")],
        (1, 1, 3, 4),
        {"n": np.array([7, 7], dtype=np.int64)},
        18,
    ),
    "resize-aspect-not-smaller-linear-opset18": (
        [
            helper.make_node(
                "Resize", ["x", "", "", "n"], ["y"], mode="linear", axes=[3, 2], keep_aspect_ratio_policy="not_smaller"
            )
        ],
        (1, 1, 4, 5),
        {"n": np.array([3, 2], dtype=np.int64)},
        18,
    ),
    "resize-opset19-symmetric-axes": (
        [
            helper.make_node(
                "Resize",
                ["x", "", "s"],
                ["y"],
                axes=[-1],
                mode="linear",
                coordinate_transformation_mode="half_pixel_symmetric",
            )
        ],
        (1, 2, 3, 4),
        {"s": floats(1.75)},
        19,
    ),
}


@pytest.mark.parametrize(("nodes", "shape", "inits", "opset"), CASES.values(), ids=CASES.keys())
def test_resize_matches_onnxruntime(
    save_net: SaveNet, nodes: list[onnx.NodeProto], shape: tuple[int, ...], inits: dict[str, np.ndarray], opset: int
) -> None:
    check_net(save_net(nodes, shape, inits, opset))


def test_other_modes_are_refused_all_at_once(save_net: SaveNet) -> None:
    nodes = [
        helper.make_node("Upsample", ["x", "s"], ["a"], name="up", mode="bilinear"),
        helper.make_node(
            "Resize", ["a", "", "s"], ["b"], name="crop", coordinate_transformation_mode="tf_crop_and_resize"
        ),
        helper.make_node("Resize", ["b", "", "s"], ["y"], name="cubic", mode="cubic"),
    ]
    with pytest.raises(UnsupportedOpsError) as info:
        load_network(save_net(nodes, (1, 1, 2, 2), {"s": floats(1, 1, 2, 2)}))
    assert str(info.value).splitlines()[1:] == [
        "  Upsample  1 node   'up': mode 'bilinear' is not supported (only nearest and linear)",
        "  Resize    2 nodes, first 'crop': coordinate_transformation_mode 'tf_crop_and_resize' is not supported",
    ]


def test_nearest_half_pixel_symmetric_is_refused(save_net: SaveNet) -> None:
    """onnxruntime rounds its exact ties (e.g. 7 -> 4 entries at scale 0.6) differently from any float order."""
    attrs = {"coordinate_transformation_mode": "half_pixel_symmetric"}
    nodes = [helper.make_node("Resize", ["x", "", "s"], ["y"], name="sym", **attrs)]
    with pytest.raises(UnsupportedOpsError, match="'sym': coordinate_transformation_mode 'half_pixel_symmetric' is"):
        load_network(save_net(nodes, (1, 1, 1, 7), {"s": floats(1, 1, 1, 0.6)}, 19))


SWEEP_SCALES = (0.6, 1.5, 2.5, 0.75, 1 / 3, 4 / 3, 1.7)
SWEEP_MODES = [
    (coordinates, rounding)
    for coordinates in _COORDINATE_MODES
    for rounding in (*_NEAREST_MODES[:4], "linear")
    if coordinates != "half_pixel_symmetric" or rounding == "linear"
]


@pytest.mark.parametrize(("coordinates", "rounding"), SWEEP_MODES)
def test_resize_agrees_with_onnxruntime_on_a_sweep_of_scales(
    save_net: SaveNet, coordinates: str, rounding: str
) -> None:
    """Nearest ties (x.5 source coordinates, computed in float32 as onnxruntime does) and linear weights."""
    attrs = {"mode": "linear"} if rounding == "linear" else {"nearest_mode": rounding}
    nodes = []
    for j in range(len(SWEEP_SCALES)):
        nodes.append(
            helper.make_node(
                "Resize", ["x", "", f"s{j}"], [f"r{j}"], coordinate_transformation_mode=coordinates, **attrs
            )
        )
        nodes.append(helper.make_node("Flatten", [f"r{j}"], [f"f{j}"], axis=0))
    nodes.append(helper.make_node("Concat", [f"f{j}" for j in range(len(SWEEP_SCALES))], ["y"], axis=1))
    inits = {f"s{j}": floats(1, 1, 1, scale) for j, scale in enumerate(SWEEP_SCALES)}
    check_net(save_net(nodes, (1, 1, 1, 7), inits, 19), n_points=3, low=0, high=10)


def test_cli_reports_a_refused_mode_with_exit_3(save_net: SaveNet, tmp_path: Path) -> None:
    nodes = [helper.make_node("Resize", ["x", "", "s"], ["y"], name="cub", mode="cubic")]
    net = save_net(nodes, (1, 1, 2, 2), {"s": floats(1, 1, 2, 2)})
    prop = tmp_path / "prop.vnnlib"
    declarations = [f"(declare-const X_{i} Real)" for i in range(4)] + [
        f"(declare-const Y_{j} Real)" for j in range(16)
    ]
    bounds = [f"(assert (<= X_{i} 1.0))\n(assert (>= X_{i} 0.0))" for i in range(4)]
    prop.write_text("\n".join([*declarations, *bounds, "(assert (<= Y_0 -1.0))"]) + "\n")
    result = CliRunner().invoke(main, ["check", str(net), str(prop)])
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        f"Error: {net} uses 1 ONNX operator that nnverify does not support:",
        "  Resize  1 node   'cub': mode 'cubic' is not supported (only nearest and linear)",
    ]
