"""The harness's ``uncertainty`` strategy against small-text's ``BreakingTies``, from the same
first slice with the same classifier: prints, per step, how many of the picks agree and both
sides' test micro and macro F1 (mean ± sd over seeds).

    python benchmarks/compare_small_text.py --data-dir ../shared/data           # 3 seeds, slices 8-128
    python benchmarks/compare_small_text.py --data-dir ../shared/data --seeds 0  # a smoke check

**What is compared.** On a multiclass dataset (default ``github-issues-datasets-kind``: bug,
dataset request or dataset contribution) the harness's ``uncertainty`` is the top-two margin,
the quantity small-text 1.4.1's ``BreakingTies`` ranks by ([LUO05] in its docs). On a
multi-label dataset the two differ on purpose (``BreakingTies`` takes the gap between the two
highest tags, the harness each tag's distance to its threshold), so no multi-label dataset is
offered here.

**Same inputs.** The classifier is the harness's ``embed_linear`` under the ``default`` preset:
a softmax logistic regression (``C``, class-balanced weights, ``max_iter=1000``, the seed as
``random_state``) on the MiniLM vectors of the harness's embedding cache. Both sides get the very
same float32 vectors: the library side wraps the same scikit-learn estimator in its
``SklearnClassifierFactory`` and ``PoolBasedActiveLearner``, which refits it from scratch after
each query, as the harness does. Both start from the harness's first slice of the seed (the
random cell of size 8) and grow to the same sizes (16, 32, 64, 128, as many issues as random's
slices of those names), with the pool being the rest of the training split. What differs is each
side's own code: the loop, the scoring of the pool, the ordering and the tie-breaking
(small-text ``np.argpartition``, the harness a seeded random tie-break).

**Two virtual environments.** The harness side runs ``harness run --methods embed_linear
--strategies random,uncertainty`` here (records under ``--results``, default
``build/compare_small_text``; its trajectories in the harness cache). small-text runs in its own
virtual environment (``--venv``, default ``.venv/small-text``, git-ignored), made on first use
with ``--system-site-packages`` and ``pip install small-text==1.4.1``: ``pip install --dry-run``
there adds small-text alone, moving no package of the project's. It gets plain arrays (vectors,
class indices, the first slice, the sizes) in one ``.npz`` per seed and returns its picks and
test probabilities; every F1 is computed here by ``harness.evaluation.task_metrics``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from reference import WORKER_FLAG, ensure_venv, mean_sd, ran_as_worker

SMALL_TEXT_VERSION = "1.4.1"
METHOD = "embed_linear"
STRATEGY = "uncertainty"


# ------------------------------------------------------------------ the library side (in its venv)


def library_worker(job_path: Path, out_path: Path) -> None:
    """Run small-text's active learner for one seed's job and save its picks and test probabilities."""
    from sklearn.linear_model import LogisticRegression
    from small_text import BreakingTies, PoolBasedActiveLearner, SklearnClassifierFactory, SklearnDataset

    job = np.load(job_path)
    train_x, train_y, test_x = job["train_x"], job["train_y"], job["test_x"]
    n_classes, seed = int(job["n_classes"]), int(job["seed"])
    class_weight = str(job["class_weight"])
    estimator = LogisticRegression(C=float(job["C"]), class_weight=None if class_weight == "none" else class_weight,
                                   max_iter=1000, random_state=seed)
    learner = PoolBasedActiveLearner(SklearnClassifierFactory(estimator, n_classes), BreakingTies(),
                                     SklearnDataset(train_x, train_y, target_labels=np.arange(n_classes)))
    start = job["start"]
    learner.initialize_data(start, train_y[start])
    test = SklearnDataset(test_x, np.zeros(len(test_x), dtype=np.int64), target_labels=np.arange(n_classes))

    def test_proba() -> np.ndarray:
        model = learner.classifier.model  # knows only the classes it was shown: put them in their columns
        full = np.zeros((len(test_x), n_classes))
        full[:, model.classes_] = learner.classifier.predict_proba(test)
        return full

    picks, probas, query_s = [], [test_proba()], []
    labeled = len(start)
    for size in job["sizes"][1:]:
        tick = time.perf_counter()
        picked = learner.query(num_samples=int(size) - labeled)
        query_s.append(time.perf_counter() - tick)
        learner.update(train_y[picked])
        picks.append(np.asarray(picked, dtype=np.int64))
        probas.append(test_proba())
        labeled = int(size)
    np.savez(out_path, picks=np.concatenate(picks), probas=np.stack(probas), query_s=np.asarray(query_s))


# ------------------------------------------------------------------ the driver (this environment)


def harness_side(args: argparse.Namespace) -> tuple[list, object]:
    """Run the harness's cells (random's first slice, then uncertainty's) and return the plan's
    cells with the settings they ran under."""
    from harness.datasets import Settings
    from harness.plan import plan_run
    from harness.plugins import get_plugin_manager
    command = [sys.executable, "-c", "from harness.cli import main; main()", "run", "--methods", METHOD,
               "--datasets", args.dataset, "--seeds", args.seeds, "--slices", args.slices,
               "--strategies", f"random,{STRATEGY}", "--results", str(args.results), "--data-dir", str(args.data_dir),
               "--cache-dir", str(args.cache_dir), "--no-report", "--quiet"]
    tick = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    print(f"harness: {METHOD} cells done in {time.perf_counter() - tick:.0f} s", flush=True)
    settings = Settings(results_dir=str(args.results), cache_dir=str(args.cache_dir), data_dirs=(str(args.data_dir),))
    plan = plan_run(get_plugin_manager(), settings, [METHOD], [args.dataset], [int(s) for s in args.seeds.split(",")],
                    [int(s) for s in args.slices.split(",")], strategies=["random", STRATEGY])
    return plan.cells, settings


def seed_runs(cells: list, settings) -> list[dict]:
    """Per seed: the trajectory (harness picks), the cell records by slice size, and the arrays the
    library side needs (the dataset's vectors are looked up once and shared by every seed)."""
    from harness.datasets import load_dataset
    from harness.embeddings import EmbeddingCache
    from harness.plugins import get_plugin_manager
    from harness.records import read_record
    from harness.trajectories import read_trajectory
    from harness_linear.embed import EmbedLinearParams

    trajectories = {c.trajectory.key_hash: c.trajectory for c in cells if c.trajectory is not None}
    if not trajectories:
        return []
    first = next(iter(trajectories.values()))
    dataset = load_dataset(first.dataset, settings, get_plugin_manager().registry.readers)
    params = EmbedLinearParams.model_validate(next(c.params for c in cells if c.trajectory is not None))
    cache = EmbeddingCache(Path(settings.cache_dir), params.spec())
    train, test = dataset.labeled("train"), dataset.labeled("test")
    shared = {"train_x": cache.embed(train.texts, params.batch_size), "train_y": train.labels.argmax(axis=1),
              "test_x": cache.embed(test.texts, params.batch_size), "n_classes": len(dataset.tags),
              "C": params.C, "class_weight": params.class_weight}
    runs = []
    for spec in sorted(trajectories.values(), key=lambda t: t.seed):
        trajectory = read_trajectory(spec, Path(settings.cache_dir))
        if trajectory is None or trajectory.reached < spec.sizes[-1]:
            raise SystemExit(f"seed {spec.seed}: the trajectory is not in {settings.cache_dir} (its cells ran under "
                             "another --cache-dir?); pass that one, or a fresh --results")
        records = {}
        for cell in cells:
            if cell.seed == spec.seed and (cell.trajectory == spec or cell.slice_name == spec.start):
                record = read_record(cell.path())
                if record is None or not record.ok:
                    raise SystemExit(f"{cell.path()}: the harness's cell is missing or failed; see 'harness status'")
                records[spec.size_of(cell.slice_name)] = record
        runs.append({
            "seed": spec.seed, "sizes": list(spec.sizes), "trajectory": trajectory, "records": records,
            "test": test, "tags": list(dataset.tags), "task": dataset.config.task,
            "job": {**shared, "seed": spec.seed, "start": np.asarray(trajectory.start, dtype=np.int64),
                    "sizes": np.asarray(spec.sizes)},
        })
    return runs


def library_side(python: Path, runs: list[dict], scratch: Path) -> list[dict[str, np.ndarray]]:
    outputs = []
    for run in runs:
        job_path, out_path = scratch / f"job_seed-{run['seed']}.npz", scratch / f"small-text_seed-{run['seed']}.npz"
        np.savez(job_path, **run["job"])
        tick = time.perf_counter()
        subprocess.run([str(python), __file__, WORKER_FLAG, str(job_path), str(out_path)], check=True)
        print(f"small-text: seed {run['seed']} done in {time.perf_counter() - tick:.1f} s", flush=True)
        outputs.append(dict(np.load(out_path)))
    return outputs


def compare(runs: list[dict], outputs: list[dict[str, np.ndarray]]) -> list[dict]:
    """Per seed and size: the share of the step's picks both sides made, the share of the labeled
    set they share, each side's test micro and macro F1, and the seconds each side's query of that
    step took (the harness's includes looking the pool's vectors up in, or adding them to, the
    embedding cache; small-text gets them in memory)."""
    from harness.evaluation import task_metrics
    from harness.rules import argmax_predictions

    rows = []
    for run, out in zip(runs, outputs):
        sizes, trajectory = run["sizes"], run["trajectory"]
        library_order = list(trajectory.start) + out["picks"].tolist()  # the library's labeled issues, in order
        for i, size in enumerate(sizes):
            step_overlap, query_s = float("nan"), (0.0, 0.0)
            if i:
                before = sizes[i - 1]
                harness_step = trajectory.positions(size)[before:]
                step_overlap = len(set(harness_step.tolist()) & set(library_order[before:size])) / (size - before)
                query_s = (trajectory.steps[i - 1].query_s, float(out["query_s"][i - 1]))
            record = run["records"][size]
            library = task_metrics(run["test"].labels, argmax_predictions(out["probas"][i]), run["tags"], run["task"])
            rows.append({
                "size": size, "seed": run["seed"], "step_overlap": step_overlap,
                "labeled_overlap": len(set(trajectory.positions(size).tolist()) & set(library_order[:size])) / size,
                "harness": (record.metrics.micro_f1, record.metrics.macro_f1),
                "library": (library["micro_f1"], library["macro_f1"]),
                "query_s": query_s,
            })
    return rows


def print_table(rows: list[dict]) -> None:
    print("\n| labeled | seeds | step picks shared | labeled set shared | harness micro | small-text micro | "
          "harness macro | small-text macro | step's query s harness / small-text |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size in sorted({row["size"] for row in rows}):
        group = [row for row in rows if row["size"] == size]
        step = [r["step_overlap"] for r in group]
        cols = {name: list(zip(*(r[name] for r in group))) for name in ("harness", "library", "query_s")}
        print(f"| {size} | {len(group)} | {'-' if np.isnan(step).all() else mean_sd(step)} | "
              f"{mean_sd([r['labeled_overlap'] for r in group])} | {mean_sd(cols['harness'][0])} | "
              f"{mean_sd(cols['library'][0])} | {mean_sd(cols['harness'][1])} | {mean_sd(cols['library'][1])} | "
              f"{np.mean(cols['query_s'][0]):.3f} / {np.mean(cols['query_s'][1]):.3f} |")


def main() -> None:
    if ran_as_worker(library_worker):
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--dataset", default="github-issues-datasets-kind", help="a multiclass dataset")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--slices", default="8,16,32,64,128")
    parser.add_argument("--results", type=Path, default=Path("build/compare_small_text"),
                        help="results folder of the harness's cells and small-text's outputs")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the harness cache, where the trajectories are kept (default: env HARNESS_CACHE_DIR, else the user cache)")
    parser.add_argument("--venv", type=Path, default=Path(".venv/small-text"), help="small-text's virtual environment")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.cache_dir is None:
        from harness.sources import default_cache_dir
        args.cache_dir = default_cache_dir()
    python = ensure_venv(args.venv, "small-text", SMALL_TEXT_VERSION)
    cells, settings = harness_side(args)
    runs = seed_runs(cells, settings)
    if runs and runs[0]["task"] != "multiclass":
        raise SystemExit(f"--dataset {args.dataset}: BreakingTies matches the harness's uncertainty only on a multiclass task")
    scratch = args.results / "small_text"
    scratch.mkdir(parents=True, exist_ok=True)
    print_table(compare(runs, library_side(python, runs, scratch)))


if __name__ == "__main__":
    main()
