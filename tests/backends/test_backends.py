"""The same small problems on every available backend give the same status (and correct solutions)."""

from __future__ import annotations

import numpy as np
import pytest

from nnverify.backends import BACKENDS, Backend, available_backends, get_backend
from nnverify.backends.base import BackendResult, SolveStatus
from nnverify.encode.problem import Problem, Row
from nnverify.errors import BackendUnavailableError

TIMEOUT_S = 30.0


#: Backends for continuous problems (CP-SAT takes pure integer problems only: tests/backends/test_cpsat.py).
CONTINUOUS_BACKENDS = [name for name in available_backends() if name != "cpsat"]


@pytest.fixture(params=CONTINUOUS_BACKENDS, ids=str)
def backend(request: pytest.FixtureRequest) -> Backend:
    return get_backend(request.param)


def _row(idx: list[int], coef: list[float], lo: float = -np.inf, hi: float = np.inf) -> Row:
    return Row(np.array(idx, dtype=np.int64), np.array(coef), lo, hi)


def _solve(backend: Backend, p: Problem) -> BackendResult:
    result = backend.solve(p, timeout_s=TIMEOUT_S)
    assert result.seconds >= 0.0
    if result.status is SolveStatus.FEASIBLE:
        assert result.values is not None and result.values.shape == (p.n_vars,)
    return result


# --- registry -----------------------------------------------------------------------------------------------


def test_highs_is_always_available() -> None:
    assert "highs" in available_backends()
    assert set(available_backends()) <= set(BACKENDS)


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(BackendUnavailableError, match=r"^unknown backend 'foo'; choose one of: highs, gurobi"):
        get_backend("foo")


def test_missing_backend_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *args: None if name == "gurobipy" else object())
    assert "gurobi" not in available_backends()
    usable = ", ".join(available_backends())
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("gurobi")
    assert str(info.value) == f"backend 'gurobi' is not installed: pip install 'nnverify[gurobi]'. Available: {usable}."


# --- LPs ----------------------------------------------------------------------------------------------------


def test_feasible_lp(backend: Backend) -> None:
    p = Problem()
    p.add_vars(np.zeros(2), np.ones(2))
    p.add_row(np.array([0, 1]), np.array([1.0, 1.0]), 1.5, 1.5)
    result = _solve(backend, p)
    assert result.status is SolveStatus.FEASIBLE
    assert result.values is not None and result.values.sum() == pytest.approx(1.5, abs=1e-6)


def test_infeasible_lp(backend: Backend) -> None:
    p = Problem()
    p.add_vars(np.zeros(2), np.ones(2))
    p.add_row(np.array([0, 1]), np.array([1.0, 1.0]), 2.5)
    assert _solve(backend, p).status is SolveStatus.INFEASIBLE


def test_unlimited_time(backend: Backend) -> None:
    p = Problem()
    p.add_vars(np.zeros(2), np.ones(2))
    assert backend.solve(p, timeout_s=float("inf")).status is SolveStatus.FEASIBLE


def test_empty_problem_is_feasible(backend: Backend) -> None:
    result = _solve(backend, Problem())
    assert result.status is SolveStatus.FEASIBLE


# --- ReLU ---------------------------------------------------------------------------------------------------


def _relu(x_lb: float = -1.0, x_ub: float = 1.0) -> tuple[Problem, int, int]:
    p = Problem()
    x = p.add_var(x_lb, x_ub, name="x")
    y = p.add_var(-10.0, 10.0, name="y")
    p.add_relu(x, y)
    return p, x, y


def test_relu_feasible_only_when_active(backend: Backend) -> None:
    p, x, y = _relu()
    p.add_row(np.array([y]), np.array([1.0]), 0.5)  # y >= 0.5 needs x = y >= 0.5
    p.add_row(np.array([x, y]), np.array([1.0, 1.0]), -np.inf, 1.2)
    result = _solve(backend, p)
    assert result.status is SolveStatus.FEASIBLE and result.values is not None
    assert result.values[x] >= 0.5 - 1e-6
    assert result.values[y] == pytest.approx(result.values[x], abs=1e-6)


def test_relu_feasible_only_when_inactive(backend: Backend) -> None:
    p, x, y = _relu()
    p.add_row(np.array([x]), np.array([1.0]), -np.inf, -0.3)
    result = _solve(backend, p)
    assert result.status is SolveStatus.FEASIBLE and result.values is not None
    assert result.values[x] <= -0.3 + 1e-6
    assert result.values[y] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "extra",
    [[([1], [1.0], -np.inf, -0.5)], [([1], [1.0], 0.5, np.inf), ([0], [1.0], -np.inf, 0.4)]],
    ids=["negative-output", "output-above-input"],
)
def test_relu_infeasible(backend: Backend, extra: list[tuple[list[int], list[float], float, float]]) -> None:
    p, _, _ = _relu()
    for idx, coef, lo, hi in extra:
        p.add_row(np.array(idx), np.array(coef), lo, hi)
    assert _solve(backend, p).status is SolveStatus.INFEASIBLE


# --- Sign ---------------------------------------------------------------------------------------------------


def _sign(x_lb: float = -1.0, x_ub: float = 2.0) -> tuple[Problem, int, int]:
    p = Problem()
    x = p.add_var(x_lb, x_ub, name="x")
    y = p.add_var(-1.0, 1.0, name="y")
    p.add_sign(x, y)
    return p, x, y


@pytest.mark.parametrize(
    ("y_value", "x_lo", "x_hi"),
    [(-1.0, 0.5, np.inf), (1.0, -np.inf, -0.1), (0.0, 0.1, np.inf), (0.0, -np.inf, -0.1)],
    ids=["minus-one-positive-x", "one-negative-x", "zero-positive-x", "zero-negative-x"],
)
def test_sign_infeasible(backend: Backend, y_value: float, x_lo: float, x_hi: float) -> None:
    p, x, y = _sign()
    p.add_row(np.array([y]), np.array([1.0]), y_value, y_value)
    p.add_row(np.array([x]), np.array([1.0]), x_lo, x_hi)
    assert _solve(backend, p).status is SolveStatus.INFEASIBLE


@pytest.mark.parametrize("y_value", [-1.0, 0.0, 1.0], ids=["minus-one", "zero", "one"])
def test_sign_feasible_solution_has_that_sign(backend: Backend, y_value: float) -> None:
    p, x, y = _sign()
    p.add_row(np.array([y]), np.array([1.0]), y_value, y_value)
    result = _solve(backend, p)
    assert result.status is SolveStatus.FEASIBLE and result.values is not None
    assert result.values[y] == pytest.approx(y_value, abs=1e-6)
    # Non-strict at x = 0 (documented candidate): the solution's x is on the closed side of its sign.
    assert result.values[x] * y_value >= -1e-6
    if y_value == 0.0:
        assert result.values[x] == pytest.approx(0.0, abs=1e-6)


def test_stable_sign_infeasible(backend: Backend) -> None:
    p, _, y = _sign(0.5, 2.0)
    p.add_row(np.array([y]), np.array([1.0]), -np.inf, 0.0)
    assert _solve(backend, p).status is SolveStatus.INFEASIBLE


# --- Disjunction --------------------------------------------------------------------------------------------


def _box(global_hi: float) -> Problem:
    p = Problem()
    p.add_vars(np.zeros(2), np.ones(2))
    p.add_row(np.array([0, 1]), np.array([1.0, 1.0]), -np.inf, global_hi)
    return p


def test_disjunction_of_impossible_terms_is_infeasible(backend: Backend) -> None:
    p = _box(2.0)
    p.add_disjunction([[_row([0], [1.0], lo=2.0)], [_row([0, 1], [1.0, 1.0], lo=3.0)]])
    assert _solve(backend, p).status is SolveStatus.INFEASIBLE


def test_disjunction_with_one_possible_term(backend: Backend) -> None:
    p = _box(2.0)
    p.add_disjunction([[_row([0], [1.0], lo=2.0)], [_row([1], [1.0], hi=0.2), _row([0], [1.0], lo=0.7)]])
    result = _solve(backend, p)
    assert result.status is SolveStatus.FEASIBLE and result.values is not None
    assert result.values[1] <= 0.2 + 1e-6 and result.values[0] >= 0.7 - 1e-6


@pytest.mark.parametrize(("global_hi", "status"), [(0.5, "infeasible"), (1.0, "feasible")], ids=["tight", "loose"])
def test_disjunction_decided_by_big_m(backend: Backend, global_hi: float, status: str) -> None:
    p = _box(global_hi)
    both_large = [_row([0], [1.0], lo=0.4), _row([1], [1.0], lo=0.4)]
    far_apart = [_row([0, 1], [1.0, -1.0], lo=0.9)]
    p.add_disjunction([both_large, far_apart])
    result = _solve(backend, p)
    assert result.status == status
    if result.values is not None:
        x0, x1 = result.values
        assert (x0 >= 0.4 - 1e-6 and x1 >= 0.4 - 1e-6) or x0 - x1 >= 0.9 - 1e-6


# --- A small ReLU network encoded by hand -------------------------------------------------------------------


class _Net:
    """x (3) -> W1, b1 -> ReLU (8) -> W2, b2 -> z (2); input box [-1, 1]^3."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.w1, self.b1 = rng.normal(size=(8, 3)), rng.normal(size=8) * 0.5
        self.w2, self.b2 = rng.normal(size=(2, 8)), rng.normal(size=2) * 0.5
        self.lb, self.ub = -np.ones(3), np.ones(3)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x @ self.w1.T + self.b1, 0.0) @ self.w2.T + self.b2

    @staticmethod
    def _affine(w: np.ndarray, b: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mid, rad = (lb + ub) / 2, (ub - lb) / 2
        return w @ mid + b - np.abs(w) @ rad, w @ mid + b + np.abs(w) @ rad

    def interval(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pre-activation bounds of the hidden layer and output bounds over the input box."""
        h_lb, h_ub = self._affine(self.w1, self.b1, self.lb, self.ub)
        z_lb, z_ub = self._affine(self.w2, self.b2, np.maximum(h_lb, 0), np.maximum(h_ub, 0))
        return h_lb, h_ub, z_lb, z_ub

    def encode(self, x_lb: np.ndarray, x_ub: np.ndarray) -> tuple[Problem, np.ndarray, np.ndarray]:
        """Bounds of hidden/output variables come from the whole box, whatever ``x_lb``, ``x_ub`` are."""
        h_lb, h_ub, z_lb, z_ub = self.interval()
        p = Problem()
        x = p.add_vars(x_lb, x_ub, prefix="x")
        h = p.add_vars(h_lb, h_ub, prefix="h")
        a = p.add_vars(np.maximum(h_lb, 0), np.maximum(h_ub, 0), prefix="a")
        z = p.add_vars(z_lb, z_ub, prefix="z")
        for j in range(8):  # h_j - W1_j x = b1_j
            p.add_row(np.append(h[j], x), np.append(1.0, -self.w1[j]), self.b1[j], self.b1[j])
            p.add_relu(h[j], a[j])
        for k in range(2):
            p.add_row(np.append(z[k], a), np.append(1.0, -self.w2[k]), self.b2[k], self.b2[k])
        return p, x, z


@pytest.mark.parametrize("seed", [0, 1, 2], ids=lambda s: f"net{s}")
def test_network_encoding_is_exact_for_fixed_inputs(backend: Backend, seed: int) -> None:
    net = _Net(seed)
    h_lb, h_ub, _, _ = net.interval()
    assert np.any((h_lb < 0) & (h_ub > 0)), "the test needs unstable ReLUs to exercise the big-M rows"
    for point in np.random.default_rng(seed).uniform(-1, 1, size=(4, 3)):
        p, _, z = net.encode(point, point)
        result = _solve(backend, p)
        assert result.status is SolveStatus.FEASIBLE and result.values is not None
        np.testing.assert_allclose(result.values[z], net.forward(point), atol=1e-6)


def test_network_output_above_interval_bound_is_infeasible(backend: Backend) -> None:
    net = _Net(0)
    _, _, _, z_ub = net.interval()
    p, _, z = net.encode(net.lb, net.ub)
    p.lb[z[0]], p.ub[z[0]] = -1e3, 1e3  # infeasibility must come from the encoding, not from z's column
    p.add_row(np.array([z[0]]), np.array([1.0]), z_ub[0] + 1.0)
    assert _solve(backend, p).status is SolveStatus.INFEASIBLE


def test_network_maximum_is_sound_and_tight(backend: Backend) -> None:
    net = _Net(1)
    p, x, z = net.encode(net.lb, net.ub)
    p.objective = (np.array([z[0]]), np.array([-1.0]))  # maximise z_0
    result = _solve(backend, p)
    assert result.status is SolveStatus.FEASIBLE and result.values is not None
    best = result.values[z[0]]
    assert best == pytest.approx(net.forward(result.values[x])[0], abs=1e-5)  # the maximiser is real
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 21)] * 3), axis=-1).reshape(-1, 3)
    assert net.forward(grid)[:, 0].max() <= best + 1e-3 * (1 + abs(best))  # nothing sampled beats it
    p.objective = None
    p.add_row(np.array([z[0]]), np.array([1.0]), best + 1e-2 * (1 + abs(best)))
    assert _solve(backend, p).status is SolveStatus.INFEASIBLE


# --- Time limit and silence ---------------------------------------------------------------------------------


def _market_split(m: int = 4, seed: int = 0) -> Problem:
    """Cornuéjols–Dawande market split instance: tiny, but hard for branch and bound."""
    rng = np.random.default_rng(seed)
    n = 10 * (m - 1)
    a = rng.integers(0, 100, size=(m, n)).astype(float)
    p = Problem()
    for _ in range(n):
        p.add_var(0.0, 1.0, integer=True)
    for i in range(m):
        rhs = float(np.floor(a[i].sum() / 2))
        p.add_row(np.arange(n), a[i], rhs, rhs)
    return p


@pytest.mark.parametrize("timeout_s", [0.0, -1.0, 0.02], ids=["zero", "negative", "tiny"])
def test_timeout_is_a_status(backend: Backend, timeout_s: float) -> None:
    result = backend.solve(_market_split(), timeout_s=timeout_s)
    assert result.status is SolveStatus.TIMEOUT
    assert result.values is None


def test_solvers_print_nothing(backend: Backend, capfd: pytest.CaptureFixture[str]) -> None:
    p, _, _ = _relu()
    p.add_row(np.array([1]), np.array([1.0]), 0.5)
    assert backend.solve(p, timeout_s=TIMEOUT_S).status is SolveStatus.FEASIBLE
    assert backend.solve(_market_split(), timeout_s=0.02).status is SolveStatus.TIMEOUT
    assert capfd.readouterr() == ("", "")
