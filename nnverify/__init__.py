"""nnverify: decide properties of neural networks (ONNX + VNN-LIB), with replayed counterexamples.

Public API: ``load_network``, ``load_property``, ``verify``, ``Options``, ``Result``, ``Verdict``,
``Counterexample``, ``NnverifyError``. Names are imported lazily so that ``import nnverify`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nnverify.errors import NnverifyError
    from nnverify.graph.onnx_import import load_network
    from nnverify.options import Options
    from nnverify.pipeline import verify
    from nnverify.result import Counterexample, Result, Verdict
    from nnverify.spec.vnnlib import load_property

_EXPORTS = {
    "Counterexample": "nnverify.result",
    "NnverifyError": "nnverify.errors",
    "Options": "nnverify.options",
    "Result": "nnverify.result",
    "Verdict": "nnverify.result",
    "load_network": "nnverify.graph.onnx_import",
    "load_property": "nnverify.spec.vnnlib",
    "verify": "nnverify.pipeline",
}

__all__ = [
    "Counterexample",
    "NnverifyError",
    "Options",
    "Result",
    "Verdict",
    "load_network",
    "load_property",
    "verify",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nnverify' has no attribute {name!r}")
