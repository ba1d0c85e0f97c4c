"""Rank or calibration? Measure both ways of making members' scores comparable on stored cells.

For each scaling, the ensemble of ``--members`` is built from the cells of ``--results`` into a
scratch copy of the folder (the folder itself is not touched), and its test micro / macro F1
(mean over seeds) under ``own`` and ``per_tag`` is printed per slice beside the best member's,
with the gain in macro F1 over the best member (by mean macro F1, under the same rule)::

    python benchmarks/ensemble_scaling.py --results results --members nb,nb_aug,knn_embed

Only stored arrays are read: no model runs.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from harness.ensembles import SCALINGS, parse_ensemble, refresh_ensembles
from harness.report import cells_under_rule, leaderboard, slice_order
from harness.results import load_results

RULES = ("own", "per_tag")


def measure(results: Path, members: str, scaling: str) -> tuple[pd.DataFrame, float]:
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / "results"
        shutil.copytree(results / "cells", copy / "cells")
        tick = time.perf_counter()
        cells = refresh_ensembles(copy, load_results(copy), [parse_ensemble(f"m={members}", scaling)], print).cells
        seconds = time.perf_counter() - tick
        tables = []
        for rule in RULES:
            table = leaderboard([cell.shown for cell in cells_under_rule(cells, rule)])
            tables.append(table.assign(report_rule=rule))
    return pd.concat(tables, ignore_index=True), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--members", required=True, help="comma-separated method labels, e.g. nb,nb_aug,knn_embed")
    args = parser.parse_args()
    members = [m.strip() for m in args.members.split(",")]
    for scaling in SCALINGS:
        table, seconds = measure(args.results, args.members, scaling)
        print(f"\nscaling={scaling} (ensemble cells built in {seconds:.1f} s)")
        for rule in RULES:
            rows = table[table["report_rule"] == rule]
            print(f"  rule {rule}: slice | ensemble micro / macro | best member (by macro) micro / macro | macro gain")
            for slice_name in sorted(rows["slice"].unique(), key=slice_order):
                column = rows[rows["slice"] == slice_name]
                ensemble = column[column["method"] == "ensemble-m"]
                member_rows = column[column["method"].isin(members)]
                if ensemble.empty or member_rows.empty:
                    continue
                best = member_rows.sort_values("macro_f1_mean", ascending=False).iloc[0]
                e = ensemble.iloc[0]
                print(f"  {slice_name:>5} | {e['micro_f1_mean']:.3f} / {e['macro_f1_mean']:.3f} | "
                      f"{best['method']} {best['micro_f1_mean']:.3f} / {best['macro_f1_mean']:.3f} | "
                      f"{e['macro_f1_mean'] - best['macro_f1_mean']:+.3f}")


if __name__ == "__main__":
    main()
