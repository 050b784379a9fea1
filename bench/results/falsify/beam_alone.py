"""The bound-guided beam (``nnverify/attack_beam.py``) alone, in one process, on every ACAS Xu ``sat`` instance,
beside the attack's cheap stages (sampling, refinement, PGD); then 12 seeds on the four prop_2 slivers.

Scoring script (reads ``expected.csv``). CPU seconds (``time.process_time``), not wall time: the machine is shared.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/results/falsify/beam_alone.py > bench/results/falsify/beam_alone.txt
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from nnverify import attack
from nnverify.attack_beam import BeamConfig, beam_attack, beam_candidates, layer_bound_fn
from nnverify.budget import Budget
from nnverify.graph.layers import LayerGraph
from nnverify.graph.onnx_import import load_network
from nnverify.graph.passes import to_layers
from nnverify.graph.tail import strip_softmax
from nnverify.options import BOUND_MARGIN_ABS, BOUND_MARGIN_REL
from nnverify.spec.property import Disjunct
from nnverify.spec.vnnlib import load_property

ROOT = Path(__file__).resolve().parents[4] / "shared" / "benchmarks" / "acasxu"
MARGINS = (BOUND_MARGIN_REL, BOUND_MARGIN_ABS)


def load(onnx: str, vnnlib: str) -> tuple[LayerGraph, list[Disjunct]]:
    graph = load_network(ROOT / onnx)
    prop = load_property(ROOT / vnnlib, graph.n_inputs, graph.n_outputs)
    analysis, _ = strip_softmax(graph, prop)
    return to_layers(analysis, merge=False), list(prop.disjuncts)


def main() -> int:
    with open(ROOT / "expected.csv", newline="") as handle:
        sat = [(r["onnx"], r["vnnlib"]) for r in csv.DictReader(handle) if r["expected"] == "sat"]
    found_beam = found_cheap = 0
    total = 0.0
    for onnx, vnnlib in sat:
        layers, disjuncts = load(onnx, vnnlib)
        ranked = attack.ranked_samples(layers, disjuncts, samples=2000, seed=0, keep=attack.REFINE_STARTS)
        cheap = bool(
            attack.violating(ranked)
            or attack.refine_samples(layers, disjuncts, ranked)
            or attack.pgd_candidates(layers, disjuncts, seed=0)
        )
        stats: dict[str, float | int | str] = {}
        started = time.process_time()
        found = beam_attack(
            layers, disjuncts, max_free=16, margins=MARGINS, seed=0, budget=Budget.unlimited(), stats=stats
        )
        cpu = time.process_time() - started
        total += cpu
        found_beam += bool(found)
        found_cheap += cheap
        print(
            f"{onnx} {vnnlib}: cheap stages {cheap}, beam {bool(found)}"
            f" at level {stats.get('beam_levels')}, {cpu:.2f} s"
        )
    print(
        f"beam alone: {found_beam}/{len(sat)} in {total:.1f} s CPU;"
        f" sampling + refinement + PGD: {found_cheap}/{len(sat)}"
    )
    for net in ("1_3", "1_5", "5_3", "1_6"):
        layers, disjuncts = load(f"onnx/ACASXU_run2a_{net}_batch_2000.onnx", "vnnlib/prop_2.vnnlib")
        bound = layer_bound_fn(layers, disjuncts, *MARGINS)
        levels, cpus = [], []
        for seed in range(12):
            stats = {}
            started = time.process_time()
            if beam_candidates(layers, disjuncts, bound, config=BeamConfig(levels=40), seed=seed, stats=stats):
                levels.append(int(stats["beam_levels"]))
            cpus.append(time.process_time() - started)
        cpus.sort()
        print(
            f"{net} prop_2, 12 seeds: found {len(levels)}, levels {sorted(levels)},"
            f" CPU median {cpus[6]:.2f} max {cpus[-1]:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
