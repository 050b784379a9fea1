"""Binary networks: the sampling trainer, the ONNX export of one network and of the vote, and the vote's
verdicts against brute force on a tiny instance."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nnverify.backends import get_backend
from nnverify.binary.figures import ascii_pair, witness_figure
from nnverify.binary.model import BinaryNet, Step, random_net
from nnverify.binary.onnx_export import VoteRule, net_to_onnx, run_onnx, save, vote_to_onnx
from nnverify.binary.radius import radii
from nnverify.binary.train import TrainConfig, hinge_loss, load_binary_digits, train
from nnverify.binary.vote import VoteQuery, ball_rows, decide, holds, query_text
from nnverify.options import Options
from nnverify.result import Verdict
from nnverify.spec.discrete import parse_discrete


@pytest.fixture(scope="module")
def digits():
    return load_binary_digits((5, 6, 7, 8, 9), seed=0)


def test_digits_are_binary_and_split(digits) -> None:
    assert set(np.unique(digits.x_train)) <= {0, 1} and digits.x_train.shape[1] == 64
    assert len(digits.x_test) == 449 and len(digits.x_train) == 1797 - 449
    assert 0.3 < digits.y_test.mean() < 0.7


@pytest.mark.parametrize("step", list(Step), ids=[s.value for s in Step])
def test_greedy_sampling_lowers_the_loss(digits, step: Step) -> None:
    config = TrainConfig(hidden=(8,), step=step, iterations=300, seed=5)
    result = train(digits, config)
    assert result.final_loss < result.initial_loss
    assert result.final_loss == pytest.approx(hinge_loss(result.net, digits.x_train, digits.y_train, config.margin))
    assert result.accepted > 0 and result.worse_accepted == 0
    assert result.train_accuracy > 0.6


def test_metropolis_hastings_keeps_some_worse_flips(digits) -> None:
    result = train(digits, TrainConfig(hidden=(8,), iterations=300, temperature=0.005, seed=5))
    assert result.worse_accepted > 0
    assert result.final_loss < result.initial_loss


def test_training_is_seeded(digits) -> None:
    config = TrainConfig(hidden=(4,), iterations=50, seed=9)
    a, b = train(digits, config).net, train(digits, config).net
    assert np.array_equal(a.flat(), b.flat())


def _nets(n_inputs: int, hidden: tuple[int, ...], seed: int) -> tuple[BinaryNet, BinaryNet, BinaryNet]:
    rng = np.random.default_rng(seed)
    steps = (Step.BINARY01, Step.BINARY11, Step.BINARY01)
    a, b, c = (random_net((n_inputs, *hidden, 1), step, rng) for step in steps)
    return a, b, c


@pytest.mark.parametrize("step", list(Step), ids=[s.value for s in Step])
def test_exported_net_equals_numpy(tmp_path, step: Step) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 2, (200, 20))
    for k in range(4):
        net = random_net((20, 6, 5, 1), step, rng)
        save(net_to_onnx(net), tmp_path / "n.onnx")
        y = run_onnx(tmp_path / "n.onnx", x)[:, 0]
        assert np.array_equal(y, net.predict(x)), k


@pytest.mark.parametrize("rule", list(VoteRule), ids=[r.value for r in VoteRule])
def test_exported_vote_equals_numpy(tmp_path, rule: VoteRule) -> None:
    nets = _nets(12, (5, 3), seed=4)
    x = np.array(list(itertools.product((0, 1), repeat=12)))[::7]
    save(vote_to_onnx(nets, rule), tmp_path / "v.onnx")
    y = run_onnx(tmp_path / "v.onnx", x)
    ys = [net.predict(x) for net in nets]
    assert np.array_equal(y[:, :3], np.stack(ys, axis=1))
    assert np.array_equal(y[:, 3], rule.apply(*ys))


def test_vote_rules() -> None:
    y = np.array(list(itertools.product((0, 1), repeat=3)))
    y1, y2, y3 = y.T
    assert np.array_equal(VoteRule.MAJORITY.apply(y1, y2, y3), (y.sum(axis=1) >= 2).astype(int))
    assert np.array_equal(VoteRule.ISSUE.apply(y1, y2, y3), y1 | (y2 & y3))


def test_ball_row_is_the_hamming_distance() -> None:
    image = np.array([1, 0, 1, 1, 0])
    (row,) = ball_rows(image, 2)
    for x in itertools.product((0, 1), repeat=5):
        total = sum(coef * x[int(name[2:])] for name, coef in row.terms)
        assert (total <= row.hi) == (np.sum(np.array(x) != image) <= 2)
    assert ball_rows(image, 5) == []


@pytest.mark.parametrize("backend_name", ["cpsat", "clpq"])
@pytest.mark.parametrize("rule", list(VoteRule), ids=[r.value for r in VoteRule])
def test_vote_verdicts_agree_with_brute_force(tmp_path, request, rule: VoteRule, backend_name: str) -> None:
    if backend_name == "clpq":
        request.getfixturevalue("clpq_ready")
    nets = _nets(8, (4,), seed=11)
    paths = []
    for k, net in enumerate(nets, start=1):
        paths.append(tmp_path / f"net{k}.onnx")
        save(net_to_onnx(net), paths[-1])
    model = tmp_path / "vote.onnx"
    save(vote_to_onnx(nets, rule), model)
    every = np.array(list(itertools.product((0, 1), repeat=8)))
    ys = [net.predict(every) for net in nets]
    outputs = np.stack([*ys, rule.apply(*ys)], axis=1)
    backend = get_backend(backend_name, Options(seed=0))
    verdicts = set()
    images, radii = ((0, 77, 200), (1, 3, 8)) if backend_name == "cpsat" else ((0, 200), (1, 3))
    for image_index, radius, kind, target in itertools.product(images, radii, VoteQuery, (0, 1)):
        image = every[image_index]
        query = tmp_path / "q.vnnlib"
        query.write_text(query_text(kind, image, radius, target))
        assert parse_discrete(query.read_text()).n_inputs == 8
        inside = np.sum(every != image, axis=1) <= radius
        truth = any(holds(kind, tuple(int(v) for v in row), target) for row in outputs[inside])
        answer = decide(model, tuple(paths), rule, (kind, image, radius, target), query, backend, 30.0)
        assert answer.verdict is (Verdict.SAT if truth else Verdict.UNSAT), (image_index, radius, kind, target)
        if answer.x is not None:
            assert np.sum(answer.x != image) <= radius and holds(kind, answer.replayed, target)
        verdicts.add(answer.verdict)
    assert verdicts == {Verdict.SAT, Verdict.UNSAT}


def test_witness_pictures(tmp_path) -> None:
    image = np.zeros(64, dtype=np.int64)
    image[:3] = 1
    witness = image.copy()
    witness[0], witness[10] = 0, 1
    text = ascii_pair(image, witness)
    assert text.splitlines()[0] == "###.....   -##....." and text.splitlines()[1].endswith("..+.....")
    witness_figure([("a", image, witness)] * 9, tmp_path / "w.png")
    assert (tmp_path / "w.png").read_bytes()[:4] == b"\x89PNG"


def test_a_witness_that_fails_replay_on_the_networks_is_unknown(tmp_path, monkeypatch) -> None:
    nets = _nets(8, (4,), seed=11)
    paths = []
    for k, net in enumerate(nets, start=1):
        paths.append(tmp_path / f"net{k}.onnx")
        save(net_to_onnx(net), paths[-1])
    model = tmp_path / "vote.onnx"
    save(vote_to_onnx(nets, VoteRule.MAJORITY), model)
    image = np.zeros(8, dtype=np.int64)
    query = tmp_path / "q.vnnlib"
    target = int(VoteRule.MAJORITY.apply(*(net.predict(image[None, :]) for net in nets))[0])
    question = (VoteQuery.ROBUST, image, 8, target)
    query.write_text(query_text(*question))
    backend = get_backend("cpsat", Options(seed=0))
    answer = decide(model, tuple(paths), VoteRule.MAJORITY, question, query, backend, 30.0)
    assert answer.verdict is Verdict.SAT  # over all 256 inputs the vote takes both values
    flipped = np.array([[1 - v for v in row] for row in [[answer.replayed[0]]]], dtype=np.float64)
    monkeypatch.setattr("nnverify.binary.vote.run_onnx", lambda path, x: flipped)
    answer = decide(model, tuple(paths), VoteRule.MAJORITY, question, query, backend, 30.0)
    assert answer.verdict is Verdict.UNKNOWN and answer.x is None and "replay failed" in answer.note


def test_rebuild_entry_point_errors_are_one_line(tmp_path, capsys) -> None:
    from nnverify.binary.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--no-train", "--out", str(tmp_path / "none"), "--results", str(tmp_path / "r")])
    assert exit_info.value.code == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and "net1.onnx: no such file" in err and "\n" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["--images", "0"])
    assert exit_info.value.code == 2


def test_min_flips_equal_brute_force(tmp_path) -> None:
    nets = _nets(8, (4,), seed=11)
    model = tmp_path / "vote.onnx"
    save(vote_to_onnx(nets, VoteRule.MAJORITY), model)
    every = np.array(list(itertools.product((0, 1), repeat=8)))
    ys = [net.predict(every) for net in nets]
    outputs = np.stack([*ys, VoteRule.MAJORITY.apply(*ys)], axis=1)
    backend = get_backend("cpsat", Options(seed=0))
    found = []
    for r in radii(model, every[[3, 100, 250]], 8, backend, tmp_path):
        image = every[[3, 100, 250][r.image]]
        changed = outputs[:, r.column] != outputs[(every == image).all(axis=1)][0, r.column]
        distances = np.sum(every != image, axis=1)[changed]
        assert r.flips == (int(distances.min()) if distances.size else None), r
        found.append(r.flips)
    assert any(f is not None and f > 1 for f in found)
