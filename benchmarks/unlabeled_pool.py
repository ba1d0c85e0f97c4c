"""self_train with ``--unlabeled rest_of_train`` on a dataset that has no unlabeled rows.

Writes, under ``--work``, a copy of the mirror holding only the issues that carry one of the 11
tags (``github-issues-datasets-labeled``: the same 818 / 410 / 413 train / valid / test issues and
no unlabeled row) with its dataset config, runs::

    harness run --methods knn_embed,self_train ...                       # the dataset's pool: empty
    harness run --methods self_train --unlabeled rest_of_train ...       # -> self_train@pool-rest_of_train

and prints, per slice and rule, the base's F1 and each self_train's gain over it (mean over seeds
of the per-seed difference), with the pool size, the pseudo-labelled texts of round 1, those
kept (in the best round) and the best round per seed::

    python benchmarks/unlabeled_pool.py --data-dir ../shared/data --work /tmp/pool

knn_embed's MiniLM embeddings come from the shared cache (computed once, then reused).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from harness.config import BUILTIN_CFG_DIR
from harness.report import cells_under_rule
from harness.results import load_results

SOURCE = "github-issues-datasets"
DATASET = f"{SOURCE}-labeled"
POOLED = "self_train@pool-rest_of_train"


def write_labeled_copy(data_dir: Path, work: Path) -> tuple[Path, Path]:
    """The mirror without its rows that carry none of the tags, and its config; (cfg dir, data dir)."""
    config = yaml.safe_load((BUILTIN_CFG_DIR / f"{SOURCE}.yaml").read_text(encoding="utf-8"))
    tags = set(config["labels"]["map"])
    cfg_dir, out_dir = work / "datasets_cfg", work / "data"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{DATASET}.jsonl.gz"
    with gzip.open(data_dir / config["source"]["file"], "rt", encoding="utf-8") as src, \
            gzip.open(out, "wt", encoding="utf-8") as dst:
        for line in src:
            names = {label["name"] if isinstance(label, dict) else label for label in json.loads(line).get("labels") or []}
            if names & tags:
                dst.write(line)
    config.update(name=DATASET, description=f"{SOURCE} without the rows that carry none of its tags",
                  source={"file": out.name, "sha256": hashlib.sha256(out.read_bytes()).hexdigest()})
    (cfg_dir / f"{DATASET}.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return cfg_dir, out_dir


def run(args: list[str]) -> None:
    print("$ harness", " ".join(args), flush=True)
    subprocess.run([sys.executable, "-c", "from harness.cli import main; main()", *args], check=True,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})


def report(results: Path, slices: list[str], seeds: list[int]) -> None:
    for rule in ("own", "per_tag"):
        shown = [cell.shown for cell in cells_under_rule(load_results(results), rule)]
        cells = {(r.method.label, r.slice.name, r.seed): r for r in shown if r.ok}
        print(f"\nrule {rule}: slice | knn_embed micro / macro | gain of self_train (empty pool) | gain of {POOLED}")
        for slice_name in slices:
            base = [cells[("knn_embed", slice_name, seed)] for seed in seeds]

            def gain(label: str) -> str:
                runs = [cells[(label, slice_name, seed)] for seed in seeds]
                micro = np.mean([r.metrics.micro_f1 - b.metrics.micro_f1 for r, b in zip(runs, base)])
                macro = np.mean([r.metrics.macro_f1 - b.metrics.macro_f1 for r, b in zip(runs, base)])
                return f"{micro:+.3f} / {macro:+.3f}"

            print(f"  {slice_name:>4} | {np.mean([b.metrics.micro_f1 for b in base]):.3f} / "
                  f"{np.mean([b.metrics.macro_f1 for b in base]):.3f} | {gain('self_train')} | {gain(POOLED)}")
            if rule == "own":
                runs = [cells[(POOLED, slice_name, seed)] for seed in seeds]
                rounds = [r.details["rounds"] for r in runs]
                print(f"       pool {[r.details['pool_texts'] for r in runs]}, round-1 pseudo-labels "
                      f"{[x[1]['pseudo_labelled_texts'] if len(x) > 1 else 0 for x in rounds]}, kept "
                      f"{[r.details['pseudo_labels_used'] for r in runs]}, best round {[r.details['best_round'] for r in runs]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, required=True, help="folder for the copy, its config and the results")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--slices", default="8,16,32,64")
    args = parser.parse_args()
    cfg_dir, data_dir = write_labeled_copy(args.data_dir, args.work)
    common = ["--datasets", DATASET, "--datasets-cfg", str(cfg_dir), "--data-dir", str(data_dir),
              "--results", str(args.work / "results"), "--seeds", args.seeds, "--slices", args.slices, "--no-report", "--quiet"]
    run(["run", "--methods", "knn_embed,self_train", *common])
    run(["run", "--methods", "self_train", "--unlabeled", "rest_of_train", *common])
    report(args.work / "results", args.slices.split(","), [int(s) for s in args.seeds.split(",")])


if __name__ == "__main__":
    main()
