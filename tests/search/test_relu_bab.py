"""ReLU-split branch and bound agrees with the exact MILP on random nets; its sat answers replay."""

from __future__ import annotations

import time

import numpy as np
import pytest
from netgen import random_net

from nnverify.backends import get_backend
from nnverify.backends.base import Capabilities, SolveStatus
from nnverify.budget import Budget
from nnverify.graph.layers import LayerGraph
from nnverify.options import Options
from nnverify.search import relu_bab, relu_branching, relu_domains, relu_frontier, relu_race, relu_search
from nnverify.search.bab import SearchStats
from nnverify.search.exact import decide_box
from nnverify.search.relu_bab import relu_split_search, uses_relu_splitting
from nnverify.spec.property import Disjunct


def _query(rng: np.random.Generator, n: int, m: int) -> tuple[np.ndarray, np.ndarray, list[Disjunct]]:
    centre = rng.uniform(-1, 1, size=n)
    radius = rng.uniform(0.05, 0.6, size=n)
    lb, ub = centre - radius, centre + radius
    disjuncts = []
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.integers(1, 3))
        disjuncts.append(Disjunct(lb, ub, np.zeros((k, n)), rng.normal(size=(k, m)), rng.normal(size=k) * 0.5))
    return lb, ub, disjuncts


_Case = tuple[LayerGraph, np.ndarray, np.ndarray, list[Disjunct], SolveStatus]


@pytest.fixture(scope="module")
def random_cases() -> list[_Case]:
    """40 random nets and queries with the exact MILP's verdict, computed once for every search variant below
    (the reference solves are most of the cost; each variant still runs its own search on every case)."""
    rng = np.random.default_rng(42)
    options = Options()
    backend = get_backend("highs", options)
    cases = []
    for _ in range(40):
        net = random_net(rng, [6, 16, 16, 16, 3])
        lb, ub, disjuncts = _query(rng, 6, 3)
        # a generous budget: on a loaded machine one of these solves took ~17 s.
        reference = decide_box(net, lb, ub, disjuncts, backend, Budget.starting_now(300), options)
        cases.append((net, lb, ub, disjuncts, reference.status))
    return cases


@pytest.mark.parametrize(
    ("race", "refine", "slow", "workers", "threads"),
    [
        (False, False, 0.0, 1, 1),
        (True, False, 0.0, 1, 1),
        (True, True, 0.0, 1, 1),
        (True, True, 0.01, 1, 1),
        (True, True, 0.01, 2, 1),
        (False, False, 0.0, 1, 2),
        (True, True, 0.01, 2, 2),
    ],
    ids=[
        "search-only",
        "raced-milp",
        "raced-refined",
        "raced-refined-slow-search",
        "two-workers-slow-search",
        "two-search-threads",
        "two-search-threads-raced-refined-slow",
    ],
)
def test_agrees_with_the_milp_on_random_nets(
    race: bool,
    refine: bool,
    slow: float,
    workers: int,
    threads: int,
    random_cases: list[_Case],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``slow``: every bounding step of the search sleeps, so refined bounds arrive while the search is open
    and it restarts from them; ``workers``: refinement solves side by side (while the search's exact leaves
    may solve too); ``threads``: search threads sharing the stack of open domains."""
    if slow:
        evaluate = relu_search.ReluSearch.evaluate

        def slow_evaluate(self, dom, iterations):  # type: ignore[no-untyped-def]
            time.sleep(slow)
            return evaluate(self, dom, iterations)

        monkeypatch.setattr(relu_search.ReluSearch, "evaluate", slow_evaluate)
    refined = 0
    options = Options()
    backend = get_backend("highs", options)
    seen = {SolveStatus.FEASIBLE: 0, SolveStatus.INFEASIBLE: 0}
    for net, lb, ub, disjuncts, reference in random_cases:
        assert uses_relu_splitting(net)

        def replays(x: np.ndarray, net=net, disjuncts=disjuncts) -> bool:
            y = net.eval(x[None, :])
            return any(d.contains_input(x[None, :], 1e-9)[0] and d.slack(x[None, :], y)[0] <= 1e-9 for d in disjuncts)

        out = relu_split_search(
            net,
            disjuncts,
            lb,
            ub,
            backend,
            Budget.starting_now(30),
            options,
            replays,
            race_milp=race,
            refine=refine,
            refine_workers=workers,
            search_threads=threads,
        )
        refined += out.stats.refine_solves
        if reference is SolveStatus.FEASIBLE:
            assert out.status is SolveStatus.FEASIBLE
            assert replays(out.x)
        else:
            assert reference is SolveStatus.INFEASIBLE
            assert out.status is SolveStatus.INFEASIBLE
        seen[out.status] += 1
    assert seen[SolveStatus.FEASIBLE] >= 5 and seen[SolveStatus.INFEASIBLE] >= 5, seen
    if not refine:
        assert refined == 0
    if slow:
        assert refined > 0  # the refinement ran while the search was open


def test_search_alone_splits_and_reaches_exact_leaves() -> None:
    """Without the racing MILP, unsat answers come from the splits themselves (and LP leaves)."""
    rng = np.random.default_rng(5)
    options = Options()
    backend = get_backend("highs", options)
    split_somewhere = False
    for _ in range(30):
        net = random_net(rng, [6, 16, 16, 3])
        lb, ub, disjuncts = _query(rng, 6, 3)
        out = relu_split_search(
            net, disjuncts, lb, ub, backend, Budget.starting_now(30), options, lambda x: True, race_milp=False
        )
        split_somewhere |= out.stats.max_depth > 0
    assert split_somewhere


def test_a_spent_budget_is_a_timeout() -> None:
    rng = np.random.default_rng(1)
    net = random_net(rng, [6, 16, 16, 3])
    lb, ub, disjuncts = _query(rng, 6, 3)
    budget = Budget.starting_now(0.0)
    out = relu_split_search(net, disjuncts, lb, ub, get_backend("highs", Options()), budget, Options(), lambda x: True)
    assert out.status in (SolveStatus.TIMEOUT, SolveStatus.INFEASIBLE)


class _LyingBackend:
    """Claims every leaf feasible at the box's lower corner."""

    name = "liar"
    exact = False
    capabilities = Capabilities()

    def solve(self, problem, *, timeout_s: float):
        from nnverify.backends.base import BackendResult

        return BackendResult(SolveStatus.FEASIBLE, np.asarray(problem.lb, dtype=float).copy())


def test_unreplayable_leaf_solutions_are_never_sat() -> None:
    """On sat queries whose candidates all fail replay, the search runs down to exhausted domains, which go
    to the (lying) backend: the box ends undecided (UNKNOWN with a note), never FEASIBLE."""
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(12):  # 7 sat queries, each run down to its exact leaves (30 gave 20, on the same path)
        net = random_net(rng, [4, 6, 6, 2])
        lb, ub, disjuncts = _query(rng, 4, 2)
        reference = decide_box(
            net, lb, ub, disjuncts, get_backend("highs", Options()), Budget.starting_now(30), Options()
        )
        if reference.status is not SolveStatus.FEASIBLE:
            continue
        out = relu_split_search(
            net,
            disjuncts,
            lb,
            ub,
            _LyingBackend(),
            Budget.starting_now(30),
            Options(),
            lambda x: False,
            race_milp=False,
        )
        assert out.status is not SolveStatus.FEASIBLE
        if out.stats.leaves_exact:
            assert out.status is SolveStatus.UNKNOWN and "replay" in out.note
            checked += 1
    assert checked >= 1


def test_a_split_starts_from_its_parents_bound() -> None:
    """β seeding: for a neuron whose coefficient is positive, both children's first bound (before any
    optimisation) equals the parent's, so splitting never starts below the parent."""
    from nnverify.bounds.backward import LayerBounds
    from nnverify.bounds.interval import interval_bounds
    from nnverify.bounds.optimized import optimized_layer_bounds
    from nnverify.bounds.relu_pass import rows_lower

    rng = np.random.default_rng(8)
    net = random_net(rng, [5, 12, 12, 12, 2])
    lb, ub = rng.uniform(-1, 0, 5), rng.uniform(0, 1, 5)
    ib = interval_bounds(net, lb, ub)
    root = optimized_layer_bounds(net, LayerBounds(ib.lb, ib.ub), iterations=10, margin_rel=1e-9, margin_abs=1e-12)
    d = Disjunct(lb, ub, np.zeros((1, 5)), rng.normal(size=(1, 2)), np.array([5.0]))
    search = relu_search.ReluSearch(net, root, relu_domains.Rows.of([d]), [d], Options())
    dom = relu_search.root_domains(search)
    _, dom.duals, _, _ = search.evaluate(dom, 20)
    bounds = search.bounds_of(dom)
    args = (net.output, search.rows.a_y[[0]].copy(), search.rows.a_x[[0]], search.rows.b[[0]])
    parent, passed, _ = rows_lower(net, bounds, *args, dom.duals, dom.splits, 1e-9, 1e-12)
    tried = 0
    for r, s in search.relu.items():
        lam = passed.lam[r][0, 0]
        unstable = (root.lb[s][0] < 0) & (root.ub[s][0] > 0)
        for j in np.nonzero(unstable & (lam > 1e-3))[0][:3]:
            for active in (True, False):
                child = dom.take(np.array([0]))
                relu_domains.split(child, 0, s, int(j), active, search.relu_of[s])
                low, _, _ = rows_lower(net, search.bounds_of(child), *args, child.duals, child.splits, 1e-9, 1e-12)
                assert low[0, 0] == pytest.approx(parent[0, 0], abs=1e-6)
                tried += 1
    assert tried >= 4


def test_when_no_split_lifts_the_worse_child_the_earliest_layer_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Filtered smart branching ties when no candidate's worse child beats the parent's bound: the choice is
    then the earliest layer's candidate, not the last layer's (whose better child wins the tie-break)."""
    from nnverify.bounds.backward import LayerBounds
    from nnverify.bounds.interval import interval_bounds
    from nnverify.bounds.optimized import optimized_layer_bounds

    rng = np.random.default_rng(3)
    net = random_net(rng, [5, 12, 12, 12, 2])
    lb, ub = rng.uniform(-1, 0, 5), rng.uniform(0, 1, 5)
    ib = interval_bounds(net, lb, ub)
    root = optimized_layer_bounds(net, LayerBounds(ib.lb, ib.ub), iterations=10, margin_rel=1e-9, margin_abs=1e-12)
    d = Disjunct(lb, ub, np.zeros((1, 5)), rng.normal(size=(1, 2)), np.array([50.0]))
    search = relu_search.ReluSearch(net, root, relu_domains.Rows.of([d]), [d], Options())

    def domain(known: float) -> relu_domains.Domains:
        dom = relu_search.root_domains(search)
        dom.known[:] = known
        return dom

    best, duals, choice, _ = search.evaluate(domain(-np.inf), 5)
    assert best[0] <= 0.0 and choice[0, 0] >= 0
    layers = [s for s in search.pre if np.any((root.lb[s] < 0) & (root.ub[s] > 0))]
    assert len(layers) >= 2
    stuck = domain(-1.0)
    stuck.duals = duals
    bounds = search.bounds_of(stuck)
    lam = {r: -np.ones((1, 1, root.lb[s].shape[1])) for r, s in search.relu.items()}
    cands = relu_branching.candidates(
        search.graph, bounds, lam, np.zeros(1, dtype=np.int64), stuck.splits, np.array([0])
    )
    k = cands.shape[1]
    assert len({int(c) for c in cands[0, :, 0] if c >= 0}) >= 2

    def crafted(*_args, **_kwargs):
        # candidate c: the worse child stays below the parent (-1), the better one rises with c (later
        # layers come later in the candidate list)
        return np.array([[[[-2.0], [float(c)]] for c in range(k)]])

    monkeypatch.setattr(relu_branching, "split_lower", crafted)
    assert (
        relu_branching.choose(
            search.graph, search.bounds_of(stuck), search.rows.take(stuck.disjunct), stuck, cands, None, search.margins
        )[0, 0]
        == cands[0, 0, 0]
        == layers[0]
    )


def test_stopping_the_race_waits_for_the_refinement_solves(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process must not exit while HiGHS runs in one of its threads (it aborts, SIGABRT): ``stop()`` returns
    only once the racing thread has ended, refinement solves in flight included. Each solve here is made to
    last as long as one may (``REFINE_SOLVE_S``) and proves nothing."""
    from nnverify.bounds import refine
    from nnverify.bounds.backward import LayerBounds, crown_bounds
    from nnverify.bounds.interval import interval_bounds

    solve_side = refine._solve_side

    def slow_solve(*args, **kwargs):  # type: ignore[no-untyped-def]
        solve_side(*args, **kwargs)
        time.sleep(relu_race.REFINE_SOLVE_S)
        return None

    monkeypatch.setattr(refine, "_solve_side", slow_solve)
    rng = np.random.default_rng(3)
    net = random_net(rng, [6, 16, 16, 16, 3])
    lb, ub, disjuncts = _query(rng, 6, 3)
    ib = interval_bounds(net, lb, ub)
    root = crown_bounds(net, ib.lb, ib.ub)
    options = Options()
    margins = {"margin_rel": options.bound_margin_rel, "margin_abs": options.bound_margin_abs}
    backend = get_backend("highs", options)
    race = relu_race.RacingMilp(
        net, LayerBounds(root.lb, root.ub), disjuncts, backend, Budget.starting_now(60), True, margins, 2
    )
    time.sleep(0.3 * relu_race.REFINE_SOLVE_S)  # both workers are inside a solve
    assert race.thread.is_alive()
    race.stop()
    assert not race.thread.is_alive()


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_domains_recomputed_bounds_hold_on_its_region_and_tighten(seed: int) -> None:
    """After splits, ``tighten`` recomputes the later layers' bounds of each domain: every sampled input
    that satisfies the domain's split signs has every pre-activation inside the new bounds, the new bounds
    lie inside the clamped parent's, and across the domains some bound is strictly tighter."""

    search, root, rng = _small_search(seed)
    net, lb, ub = search.graph, search.disjuncts[0].lb, search.disjuncts[0].ub
    n_dom = 6
    dom = relu_search.root_domains(search).take(np.zeros(n_dom, dtype=np.int64))
    first = search.pre[0]
    unstable = np.nonzero((root.lb[first][0] < 0) & (root.ub[first][0] > 0))[0]
    assert unstable.size >= 2
    anchors = net.eval_all(rng.uniform(lb, ub, size=(n_dom, 4)))[first]  # each region holds its anchor
    for i in range(n_dom):
        for j in rng.choice(unstable, size=2, replace=False):
            relu_domains.split(dom, i, first, int(j), bool(anchors[i, j] >= 0), search.relu_of[first])
    before = ({k: v.copy() for k, v in dom.lb.items()}, {k: v.copy() for k, v in dom.ub.items()})
    search.tighten(dom)
    assert np.all(dom.since == relu_domains.CLEAN)
    tighter = 0
    for k in search.pre:
        assert np.all(dom.lb[k] >= before[0][k]) and np.all(dom.ub[k] <= before[1][k])
        tighter += int(np.sum(dom.lb[k] > before[0][k] + 1e-9) + np.sum(dom.ub[k] < before[1][k] - 1e-9))
    assert tighter > 0
    x = rng.uniform(lb, ub, size=(20000, 4))
    values = net.eval_all(x)
    for i in range(n_dom):
        inside = np.ones(x.shape[0], dtype=bool)
        for s, sign in dom.splits.items():
            for j in np.nonzero(sign[i])[0]:
                inside &= values[s][:, j] >= 0 if sign[i, j] > 0 else values[s][:, j] <= 0
        assert inside.sum() > 0
        for k in search.pre:
            z = values[k][inside]
            assert np.all(z >= dom.lb[k][i]) and np.all(z <= dom.ub[k][i])


def _small_search(seed: int):  # type: ignore[no-untyped-def]
    from nnverify.bounds.backward import LayerBounds
    from nnverify.bounds.interval import interval_bounds
    from nnverify.bounds.optimized import optimized_layer_bounds

    rng = np.random.default_rng(seed)
    net = random_net(rng, [4, 16, 16, 16, 2])
    lb, ub = rng.uniform(-1, 0, 4), rng.uniform(0, 1, 4)
    ib = interval_bounds(net, lb, ub)
    slopes: dict = {}
    root = optimized_layer_bounds(
        net, LayerBounds(ib.lb, ib.ub), iterations=5, margin_rel=1e-9, margin_abs=1e-12, slopes=slopes
    )
    assert slopes  # the recomputation reuses the root's α-CROWN slopes
    d = Disjunct(lb, ub, np.zeros((1, 4)), rng.normal(size=(1, 2)), np.array([5.0]))
    return relu_search.ReluSearch(net, root, relu_domains.Rows.of([d]), [d], Options(), slopes), root, rng


def test_refined_root_bounds_are_intersected_into_the_open_domains() -> None:
    """``absorb`` keeps the tree: every domain's bounds become the intersection with the refined root's, split
    clamps stay, and the layers after the first are marked for recomputation."""
    from nnverify.bounds.backward import LayerBounds

    search, root, _ = _small_search(5)
    dom = relu_search.root_domains(search).take(np.zeros(3, dtype=np.int64))
    first = search.pre[0]
    j = int(np.nonzero((root.lb[first][0] < 0) & (root.ub[first][0] > 0))[0][0])
    relu_domains.split(dom, 0, first, j, True, search.relu_of[first])
    relu_domains.split(dom, 1, first, j, False, search.relu_of[first])
    search.tighten(dom)
    old = ({s: v.copy() for s, v in dom.lb.items()}, {s: v.copy() for s, v in dom.ub.items()})
    mid = [(lo + hi) / 2 for lo, hi in zip(root.lb, root.ub, strict=True)]
    refined = LayerBounds(
        [np.minimum(lo + 0.1 * (m - lo), m) for lo, m in zip(root.lb, mid, strict=True)],
        [np.maximum(hi - 0.1 * (hi - m), m) for hi, m in zip(root.ub, mid, strict=True)],
    )
    search.absorb(refined, search.slopes, [dom])
    assert search.root is refined
    for s in search.pre:
        np.testing.assert_array_equal(dom.lb[s], np.maximum(old[0][s], refined.lb[s]))
        np.testing.assert_array_equal(dom.ub[s], np.minimum(old[1][s], refined.ub[s]))
    assert dom.lb[first][0, j] >= 0.0 and dom.ub[first][1, j] <= 0.0
    assert np.all(dom.since == first)


def test_a_domain_whose_bounds_cross_is_proven_empty() -> None:
    """A split the refined bounds contradict (active on a neuron proven negative) leaves an empty region:
    the domain is closed (bound +inf, nothing to branch on); its sibling stays open."""
    from nnverify.bounds.backward import LayerBounds

    search, root, _ = _small_search(6)
    first = search.pre[0]
    dom = relu_search.root_domains(search).take(np.zeros(2, dtype=np.int64))
    _, dom.duals, _, _ = search.evaluate(dom, 5)
    j = int(np.nonzero((root.lb[first][0] < 0) & (root.ub[first][0] > 0))[0][0])
    relu_domains.split(dom, 0, first, j, True, search.relu_of[first])
    relu_domains.split(dom, 1, first, j, False, search.relu_of[first])
    ub = [v.copy() for v in root.ub]
    ub[first][0, j] = -0.01
    search.absorb(LayerBounds([v.copy() for v in root.lb], ub), search.slopes, [dom])
    best, _, choice, _ = search.evaluate(dom, 5)
    assert best[0] == np.inf and choice[0, 0] == -1
    assert np.isfinite(best[1])


def test_absorb_takes_the_slopes_optimised_for_the_refined_bounds() -> None:
    """The slopes re-optimised with the refined bounds replace the root's (they were once dropped, and the
    domains kept recomputing their bounds with slopes chosen for the looser ones)."""
    from nnverify.bounds.backward import LayerBounds
    from nnverify.bounds.optimized import Slopes

    search, root, _ = _small_search(7)
    dom = relu_search.root_domains(search)
    fresh = {k: Slopes(v.idx, {r: a * 0.5 for r, a in v.alpha.items()}, v.default) for k, v in search.slopes.items()}
    search.absorb(LayerBounds([v.copy() for v in root.lb], [v.copy() for v in root.ub]), fresh, [dom])
    assert search.slopes is fresh and search.generation == 1


def test_a_batch_bounded_while_refined_bounds_arrive_catches_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refined bounds absorbed while a search thread bounds a batch reach that batch's open children when
    they are pushed: they get the intersection and are marked for recomputation."""
    import threading

    from nnverify.bounds.backward import LayerBounds

    search, root, _ = _small_search(5)
    backend = get_backend("highs", Options())
    first = search.pre[0]
    j = int(np.nonzero((root.lb[first][0] < 0) & (root.ub[first][0] > 0))[0][0])
    dom = relu_search.root_domains(search)
    _, dom.duals, _, _ = search.evaluate(dom, 5)
    choice = np.array([[first, j]])
    frontier = relu_frontier._Frontier([(dom, choice)], threading.Condition())
    mid = [(lo + hi) / 2 for lo, hi in zip(root.lb, root.ub, strict=True)]
    refined = LayerBounds(
        [np.minimum(lo + 0.2 * (m - lo), m) for lo, m in zip(root.lb, mid, strict=True)],
        [np.maximum(hi - 0.2 * (hi - m), m) for hi, m in zip(root.ub, mid, strict=True)],
    )
    evaluate = relu_search.ReluSearch.evaluate

    def evaluate_then_stop(self, dom, iterations):  # type: ignore[no-untyped-def]
        out = evaluate(self, dom, iterations)
        with frontier.cond:
            search.absorb(refined, search.slopes, list(d for d, _ in frontier.stack))  # arrives meanwhile
            frontier.stopped = True  # one batch only
        lower = np.full(len(dom), -1.0)  # keep every child open, so it is pushed
        return lower, out[1], np.tile(np.array([[first, j]]), (len(dom), 1)), out[3]

    monkeypatch.setattr(relu_search.ReluSearch, "evaluate", evaluate_then_stop)
    relu_frontier._worker(
        search, frontier, backend, Budget.starting_now(30), lambda x: False, SearchStats(), threading.Lock()
    )
    assert frontier.stack, "the open children were pushed"
    for pushed, _ in frontier.stack:
        assert np.all(pushed.since == first)
        for s in search.pre:
            assert np.all(pushed.lb[s] >= refined.lb[s]) and np.all(pushed.ub[s] <= refined.ub[s])


def test_wide_networks_skip_the_symbolic_pass_and_the_race_and_still_agree_with_the_milp(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the width threshold at 0 every net counts as a CIFAR-sized one: the root starts CROWN from interval
    bounds, no MILP races (one would raise here), and the verdicts still match the exact MILP."""
    from nnverify.search import exact

    monkeypatch.setattr(relu_bab, "SYMBOLIC_MAX_MULADDS", 0)

    def no_symbolic(*args: object, **kwargs: object) -> None:
        raise AssertionError("the wide root must not run the forward symbolic pass")

    def no_race(*args: object, **kwargs: object) -> None:
        raise AssertionError("no MILP races on a wide network")

    rng = np.random.default_rng(11)
    options = Options()
    backend = get_backend("highs", options)
    references = []
    for _ in range(15):
        net = random_net(rng, [6, 16, 16, 3])
        lb, ub, disjuncts = _query(rng, 6, 3)
        references.append(
            (net, lb, ub, disjuncts, decide_box(net, lb, ub, disjuncts, backend, Budget.starting_now(30), options))
        )
    monkeypatch.setattr(exact, "symbolic_bounds", no_symbolic)
    monkeypatch.setattr(relu_bab, "RacingMilp", no_race)
    seen = set()
    for net, lb, ub, disjuncts, reference in references:

        def replays(x: np.ndarray, net=net, disjuncts=disjuncts) -> bool:
            y = net.eval(x[None, :])
            return any(d.contains_input(x[None, :], 1e-9)[0] and d.slack(x[None, :], y)[0] <= 1e-9 for d in disjuncts)

        out = relu_split_search(
            net, disjuncts, lb, ub, backend, Budget.starting_now(30), options, replays, refine=True, refine_workers=2
        )
        assert out.status is reference.status
        seen.add(out.status)
    assert seen == {SolveStatus.FEASIBLE, SolveStatus.INFEASIBLE}
