"""Query strategies and their trajectories: the first slice is the same issues for every strategy
of a seed and the later ones differ; a run killed mid-trajectory resumes without computing its
finished steps again; the built-in strategies pick what their docstrings say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import QueryContext
from harness.datasets import train_slices
from harness.driver import run_plan
from harness.errors import HarnessError
from harness.plan import plan_run
from harness.plugins import make_plugin_manager
from harness.records import iter_records
from harness.testing import TINY_DATASET, tiny_run_settings
from harness.trajectories import read_trajectory, trajectory_path
from harness_strategies.diversity import greedy_coreset
from harness_strategies.uncertainty import margins

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent


def _records(settings) -> dict[tuple[str, str, int], object]:
    return {(r.method.label, r.slice.name, r.seed): r for r in iter_records(Path(settings.results_dir))}


def test_every_strategy_starts_from_the_same_first_slice_and_then_differs(tmp_path):
    settings = tiny_run_settings(tmp_path)
    pm = make_plugin_manager(autoload=False)
    strategies = ["random", "uncertainty", "uncertainty_mean", "diversity"]
    plan = plan_run(pm, settings, ["nb"], [TINY_DATASET], [0, 1], [8, 16, 32, "all"], strategies=strategies)
    # the first slice and 'all' are random's cells, planned once; the strategies add 16 and 32
    assert sorted({(s.label, s.slice_name) for s in plan.cells if s.slice_name in ("8", "all")}) == [("nb", "8"), ("nb", "all")]
    assert len(plan.cells) == 2 * (4 + 3 * 2)
    assert run_plan(pm, plan)["failed"] == 0
    records = _records(settings)
    for seed in (0, 1):
        nested = train_slices(TINY_DATASET, settings, pm.registry.readers, (8, 16, 32, "all"), seed)
        for spec in (s for s in plan.cells if s.trajectory is not None and s.seed == seed):
            stored = read_trajectory(spec.trajectory, Path(settings.cache_dir))
            assert stored.start == nested["8"].positions.tolist()  # the very issues of random's first slice
            # paired at equal numbers of labels, and the prefix of 16 inside that of 32
            assert records[(spec.label, spec.slice_name, seed)].slice.actual_n == nested[spec.slice_name].size
            assert set(stored.positions(nested["16"].size)) <= set(stored.positions(nested["32"].size))
        at_16 = {label: records[(label, "16", seed)].slice.index_hash
                 for label in ["nb", "nb · uncertainty", "nb · uncertainty_mean", "nb · diversity"]}
        assert len(set(at_16.values())) == 4, at_16  # each strategy picked other issues
    strategy_record = records[("nb · uncertainty", "32", 0)]
    assert strategy_record.method.base == "nb" and strategy_record.method.selector == "nb"
    assert strategy_record.timings["query_s"] > 0 and "selector_fit_s" in strategy_record.timings
    assert records[("nb · diversity", "16", 0)].method.selector is None  # diversity reads no scores
    # a second plan finds every cell done, random's keys included
    assert not plan_run(pm, settings, ["nb"], [TINY_DATASET], [0, 1], [8, 16, 32, "all"], strategies=strategies).todo


def test_random_keeps_the_cells_and_keys_of_a_run_without_strategies(tmp_path):
    settings = tiny_run_settings(tmp_path)
    pm = make_plugin_manager(autoload=False)
    before = plan_run(pm, settings, ["nb"], [TINY_DATASET], [0])
    with_strategies = plan_run(pm, settings, ["nb"], [TINY_DATASET], [0], strategies=["random", "uncertainty"])
    keys = {spec.path(): spec.key for spec in with_strategies.cells}
    assert all(keys[spec.path()] == spec.key for spec in before.cells)
    assert all("strategy" not in spec.key for spec in before.cells)


def test_the_selector_is_named_and_the_reused_fit_is_recorded(tmp_path):
    settings = tiny_run_settings(tmp_path)
    pm = make_plugin_manager(autoload=False)
    plan = plan_run(pm, settings, ["nb"], [TINY_DATASET], [0], [8, 16, 32], strategies=["uncertainty"],
                    selector="tfidf_linear")
    labels = {spec.label for spec in plan.cells}
    assert labels == {"nb", "nb · uncertainty (tfidf_linear)"}
    assert run_plan(pm, plan)["failed"] == 0
    (spec,) = [s for s in plan.cells if s.slice_name == "32"]
    assert spec.path().parent.name == "nb+uncertainty+by-tfidf_linear"
    steps = read_trajectory(spec.trajectory, Path(settings.cache_dir)).steps
    assert [step.reused_fit for step in steps] == [False, False]  # another method is the selector: it fits itself
    own = plan_run(pm, settings, ["nb"], [TINY_DATASET], [0], [8, 16, 32], strategies=["uncertainty"])
    assert run_plan(pm, own)["failed"] == 0
    steps = read_trajectory(own.cells[-1].trajectory, Path(settings.cache_dir)).steps
    # nb guides its own picks: the cell of 16 fitted it, and that fit took the step to 32
    assert [step.reused_fit for step in steps] == [False, True] and steps[1].fit_s == 0


def test_a_strategy_that_needs_scores_refuses_a_selector_without_them(tmp_path):
    from harness.methods import Method

    class TagsOnly(Method):
        name = "tags_only"

        def fit(self, train, valid, unlabeled, context):
            self.n = len(context.tags)

        def predict(self, texts):
            return np.zeros((len(texts), self.n), dtype=np.uint8)

    class Plugin:
        from harness import hookimpl

        @hookimpl
        def register_methods(self, register):
            register(TagsOnly)

    pm = make_plugin_manager(autoload=False)
    pm.register_module(Plugin(), name="tags_only_plugin")
    settings = tiny_run_settings(tmp_path)
    with pytest.raises(HarnessError, match="strategy 'uncertainty' picks by the selector's scores, but method "
                                           "'tags_only' has no predict_scores"):
        plan_run(pm, settings, ["tags_only"], [TINY_DATASET], [0], strategies=["uncertainty"])
    # a strategy that reads no scores, or a selector that has them, is fine
    plan_run(pm, settings, ["tags_only"], [TINY_DATASET], [0], strategies=["diversity"])
    plan_run(pm, settings, ["tags_only"], [TINY_DATASET], [0], strategies=["uncertainty"], selector="nb")


def _harness(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env, timeout=300)


def test_a_run_killed_mid_trajectory_resumes_without_recomputing_finished_steps(tmp_path):
    settings = tiny_run_settings(tmp_path)
    log = tmp_path / "selections.log"
    env = {**os.environ, "HARNESS_PLUGINS": "strategy_plugins", "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1",
           "COUNTED_LOG": str(log),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))}
    args = ["run", "--methods", "nb", "--datasets", TINY_DATASET, "--strategies", "counted", "--slices", "8,16,24,32",
            "--no-report", "--quiet", "--results", settings.results_dir, "--cache-dir", settings.cache_dir,
            "--data-dir", settings.data_dirs[0], "--datasets-cfg", settings.datasets_cfg_dirs[0]]
    killed = _harness(args, {**env, "COUNTED_KILL_AT": "3"})
    assert killed.returncode == -9, killed.stderr  # SIGKILL at the third selection: the step to 32
    pm = make_plugin_manager(autoload=False)
    pm.load_module("strategy_plugins", source="test", version="")
    (spec,) = [s for s in plan_run(pm, settings, ["nb"], [TINY_DATASET], [0], [8, 16, 24, 32], strategies=["counted"]).cells
               if s.slice_name == "32"]
    before = json.loads(trajectory_path(spec.trajectory, Path(settings.cache_dir)).read_text())
    assert [step["size"] for step in before["steps"]] == [spec.trajectory.sizes[1], spec.trajectory.sizes[2]]
    assert len(log.read_text().splitlines()) == 2
    done_before = {(r.slice.name, r.method.label) for r in iter_records(Path(settings.results_dir))}
    assert ("24", "nb · counted") not in done_before  # killed in flight: its record was never written

    resumed = _harness(args, env)
    assert resumed.returncode == 0, resumed.stderr
    assert len(log.read_text().splitlines()) == 3  # one selection more: the step the kill interrupted
    after = json.loads(trajectory_path(spec.trajectory, Path(settings.cache_dir)).read_text())
    assert after["steps"][:2] == before["steps"]  # the finished steps, picks and seconds, untouched
    assert [step["size"] for step in after["steps"]] == list(spec.trajectory.sizes[1:])
    records = _records(settings)
    assert {("nb · counted", name, 0) for name in ("16", "24", "32")} <= set(records)


def test_margins_are_each_tags_distance_to_its_threshold_or_the_top_two_gap():
    scores = np.array([[0.9, 0.52, 0.1], [0.6, 0.9, 0.0], [0.5, 0.5, 0.5]])
    thresholds = np.array([0.5, 0.5, 0.5])
    spread = scores.std(axis=0)
    distance = np.abs(scores - 0.5) / spread
    assert np.allclose(margins(scores, thresholds, "multilabel", "min"), distance.min(axis=1))
    assert np.allclose(margins(scores, thresholds, "multilabel", "mean"), distance.mean(axis=1))
    # the first issue is sure of two tags and unsure of one: min calls it uncertain, the top-two gap would not
    assert margins(scores, thresholds, "multilabel")[0] < margins(scores, thresholds, "multilabel")[1]
    assert np.allclose(margins(scores, thresholds, "multiclass"), [0.38, 0.3, 0.0])


def test_greedy_coreset_picks_the_farthest_issue_each_time():
    pool = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 3.0]])
    labeled = np.array([[0.0, 0.1]])
    picks, gaps = greedy_coreset(pool, labeled, 3)
    assert picks.tolist() == [2, 3, 1]
    assert np.allclose(gaps[:2], [np.hypot(5.0, 0.1), 2.9])  # each the distance to its nearest labeled or picked vector


def test_random_selects_distinct_pool_positions_seeded():
    from harness.strategies import RandomStrategy

    def pick(seed):
        context = QueryContext(pool_size=50, task="multilabel", seed=seed, rng=np.random.default_rng(seed),
                               cache_dir=REPO)
        return RandomStrategy().select(10, context).positions.tolist()

    assert pick(0) == pick(0) and len(set(pick(0))) == 10 and pick(0) != pick(1)


def test_reports_tell_strategies_apart_with_auc_gain_and_query_cost(tmp_path):
    from harness.rebuild import rebuild_reports

    settings = tiny_run_settings(tmp_path)
    pm = make_plugin_manager(autoload=False)
    plan = plan_run(pm, settings, ["nb"], [TINY_DATASET], [0, 1], [8, 16, 32, "all"], strategies=["random", "uncertainty"])
    assert run_plan(pm, plan)["failed"] == 0
    results = Path(settings.results_dir)
    written = rebuild_reports(results).files
    board = __import__("pandas").read_csv(results / "leaderboard.csv")
    rows = board[board["method"] == "nb · uncertainty"]
    # the shared first slice and 'all' are shown on the strategy's row too, with random's values
    assert rows["slice"].tolist() == ["8", "16", "32", "all"]
    random_rows = board[board["method"] == "nb"].set_index("slice")
    for shared in ("8", "all"):
        assert rows.set_index("slice").loc[shared, "micro_f1_mean"] == random_rows.loc[shared, "micro_f1_mean"]
    assert rows["query_s_median"].notna().tolist() == [False, True, True, False]
    summary = (results / "summary.md").read_text()
    table = summary.split("### Query strategies against random")[1]
    line = next(row for row in table.splitlines() if row.startswith("| nb · uncertainty"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    gain_16 = float(cells[3].split(" / ")[0].rstrip("↑↓?"))
    expected = rows.set_index("slice").loc["16", "micro_f1_mean"] - random_rows.loc["16", "micro_f1_mean"]
    assert abs(gain_16 - expected) < 1e-3
    assert results / "figures" / "tiny-nb-strategies.png" in written


def test_a_report_without_strategies_has_no_strategy_table_or_columns(tmp_path):
    from harness.rebuild import rebuild_reports

    settings = tiny_run_settings(tmp_path)
    pm = make_plugin_manager(autoload=False)
    assert run_plan(pm, plan_run(pm, settings, ["nb"], [TINY_DATASET], [0]))["failed"] == 0
    rebuild_reports(Path(settings.results_dir))
    assert "Query strategies" not in (Path(settings.results_dir) / "summary.md").read_text()
    assert "query_s_median" not in (Path(settings.results_dir) / "leaderboard.csv").read_text()


def test_normalised_auc_is_the_mean_height_over_log_sizes():
    from harness.summary import normalised_auc

    assert normalised_auc([8, 16, 32], [0.5, 0.5, 0.5]) == 0.5
    assert normalised_auc([8, 16, 64], [0.2, 0.4, 0.4]) == pytest.approx((0.3 * 1 + 0.4 * 2) / 3)
    assert np.isnan(normalised_auc([8], [0.3]))


def test_compare_pair_marks_better_worse_and_tied():
    from harness.significance import compare_pair

    resamples = np.random.default_rng(0).normal(0, 0.01, 500)
    resampled = {"base": {0: {"micro_f1": 0.5 + resamples}}, "up": {0: {"micro_f1": 0.6 + resamples}},
                 "same": {0: {"micro_f1": 0.5 + resamples[::-1]}}, "other_seed": {1: {"micro_f1": 0.9 + resamples}}}
    assert compare_pair(resampled, "up", "base", "micro_f1", 0.05).verdict == "better"
    assert compare_pair(resampled, "base", "up", "micro_f1", 0.05).verdict == "worse"
    assert compare_pair(resampled, "same", "base", "micro_f1", 0.05).verdict == "tied"
    assert compare_pair(resampled, "other_seed", "base", "micro_f1", 0.05).verdict == "untested"
