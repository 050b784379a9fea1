"""Per-instance table and totals of the runs in this folder: activation splitting (``results.csv``; without
filtered smart branching: ``results_act_ed3716f.csv``) against input splitting (``results_input_split.csv``).
Usage: ``.venv/bin/python bench/results/smooth_digits/compare.py``."""

from __future__ import annotations

import csv
from pathlib import Path

HERE = Path(__file__).parent
RUNS = (
    ("activation splitting", "results.csv"),
    ("act. splitting, no FSB (ed3716f)", "results_act_ed3716f.csv"),
    ("input splitting", "results_input_split.csv"),
)
DECIDED = ("sat", "unsat")


def load(name: str) -> dict[str, dict[str, str]]:
    with (HERE / name).open(newline="") as f:
        return {row["vnnlib"]: row for row in csv.DictReader(f)}


def main() -> None:
    runs = [(label, load(name)) for label, name in RUNS]
    print("| instance | " + " | ".join(label for label, _ in runs) + " |")
    print("|---" * (len(runs) + 1) + "|")
    for key in runs[0][1]:
        cells = []
        for _, rows in runs:
            row = rows.get(key)
            cells.append("—" if row is None else f"{row['result']} {float(row['run_time']):.1f} s")
        print(f"| {Path(key).stem.removeprefix('digits_')} | " + " | ".join(cells) + " |")
    print()
    for label, rows in runs:
        decided = [r for r in rows.values() if r["result"] in DECIDED]
        counts = {v: sum(1 for r in rows.values() if r["result"] == v) for v in ("sat", "unsat", "timeout", "unknown")}
        total = sum(float(r["run_time"]) for r in decided)
        peak = max(float(r["peak_mem_mb"]) for r in rows.values())
        print(f"{label}: {len(decided)}/{len(rows)} decided {counts}, {total:.1f} s on decided, peak {peak:.0f} MB")
    both = [k for k in runs[0][1] if all(rows.get(k, {}).get("result") in DECIDED for _, rows in runs)]
    for label, rows in runs:
        print(f"{label} on the {len(both)} all decide: {sum(float(rows[k]['run_time']) for k in both):.1f} s")
    verdicts = [{rows[k]["result"] for _, rows in runs if rows.get(k, {}).get("result") in DECIDED} for k in runs[0][1]]
    print(f"contradicting verdicts: {sum(1 for v in verdicts if v == set(DECIDED))}")


if __name__ == "__main__":
    main()
