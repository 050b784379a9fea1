"""Porous-media unit cells and the BNN surrogate of Korneev et al., SAT 2018, reproduced from scratch.

"Constrained Image Generation Using Binarized Neural Networks with Decision Procedures" (Korneev, Narodytska,
Pulina, Tacchella, Bjørner, Sagiv, SAT 2018). The surrogate:

- ``cells``: random 16x16 periodic unit cells with 2 or 3 compact, separated grains, and an independent checker;
- ``pde``: the effective diffusion coefficient of a cell (periodic homogenization cell problem, finite volumes);
- ``dataset``: the labelled datasets D_2 and D_3, deterministic from a seed, saved as ``.npz``;
- ``model``, ``onnx_export``, ``train``: the BNN (and a real-valued twin) trained in numpy, exported to ONNX.

The generation queries on top of it: ``shapes``, ``cpsat_shapes``, ``generate``. Nothing here is imported by the
verification pipeline; ``scipy`` is needed by ``pde`` only (and so by ``dataset`` and ``train``).
"""
