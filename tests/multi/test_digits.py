"""The digits slide queries (properties/queries/digits/): every shipped query translates, and a two-network
question agrees with the same question built as one side-by-side ONNX network asked through the 1.0 path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multi.test_examples import side_by_side
from nnverify.multi.qlang import program_files, translate
from nnverify.multi.solve import decide_query
from nnverify.options import Options
from nnverify.pipeline import verify
from nnverify.result import Verdict
from nnverify.spec.vnnlib import parse_vnnlib

DIGITS = Path(__file__).resolve().parents[2] / "properties" / "queries" / "digits"
NETS = {name: str(DIGITS / f"{name.lower()}.onnx") for name in ("NN1", "NN2", "GEN")}


@pytest.mark.parametrize("path", sorted(DIGITS.glob("*.q")), ids=lambda p: p.stem)
def test_shipped_query_translates(path: Path) -> None:
    image = np.load(DIGITS / ("image_8.npy" if "two_norms" in path.stem else "image_3.npy"))
    program = translate(path.read_text(), str(path), NETS, {"image": image})
    assert program.query.networks and program_files(program, NETS)


def _disagreement(eps: float) -> tuple[str, str]:
    """``class(NN1(i)) = 3`` and ``class(NN2(i)) != 3`` in the L∞ ball ``eps`` around image_3, in [0, 1]: the query
    language text and the VNN-LIB 1.0 property over ``[NN1(x), NN2(x)]`` (outputs 0-9, then 10-19)."""
    query = f"find i[8,8] where i in [0, 1], linf(i - image) <= {eps}, class(NN1(i)) = 3, class(NN2(i)) != 3"
    image = np.load(DIGITS / "image_3.npy").ravel().astype(np.float64)
    lo, hi = np.maximum(image - eps, 0.0), np.minimum(image + eps, 1.0)
    text = "".join(f"(declare-const X_{i} Real)" for i in range(64))
    text += "".join(f"(declare-const Y_{j} Real)" for j in range(20))
    text += "".join(f"(assert (>= X_{i} {float(lo[i])!r}))(assert (<= X_{i} {float(hi[i])!r}))" for i in range(64))
    text += "".join(f"(assert (< Y_{j} Y_3))" for j in range(10) if j != 3)
    text += "(assert (or " + " ".join(f"(< Y_13 Y_{10 + j})" for j in range(10) if j != 3) + "))"
    return query, text


@pytest.mark.parametrize("eps", [0.04, 0.15])
def test_two_networks_agree_with_one_side_by_side_network(tmp_path: Path, eps: float) -> None:
    """The product route (NN1, NN2 merged by multi/product.py) and an independently built side-by-side network
    through the single-network path give the same verdict; a sat of either replays (each path replays its own)."""
    query, prop = _disagreement(eps)
    program = translate(query, "q.dl2", NETS, {"image": np.load(DIGITS / "image_3.npy")})
    multi = decide_query(program.query, program_files(program, NETS), Options(timeout_s=60))
    net = side_by_side(NETS["NN1"], NETS["NN2"], tmp_path / "pair.onnx", subtract=False)
    single = verify(net, parse_vnnlib(prop), Options(timeout_s=60))
    assert multi.verdict in (Verdict.SAT, Verdict.UNSAT)
    assert single.verdict is multi.verdict
    if multi.values is not None:
        y1, y2 = multi.values["NN1__out"], multi.values["NN2__out"]
        assert y1.argmax() == 3 and y2[3] < y2.max()


@pytest.mark.parametrize("name", ["differencing_r008", "hidden_patch_n5"])
def test_emitted_vnnlib_is_official_and_agrees(name: str, tmp_path: Path) -> None:
    """The query's VNN-LIB 2.0 form (``--emit-vnnlib``) is read by the PyPI ``vnnlib`` package, and ``check`` on
    it answers like the query (hidden_patch_n5); the softmax threshold has no 2.0 form, so differencing's file
    carries its necessary logit margins only and is just read here."""
    from nnverify.multi.emit import to_vnnlib2
    from nnverify.multi.solve import verify_query

    program = translate((DIGITS / f"{name}.q").read_text(), name, NETS, {"image": np.load(DIGITS / "image_3.npy")})
    text = to_vnnlib2(program.query)
    vnnlib = pytest.importorskip("vnnlib")
    vnnlib.parse_query_string(text)
    if name == "hidden_patch_n5":
        path = tmp_path / f"{name}.vnnlib"
        path.write_text(text)
        via_file = verify_query(path, program_files(program, NETS), Options(timeout_s=60))
        direct = decide_query(program.query, program_files(program, NETS), Options(timeout_s=60))
        assert via_file.verdict is direct.verdict is Verdict.UNSAT
