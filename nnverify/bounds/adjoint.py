"""Convolutions as linear maps on flattened batches, for the back-substitution of ``backward.py`` and
``optimized.py``: re-exported from the op layer (``graph/ops/conv_kernels.py``, ``Conv``'s ``conv_map``), where
the ops that own them build them; the bound passes ask ``Op.linear_map`` / ``Op.kernel_map``.
"""

from __future__ import annotations

from nnverify.graph.ops.conv import conv_map
from nnverify.graph.ops.conv_kernels import CHUNK_ELEMENTS, PAYS_FACTOR, ConvMap, TransposedMap, checked_map

__all__ = ["CHUNK_ELEMENTS", "PAYS_FACTOR", "ConvMap", "TransposedMap", "checked_map", "conv_map"]
