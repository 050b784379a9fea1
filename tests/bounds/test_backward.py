"""Back-substitution helpers: the concretization of linear functions over the input box."""

from __future__ import annotations

import numpy as np


def test_concretization_is_the_same_whether_the_input_box_is_shared_or_not() -> None:
    """The shared-box fast path (one GEMM over every row) and the per-box path give the same sound minimum,
    below the exact one by at most the margin."""
    from nnverify.bounds.backward import LayerBounds, _concretize_lower

    rng = np.random.default_rng(3)
    lb = rng.uniform(-1.0, 0.0, size=(1, 7))
    ub = lb + rng.uniform(0.0, 1.0, size=(1, 7))
    coef = rng.normal(size=(4, 3, 7))
    const, scale = rng.normal(size=(4, 3)), np.zeros((4, 3))
    shared = LayerBounds([np.broadcast_to(lb, (4, 7))], [np.broadcast_to(ub, (4, 7))])
    own = LayerBounds([np.repeat(lb, 4, axis=0)], [np.repeat(ub, 4, axis=0)])
    a = _concretize_lower(coef, const, scale, shared, 1e-9, 1e-12)
    b = _concretize_lower(coef, const, scale, own, 1e-9, 1e-12)
    exact = (
        const + np.einsum("bkn,n->bk", np.maximum(coef, 0), lb[0]) + np.einsum("bkn,n->bk", np.minimum(coef, 0), ub[0])
    )
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert np.all(a <= exact) and np.all(exact - a < 1e-6)
