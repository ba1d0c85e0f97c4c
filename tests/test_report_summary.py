"""The summary: paired bootstrap marks, learning-curve estimates, wide and aggregate tables."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.driver import run_plan
from harness.learning_curve import labels_needed
from harness.metrics import f1
from harness.plan import plan_run
from harness.plugins import make_plugin_manager
from harness.rebuild import rebuild_reports
from harness.report import cells_under_rule
from harness.results import load_results
from harness.significance import BootstrapSettings, column_resamples, compare_to_best, resample_weights, resampled_f1
from harness.summary import SummaryOptions, build_summary
from harness.testing import TINY_DATASET, tiny_run_settings

SECOND_DATASET = "tiny-filtered"


def _labels_and_prediction(n: int = 200, tags: int = 4, seed: int = 0, noise: float = 0.1):
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, tags)) < 0.3).astype(np.uint8)
    flip = rng.random((n, tags)) < noise
    return labels, np.where(flip, 1 - labels, labels).astype(np.uint8)


# ---------------------------------------------------------------- the paired bootstrap

def test_resampled_f1_equals_f1_of_the_resampled_issues():
    labels, prediction = _labels_and_prediction(60, 3)
    rng = np.random.default_rng(3)
    weights = resample_weights(60, 5, rng)
    fast = resampled_f1(labels, prediction, weights)
    for row, counts in enumerate(weights):
        drawn = np.repeat(np.arange(60), counts.astype(int))
        for metric, average in (("micro_f1", "micro"), ("macro_f1", "macro")):
            assert fast[metric][row] == pytest.approx(f1(labels[drawn], prediction[drawn], average), abs=1e-12)
    # unit weights give the F1 of the test set itself
    whole = resampled_f1(labels, prediction, np.ones((1, 60)))
    assert whole["micro_f1"][0] == pytest.approx(f1(labels, prediction, "micro"))


def _column(noises: dict[str, float], seeds=(0, 1, 2), n: int = 300):
    labels, _ = _labels_and_prediction(n)
    column = {}
    for m, (method, noise) in enumerate(noises.items()):
        column[method] = {}
        for seed in seeds:
            rng = np.random.default_rng(100 * m + seed)
            flip = rng.random(labels.shape) < noise
            column[method][seed] = (labels, np.where(flip, 1 - labels, labels).astype(np.uint8))
    return column


def test_a_clearly_worse_method_is_marked_worse_and_a_copy_of_the_best_is_tied():
    column = _column({"good": 0.05, "bad": 0.30})
    column["copy"] = column["good"]
    settings = BootstrapSettings(resamples=300, alpha=0.05, seed=0)
    resampled = column_resamples(column, settings, "toy|8")
    found = compare_to_best(resampled, "good", "micro_f1", settings.alpha)
    assert found["good"].verdict == "best"
    assert found["bad"].verdict == "worse" and found["bad"].p_value == 0.0 and found["bad"].shared_seeds == 3
    assert found["copy"].verdict == "tied" and found["copy"].p_value == 1.0  # no difference on any resample


def test_close_methods_are_tied_and_the_verdict_is_deterministic():
    column = _column({"a": 0.100, "b": 0.102})
    settings = BootstrapSettings(resamples=400, alpha=0.05, seed=7)
    first = compare_to_best(column_resamples(column, settings, "toy|8"), "a", "macro_f1", settings.alpha)
    again = compare_to_best(column_resamples(dict(reversed(list(column.items()))), settings, "toy|8"), "a", "macro_f1", 0.05)
    assert first["b"].verdict == "tied" and 0.05 < first["b"].p_value < 1
    assert first == again  # the order of the methods changes nothing
    other_seed = compare_to_best(column_resamples(column, BootstrapSettings(400, 0.05, 8), "toy|8"), "a", "macro_f1", 0.05)
    assert other_seed["b"].p_value != first["b"].p_value


def test_only_shared_seeds_are_compared_and_none_shared_is_untested():
    column = _column({"best": 0.05, "other": 0.30}, seeds=(0, 1))
    column["late"] = {5: column["other"][0]}
    resampled = column_resamples(column, BootstrapSettings(100), "toy|16")
    found = compare_to_best(resampled, "best", "micro_f1", 0.05)
    assert found["other"].shared_seeds == 2
    assert found["late"].verdict == "untested" and found["late"].p_value is None


def test_seeds_with_different_test_issues_are_resampled_each_on_its_own():
    column = _column({"a": 0.05, "b": 0.25}, seeds=(0,), n=150)
    other_labels, other_prediction = _labels_and_prediction(90, seed=5)
    column["a"][1] = (other_labels, other_prediction)
    column["b"][1] = (other_labels, 1 - other_prediction)
    resampled = column_resamples(column, BootstrapSettings(50), "toy|all")
    assert resampled["a"][0]["micro_f1"].shape == resampled["a"][1]["micro_f1"].shape == (50,)
    assert compare_to_best(resampled, "a", "micro_f1", 0.05)["b"].verdict == "worse"


def test_bad_bootstrap_settings_are_one_line_errors():
    with pytest.raises(ValueError, match="--alpha 1.5"):
        BootstrapSettings(alpha=1.5)
    with pytest.raises(ValueError, match="--bootstrap-resamples 0"):
        BootstrapSettings(resamples=0)


# ---------------------------------------------------------------- labels needed

def test_labels_needed_recovers_a_known_curve_and_says_how_it_got_there():
    n = np.array([6, 12, 30, 61, 127, 818], dtype=float)
    curve = 0.8 - 0.5 * n ** -0.4
    inside = labels_needed(n, curve, 0.7)
    assert inside.reach == "interpolated" and inside.n == pytest.approx((0.5 / 0.1) ** (1 / 0.4), rel=1e-3)
    beyond = labels_needed(n, curve, 0.78)
    assert beyond.reach == "extrapolated" and beyond.n > 818
    assert labels_needed(n, curve, 0.85).reach == "not reached"  # above the plateau
    assert labels_needed(n[:2], curve[:2], 0.7).reach == "no fit"  # three parameters need three sizes


# ---------------------------------------------------------------- from real records

def _write_filtered_config(settings) -> None:
    """A second dataset made from the tiny one, as github-issues-datasets-plain is from the mirror."""
    cfg_dir = Path(settings.datasets_cfg_dirs[0])
    config = json.loads((cfg_dir / f"{TINY_DATASET}.yaml").read_text())
    config.update(name=SECOND_DATASET, filters=[{"field": "title", "not_equals": "issue 3"}])
    (cfg_dir / f"{SECOND_DATASET}.yaml").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture(scope="module")
def two_datasets(tmp_path_factory) -> Path:
    """nb and knn-free methods on two tiny datasets; nb@smooth on the first only (3 seeds)."""
    settings = tiny_run_settings(tmp_path_factory.mktemp("summary"))
    _write_filtered_config(settings)
    pm = make_plugin_manager(autoload=False)
    for datasets, overrides, label in (([TINY_DATASET, SECOND_DATASET], None, None), ([TINY_DATASET], ["nb.alpha=30"], "smooth")):
        plan = plan_run(pm, settings, ["nb"], datasets, [0, 1, 2], overrides=overrides, label=label)
        assert run_plan(pm, plan)["failed"] == 0
    return Path(settings.results_dir)


def test_summary_of_real_records_marks_the_best_and_the_tied(two_datasets):
    summary = build_summary(cells_under_rule(load_results(two_datasets)), options=SummaryOptions(BootstrapSettings(200)))
    tiny = next(d for d in summary.datasets if d.dataset == TINY_DATASET)
    assert tiny.methods == ["nb", "nb@smooth"] and tiny.slices == ["8", "16", "all"]
    for (metric, slice_name), found in tiny.comparisons.items():
        verdicts = sorted(c.verdict for c in found.values())
        assert verdicts[0] == "best" and verdicts[1] in ("tied", "worse"), (metric, slice_name)
        means = tiny.table[tiny.table["slice"] == slice_name].set_index("method")[f"{metric}_mean"]
        assert found[means.idxmax()].verdict == "best"
    assert summary.aggregate is not None and set(summary.aggregate["method"]) == {"nb", "nb@smooth"}


def test_report_writes_the_summary_under_each_rule_beside_the_other(two_datasets, tmp_path):
    results = Path(shutil.copytree(two_datasets, tmp_path / "results"))
    runner = CliRunner()
    own = runner.invoke(cli, ["report", "--results", str(results), "--bootstrap-resamples", "200"])
    assert own.exit_code == 0, own.output
    per_tag = runner.invoke(cli, ["report", "--results", str(results), "--rule", "per_tag", "--bootstrap-resamples", "200"])
    assert per_tag.exit_code == 0, per_tag.output
    text = (results / "summary.md").read_text(encoding="utf-8")
    assert text.startswith("# Summary (decision rule: own)") and text in own.output
    assert (results / "summary-per_tag.md").read_text(encoding="utf-8").startswith("# Summary (decision rule: per_tag)")
    assert (results / "leaderboard.csv").exists() and (results / "leaderboard-per_tag.csv").exists()
    micro = text.split("### Micro F1")[1].split("###")[0]
    assert re.search(r"\| \*\*0\.\d{3} ± 0\.\d{3}\*\* ", micro)  # the best in bold
    assert "### Cost: median seconds per cell, fit / predict" in text and " MB " in text  # peak RSS measured
    assert "### Labels needed for Micro F1 ≥ 0.7" in text
    # both datasets in the aggregate, with mean rank; nb@smooth ran on one of two
    aggregate = text.split("## Across datasets (2 datasets)")[1]
    rows = {line.split("|")[1].strip(): line for line in aggregate.split("### Micro F1")[1].splitlines() if line.startswith("| nb")}
    assert rows["nb"].rstrip().endswith("| 2/2        |") and "(1/2)" in rows["nb@smooth"]
    assert " r1.0" in aggregate or " r1.5" in aggregate
    assert (results / "figures" / "aggregate.png").exists() and (results / "figures" / "aggregate-per_tag.png").exists()
    assert r"\textbf{" in (results / "summary.tex").read_text(encoding="utf-8")
    assert "<strong>" in (results / "summary.html").read_text(encoding="utf-8")

    bad = runner.invoke(cli, ["report", "--results", str(results), "--alpha", "0"])
    assert bad.exit_code == 2 and "--alpha 0.0: expected a level between 0 and 1" in bad.output


def test_summary_is_deterministic_and_names_are_escaped(two_datasets, tmp_path):
    results = Path(shutil.copytree(two_datasets, tmp_path / "results"))
    options = SummaryOptions(BootstrapSettings(100, 0.05, 3))
    rebuild_reports(results, options=options)
    first = {fmt: (results / f"summary.{fmt}").read_text(encoding="utf-8") for fmt in ("md", "html", "tex")}
    rebuild_reports(results, options=options)
    assert first == {fmt: (results / f"summary.{fmt}").read_text(encoding="utf-8") for fmt in ("md", "html", "tex")}
    # a hostile method label is escaped in HTML and LaTeX
    for path in (results / "cells").glob("tiny/nb@smooth/*.json"):
        record = json.loads(path.read_text())
        record["method"]["label"] = "nb@<b>&_x"
        path.write_text(json.dumps(record))
    rebuild_reports(results, options=options)
    assert "nb@&lt;b&gt;&amp;_x" in (results / "summary.html").read_text(encoding="utf-8")
    assert "<b>&_x" not in (results / "summary.html").read_text(encoding="utf-8")
    assert r"nb@<b>\&\_x" in (results / "summary.tex").read_text(encoding="utf-8")


def test_cells_of_two_data_versions_are_summarised_apart(two_datasets, tmp_path):
    results = Path(shutil.copytree(two_datasets, tmp_path / "results"))
    for path in (results / "cells" / TINY_DATASET).glob("*/*_seed-2.json"):
        record = json.loads(path.read_text())
        record["dataset"]["config_hash"] = "0" * 16
        path.write_text(json.dumps(record))
    summary = build_summary(cells_under_rule(load_results(results)), options=SummaryOptions(BootstrapSettings(50)))
    tiny = [d for d in summary.datasets if d.dataset.startswith(f"{TINY_DATASET} [config")]
    assert len(tiny) == 2 and all(not d.table.empty and d.slices == ["8", "16", "all"] for d in tiny)
    assert {d.seeds for d in tiny} == {"1 seed", "2 seeds"}


def test_a_size_far_beyond_the_largest_slice_is_shown_as_a_bound_only():
    n = np.array([6.0, 12.0, 30.0, 61.0, 127.0, 818.0])
    slow = 0.71 - 0.5 * n ** -0.3  # reaches 0.7 at (0.5 / 0.01) ** (1 / 0.3), about 460,000 issues
    needed = labels_needed(n, slow, 0.7)
    assert needed.reach == "far beyond" and needed.n is None and needed.largest_n == 818.0
