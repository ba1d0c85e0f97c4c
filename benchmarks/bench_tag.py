"""harness train then harness tag on the mirror: are the tags the benchmark cell's, and how many
issues a second does tagging take?

Run:  HF_HUB_OFFLINE=1 python benchmarks/bench_tag.py --data-dir ../shared/data --results results

For each method (nb and setfit by default), through the command line a user runs:

1. ``harness train`` at ``all``, seed 0, beside ``--results`` (the manifest says whether the
   results folder holds the same cell and the same test predictions);
2. ``harness tag`` on the mirror's test issues written out as a JSONL file: its tags are compared
   with the cell's stored test predictions, and a second tagging with the first's bytes;
3. ``harness tag`` on 1,000 issues of the mirror (the first rows of its file), at two batch
   sizes: the issues per second each gave, with the progress lines it printed.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from harness.datasets import Settings, load_dataset
from harness.model_folder import read_manifest
from harness.plugins import get_plugin_manager
from harness.predictions import decode_predictions

DATASET = "github-issues-datasets"
MIRROR_FILE = "github-issues-datasets.jsonl.gz"


def harness(*args: object) -> str:
    done = subprocess.run([sys.executable, "-m", "harness", *map(str, args)], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"harness {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stderr + done.stdout


def tag_matrix(path: Path, tags: list[str]) -> np.ndarray:
    frame = pd.read_csv(path, keep_default_na=False)
    named = [set(cell.split(",")) if cell else set() for cell in frame["tags"]]
    return np.array([[int(tag in row) for tag in tags] for row in named], dtype=np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--methods", default="nb,setfit")
    parser.add_argument("--issues", type=int, default=1000, help="issues in the throughput file")
    parser.add_argument("--batch-sizes", default="32,256")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cache = tmp / "cache"
        settings = Settings(results_dir=str(args.results), cache_dir=str(cache), data_dirs=(str(args.data_dir),))
        dataset = load_dataset(DATASET, settings, get_plugin_manager().registry.readers)
        with gzip.open(args.data_dir / MIRROR_FILE, "rt", encoding="utf-8") as handle:
            rows = [json.loads(line) for line in handle if line.strip()]
        test_file, many_file = tmp / "test-issues.jsonl", tmp / "issues.jsonl"
        test_rows = dataset.source_rows[dataset.split_rows["test"]]
        test_file.write_text("".join(json.dumps(rows[i]) + "\n" for i in test_rows), encoding="utf-8")
        many_file.write_text("".join(json.dumps(row) + "\n" for row in rows[:args.issues]), encoding="utf-8")
        print(f"test issues: {len(test_rows)}; throughput file: {args.issues} issues")
        for method in args.methods.split(","):
            model = tmp / f"model-{method}"
            common = ["--data-dir", args.data_dir, "--cache-dir", cache]
            print(harness("train", "--method", method, "--datasets", DATASET, "--results", args.results,
                          "--out", model, *common).strip().splitlines()[-1])
            manifest = read_manifest(model)
            tags = manifest["dataset"]["tags"]
            print(f"{method}: results folder holds {manifest['results']['cell']}; "
                  f"same test predictions: {manifest['results']['same_test_predictions']}")
            first, second = tmp / f"{method}-test-1.csv", tmp / f"{method}-test-2.csv"
            for out in (first, second):
                harness("tag", "--model", model, "--file", test_file, "--out", out, "--quiet", *common)
            cell = decode_predictions((model / "cell.npz").read_bytes(), "cell.npz")
            equal = np.array_equal(tag_matrix(first, tags), cell["test_prediction"])
            print(f"{method}: tags of the test file equal the cell's stored test predictions: {equal}; "
                  f"second tagging byte-identical: {first.read_bytes() == second.read_bytes()}")
            for batch_size in args.batch_sizes.split(","):
                output = harness("tag", "--model", model, "--file", many_file, "--out", tmp / f"{method}-{batch_size}.csv",
                                 "--batch-size", batch_size, *common)
                lines = output.strip().splitlines()
                progress = [line for line in lines if line.startswith("tagged ")]
                print(f"{method}: batch {batch_size}: {lines[-1]} ({len(progress)} progress lines, first: {progress[0]!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
