"""spec package: properties (VNN-LIB 1 and 2, the discrete-query extension) and witness files."""

from __future__ import annotations


def is_discrete(text: str) -> bool:
    """True if the text declares a Bool or Int variable (the discrete-query extension, ``spec/discrete.py``),
    cheaply: here so that ``nnverify check`` tests its property without importing that module."""
    return " Bool)" in text or " Int)" in text
