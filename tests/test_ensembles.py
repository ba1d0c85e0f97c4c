"""Ensembles of stored cells (harness/ensembles.py): weights from valid only, identical members,
determinism, missing members, rebuilding, and the report and command line around them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.ensembles import (
    comparable_scores, fresh, parse_ensemble, refresh_ensembles, select_weights,
)
from harness.evaluation import evaluate_scores
from harness.hashing import stable_hash
from harness.methods import LabeledTexts
from harness.predictions import predictions_path, read_predictions, write_predictions
from harness.records import CellRecord, Metrics, PredictionsFile, read_record, record_files, record_path, write_record
from harness.results import load_results

TAGS = ["bug", "docs", "feature"]
N_VALID, N_TEST = 80, 90


def _labels(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, len(TAGS))) < [0.5, 0.2, 0.1]).astype(np.uint8)
    labels[np.arange(4), np.arange(4) % len(TAGS)] = 1  # every tag has a positive
    return labels


VALID_LABELS, TEST_LABELS = _labels(N_VALID, 1), _labels(N_TEST, 2)


def _refresh(results_dir: Path, *args, **kwargs):
    """The ensembles of ``results_dir`` refreshed from its records, loaded for the purpose."""
    return refresh_ensembles(results_dir, load_results(results_dir), *args, **kwargs)


def _scores(labels: np.ndarray, noise: float, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return scale * (labels + noise * rng.normal(size=labels.shape))


def write_member(results: Path, label: str, seed: int = 0, slice_name: str = "8", noise: float = 0.8,
                 score_seed: int | None = None, scale: float = 1.0, test_labels: np.ndarray = TEST_LABELS,
                 version: str = "1", task: str = "multilabel") -> Path:
    """A stored cell of method ``label`` with scores and its arrays, as the runner writes them;
    its scores follow the true tags, ``test_labels`` are the test tags stored with them."""
    score_seed = hash((label, seed, slice_name)) % 1000 if score_seed is None else score_seed
    valid_scores = _scores(VALID_LABELS, noise, score_seed, scale)
    test_scores = _scores(TEST_LABELS, noise, score_seed + 1, scale)
    valid = LabeledTexts([""] * N_VALID, VALID_LABELS, TAGS)
    test = LabeledTexts([""] * N_TEST, test_labels, TAGS)
    evaluation = evaluate_scores(valid_scores, test_scores, valid, test, task)
    path = record_path(results, "toy", label, slice_name, seed)
    key = {"method": label, "slice": slice_name, "seed": seed, "version": version}
    rule_metrics = {rule: Metrics.model_validate(m) for rule, m in evaluation.rule_metrics.items()}
    record = CellRecord(
        key=key, key_hash=stable_hash(key), status="ok", seed=seed,
        method={"name": label.split("@")[0], "label": label, "preset": "default", "params": {}},
        slice={"name": slice_name, "actual_n": 6},
        dataset={"name": "toy", "config_hash": "c", "fingerprint": "f", "tags": TAGS, "task": task},
        metrics=rule_metrics[evaluation.rule], rule=evaluation.rule, rule_metrics=rule_metrics, rules=evaluation.rules,
        ranking=evaluation.ranking, timings={"fit_s": 1.0, "scores_s": 0.5},
        predictions=PredictionsFile.model_validate(write_predictions(predictions_path(path), evaluation.arrays)),
    )
    write_record(path, record)
    return path


def _derived(results: Path, name: str = "pair", slice_name: str = "8", seed: int = 0) -> tuple[CellRecord, dict]:
    path = record_path(results, "toy", f"ensemble-{name}", slice_name, seed)
    record = read_record(path)
    assert record is not None, f"no derived record at {path}"
    return record, read_predictions(predictions_path(path), record.predictions.sha256)


def test_weights_are_chosen_on_valid_only(tmp_path):
    """Corrupting every member's test tags changes the ensemble's test metrics, never its
    weights, scores or rules: the selection reads no test label."""
    for label, noise in (("a", 0.5), ("b", 0.9), ("c", 1.4)):
        write_member(tmp_path / "clean", label, noise=noise)
        write_member(tmp_path / "corrupt", label, noise=noise, test_labels=1 - TEST_LABELS)
    spec = parse_ensemble("pair=a,b,c")
    _refresh(tmp_path / "clean", [spec])
    _refresh(tmp_path / "corrupt", [spec])
    clean, clean_arrays = _derived(tmp_path / "clean")
    corrupt, corrupt_arrays = _derived(tmp_path / "corrupt")
    assert clean.derived.weights == corrupt.derived.weights
    assert sum(w > 0 for w in clean.derived.weights.values()) >= 2  # a real combination was chosen
    assert clean.rules == corrupt.rules and clean.details == corrupt.details
    for name in ("valid_scores", "test_scores", "test_prediction"):
        np.testing.assert_array_equal(clean_arrays[name], corrupt_arrays[name])
    assert clean.metrics.micro_f1 != corrupt.metrics.micro_f1


def test_two_identical_members_equal_the_member(tmp_path):
    """Two members with the same stored scores: the ensemble keeps one and its scores are the
    member's own, so every rule on scores gives the member's test metrics."""
    member = write_member(tmp_path, "a", score_seed=7)
    write_member(tmp_path, "b", score_seed=7)
    _refresh(tmp_path, [parse_ensemble("pair=a,b")])
    derived, arrays = _derived(tmp_path)
    stored = read_record(member)
    member_arrays = read_predictions(predictions_path(member), stored.predictions.sha256)
    assert derived.derived.weights == {"a": 1.0, "b": 0.0}
    np.testing.assert_array_equal(arrays["test_scores"], member_arrays["test_scores"])
    assert derived.rule_metrics == stored.rule_metrics and derived.rules == stored.rules
    assert derived.ranking == stored.ranking


@pytest.mark.parametrize("scaling", ["calibrated", "rank"])
def test_identical_members_combine_to_the_members_comparable_scores(scaling):
    valid, test = _scores(VALID_LABELS, 0.7, 3), _scores(TEST_LABELS, 0.7, 4)
    valid_c, test_c = comparable_scores(valid, test, VALID_LABELS, scaling)
    selection = select_weights([valid_c, valid_c.copy()], VALID_LABELS)
    assert selection.weights.tolist() == [1.0, 0.0]  # ties go to the first member
    # the scale keeps each tag's order (rank exactly, calibrated for a tag its scores predict)
    for j in range(len(TAGS)):
        order = np.argsort(test[:, j], kind="stable")
        assert np.all(np.diff(test_c[order, j]) >= 0)


def test_rank_scaling_is_the_valid_mid_rank():
    reference = np.array([0.1, 0.2, 0.2, 0.9])
    valid_c, test_c = comparable_scores(reference[:, None], np.array([[0.0], [0.15], [0.2], [5.0]]),
                                        np.array([[0], [1], [1], [0]]), "rank")
    assert valid_c[:, 0].tolist() == pytest.approx([0.125, 0.5, 0.5, 0.875])
    assert test_c[:, 0].tolist() == pytest.approx([0.125, 0.3125, 0.5, 0.875])  # clamped, interpolated


def test_rank_scaling_survives_subnormal_scores():
    """Naive Bayes gives probabilities such as 5e-324; interpolating between them stays finite."""
    reference = np.array([0.0, 5e-324, 2e-318, 0.5])[:, None]
    _, test_c = comparable_scores(reference, np.array([[1e-318], [1.6e-318]]), np.zeros((4, 1)), "rank")
    assert np.isfinite(test_c).all()


def test_same_inputs_give_the_same_ensemble(tmp_path):
    for folder in ("one", "two"):
        for label, noise in (("a", 0.5), ("b", 0.9)):
            write_member(tmp_path / folder, label, noise=noise)
        _refresh(tmp_path / folder, [parse_ensemble("pair=a,b")])
    one, one_arrays = _derived(tmp_path / "one")
    two, two_arrays = _derived(tmp_path / "two")
    assert one.key_hash == two.key_hash and one.derived == two.derived
    assert one.predictions.sha256 == two.predictions.sha256
    for name in one_arrays:
        np.testing.assert_array_equal(one_arrays[name], two_arrays[name])


def test_missing_member_means_no_ensemble_there_and_a_note(tmp_path):
    for seed in (0, 1):
        write_member(tmp_path, "a", seed=seed)
    write_member(tmp_path, "b", seed=0)
    notes: list[str] = []
    _refresh(tmp_path, [parse_ensemble("pair=a,b")], notes.append)
    assert record_path(tmp_path, "toy", "ensemble-pair", "8", 0).exists()
    assert not record_path(tmp_path, "toy", "ensemble-pair", "8", 1).exists()
    assert notes == ["ensemble 'pair' (a, b) on toy: no ensemble at slice 8 seed 1: no cell of b"]


def test_derived_record_names_its_members_and_is_rebuilt_when_one_changes(tmp_path):
    write_member(tmp_path, "a")
    b_path = write_member(tmp_path, "b")
    _refresh(tmp_path, [parse_ensemble("pair=a,b")])
    before, _ = _derived(tmp_path)
    assert before.method.label == "ensemble-pair" and before.derived.kind == "ensemble"
    assert [m.key_hash for m in before.derived.members] == [
        read_record(record_path(tmp_path, "toy", label, "8", 0)).key_hash for label in ("a", "b")]
    write_member(tmp_path, "b", noise=0.3, version="2")  # b is computed again, with another key
    loaded = load_results(tmp_path)
    notes: list[str] = []
    assert [c.record.method.label for c in fresh(loaded, notes.append)] == ["a", "b"]  # the stale one is left out
    assert "changed since it was built" in notes[0]
    _refresh(tmp_path)  # no spec given: the ensemble in the folder is rebuilt
    after, _ = _derived(tmp_path)
    assert after.key_hash != before.key_hash
    assert after.derived.members[1].key_hash == read_record(b_path).key_hash
    b_path.unlink()  # a member gone: its ensemble cell goes too
    notes.clear()
    _refresh(tmp_path, on_note=notes.append)
    assert not record_path(tmp_path, "toy", "ensemble-pair", "8", 0).exists()
    assert "no cell of b" in notes[0]


def test_label_free_member_stands_in_every_slice(tmp_path):
    for slice_name in ("8", "16"):
        write_member(tmp_path, "a", slice_name=slice_name)
    write_member(tmp_path, "zs", slice_name="none")
    _refresh(tmp_path, [parse_ensemble("pair=a,zs")])
    assert {p.stem for p in (tmp_path / "cells" / "toy" / "ensemble-pair").glob("*.json")} == {
        "slice-8_seed-0", "slice-16_seed-0"}


@pytest.mark.parametrize("text, message", [
    ("pair", "expected NAME=METHOD,METHOD"),
    ("pair=a", "at least two different methods"),
    ("pair=a,b,a", "listed twice"),
    ("bad name=a,b", "expected NAME=METHOD"),
    ("pair=a,ensemble-x", "is an ensemble"),
])
def test_bad_ensemble_option_is_one_line(text, message):
    with pytest.raises(ValueError, match=message):
        parse_ensemble(text)


def test_report_shows_the_ensemble_beside_its_members(tmp_path):
    for seed in (0, 1):
        for label, noise in (("a", 0.6), ("b", 1.0)):
            write_member(tmp_path, label, seed=seed, noise=noise)
    write_member(tmp_path, "a", seed=2)
    result = CliRunner().invoke(cli, ["report", "--results", str(tmp_path), "--ensemble", "pair=a,b",
                                      "--bootstrap-resamples", "20"])
    assert result.exit_code == 0, result.output
    board = (tmp_path / "leaderboard.csv").read_text()
    summary = (tmp_path / "summary.md").read_text()
    assert "ensemble-pair" in board and "ensemble-pair" in summary
    note = "ensemble 'pair' (a, b) on toy: no ensemble at slice 8 seed 2: no cell of b"
    assert f"warning: {note}" in result.output and summary.rstrip().endswith(note)
    # a later report without the option keeps (and checks) the ensemble already in the folder
    result = CliRunner().invoke(cli, ["report", "--results", str(tmp_path), "--rule", "per_tag",
                                      "--bootstrap-resamples", "20"])
    assert result.exit_code == 0 and "ensemble-pair" in (tmp_path / "leaderboard-per_tag.csv").read_text()


@pytest.mark.parametrize("args, message", [
    (["--ensemble", "pair=a,nope"], "unknown method 'nope'"),
    (["--ensemble", "pair"], "expected NAME=METHOD"),
    (["--ensemble", "p=a,b", "--ensemble", "p=b,a"], "given twice"),
])
def test_report_refuses_a_bad_ensemble_in_one_line(tmp_path, args, message):
    for label in ("a", "b"):
        write_member(tmp_path, label)
    result = CliRunner().invoke(cli, ["report", "--results", str(tmp_path), *args])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_derived_record_round_trips_as_json(tmp_path):
    write_member(tmp_path, "a")
    write_member(tmp_path, "b")
    _refresh(tmp_path, [parse_ensemble("pair=a,b", "rank")])
    path = record_path(tmp_path, "toy", "ensemble-pair", "8", 0)
    raw = json.loads(path.read_text())
    assert raw["derived"]["scaling"] == "rank" and raw["method"]["name"] == "ensemble"
    assert raw["timings"]["fit_s"] == 2.0  # what the members cost, summed


def test_single_label_ensemble_decides_by_argmax(tmp_path):
    for label, noise in (("a", 0.5), ("b", 0.9)):
        write_member(tmp_path, label, noise=noise, task="multiclass")
    _refresh(tmp_path, [parse_ensemble("pair=a,b")])
    derived, arrays = _derived(tmp_path)
    assert derived.rule == "argmax" and derived.rules is None and derived.dataset.task == "multiclass"
    assert (arrays["test_prediction"].sum(axis=1) == 1).all()


def test_the_site_shows_the_ensemble_and_leaves_a_stale_one_out(tmp_path):
    from harness.publish import publish_site

    results = tmp_path / "results"
    for label in ("a", "b"):
        write_member(results, label)
    _refresh(results, [parse_ensemble("pair=a,b")])
    site = publish_site([results], tmp_path / "site")
    assert "ensemble-pair" in (tmp_path / "site" / "toy.html").read_text() and not site.problems
    write_member(results, "b", version="2")  # changed after the ensemble was built, no report since
    site = publish_site([results], tmp_path / "site")
    assert "ensemble-pair" not in (tmp_path / "site" / "toy.html").read_text()
    assert any("changed since it was built" in problem for problem in site.problems)


def test_run_refuses_an_unknown_member_before_any_cell_runs(tiny_settings):
    result = CliRunner().invoke(cli, ["run", "--methods", "nb", "--datasets", "tiny", "--seeds", "0",
                                      "--datasets-cfg", tiny_settings.datasets_cfg_dirs[0],
                                      "--data-dir", tiny_settings.data_dirs[0], "--results", tiny_settings.results_dir,
                                      "--ensemble", "pair=nb,nb_aug"])
    assert result.exit_code == 2 and "--ensemble pair: unknown method 'nb_aug'" in result.output
    assert not record_files(Path(tiny_settings.results_dir))


def test_the_command_line_offers_the_scalings_of_the_module():
    from harness import cli as cli_module
    from harness.ensembles import DEFAULT_SCALING, SCALINGS

    assert (cli_module.ENSEMBLE_SCALINGS, cli_module.DEFAULT_ENSEMBLE_SCALING) == (SCALINGS, DEFAULT_SCALING)
