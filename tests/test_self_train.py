"""self_train (issue 16): the loop, its pseudo-labels, its parameters and the method contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.methods import FitContext, LabeledTexts, Method
from harness.params import DEFAULT_PRESET, ParamError, build_params
from harness.testing import TINY_DATASET, MethodContract, tiny_multilabel, tiny_splits
from harness_nb import NaiveBayes
from harness_self_train import SelfTrain
from harness_self_train import method as self_train_method
from harness_self_train.loop import pool_texts
from harness_self_train.pseudo import select_pseudo_labels, tag_quotas


class TestSelfTrainContract(MethodContract):
    method_class = SelfTrain
    params = {"base": "nb", "rounds": 2, "max_per_tag": 5}
    other_params = {"base_params": {"alpha": 0.5}}
    min_micro_f1 = 0.6


# ---------------------------------------------------------------- helpers

def _context(tmp_path, seed: int = 0) -> FitContext:
    return FitContext(seed=seed, tags=list(tiny_splits()[0].tags), dataset=TINY_DATASET, fingerprint="tiny",
                      cache_dir=tmp_path / "cache")


def _fit(params: dict, train, valid, unlabeled, tmp_path, seed: int = 0) -> SelfTrain:
    from harness.cell import seed_everything

    method = SelfTrain(build_params(SelfTrain, DEFAULT_PRESET, params))
    seed_everything(seed)
    method.fit(train, valid, unlabeled, _context(tmp_path, seed))
    return method


def _pool(n: int = 80, seed: int = 7) -> list[str]:
    return tiny_multilabel(n, seed).texts


@pytest.fixture
def registered(monkeypatch):
    """Register extra method classes for self_train's registry look-ups during one test."""
    extra: dict[str, type[Method]] = {}
    real = self_train_method.registered_methods

    def methods():
        return {**real(), **extra}

    monkeypatch.setattr(self_train_method, "registered_methods", methods)

    def add(method_class: type[Method]) -> type[Method]:
        extra[method_class.name] = method_class
        return method_class

    return add


class RecordingNB(NaiveBayes):
    """Naive Bayes that remembers the texts of every fit."""

    name = "recording_nb"
    fits: list[list[str]] = []

    def fit(self, train, valid, unlabeled, context):
        RecordingNB.fits.append(list(train.texts))
        super().fit(train, valid, unlabeled, context)


# ---------------------------------------------------------------- pseudo-labels

def test_pseudo_labels_come_only_from_the_pool_never_from_valid_texts(registered, tmp_path):
    registered(RecordingNB)
    RecordingNB.fits = []
    train, valid, test = tiny_splits()
    own_pool = _pool()
    # copies of valid and training texts in the pool must not come back as pseudo-labelled texts
    unlabeled = own_pool + valid.texts + train.texts[:5]
    method = _fit({"base": "recording_nb", "rounds": 3, "max_per_tag": 10},
                  LabeledTexts(train.texts[:12], train.labels[:12], train.tags), valid, unlabeled, tmp_path)
    details = method.details()
    assert details["pool_copies_of_labeled_texts_dropped"] == len(valid) + 5
    assert details["pool_texts"] == len(set(own_pool))
    assert len(RecordingNB.fits) >= 2, details  # round 0 and at least one refit
    assert any(r["pseudo_labelled_texts"] > 0 for r in details["rounds"][1:]), details
    valid_texts, slice_texts = set(valid.texts), set(train.texts[:12])
    for fit_texts in RecordingNB.fits:
        assert fit_texts[:12] == train.texts[:12]  # the slice first, unchanged
        added = fit_texts[12:]
        assert not set(added) & valid_texts
        assert not set(added) & slice_texts
        assert set(added) <= set(own_pool)


def test_the_cores_unlabeled_pool_holds_no_valid_or_test_issue(mirror_dir, tmp_path):
    from harness.datasets import Settings, load_dataset
    from harness.plugins import get_plugin_manager

    settings = Settings(results_dir=str(tmp_path / "results"), cache_dir=str(tmp_path / "cache"), data_dirs=(str(mirror_dir),))
    dataset = load_dataset("github-issues-datasets", settings, get_plugin_manager().registry.readers)
    rows = dataset.split_rows
    assert len(rows["unlabeled"]) > 5000
    for split in ("train", "valid", "test"):
        assert not set(rows["unlabeled"]) & set(rows[split])
        assert not set(dataset.unlabeled_texts) & set(dataset.labeled(split).texts)


def test_tag_quotas_keep_the_slice_balance():
    labels = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0]])
    np.testing.assert_array_equal(tag_quotas(labels, 8), [8, 2, 0])  # 4:1:0, rounded up
    np.testing.assert_array_equal(tag_quotas(np.zeros((3, 2)), 8), [0, 0])


def test_selection_takes_the_most_confident_texts_up_to_each_quota():
    scores = np.array([[0.9, 0.1], [0.6, 0.2], [0.95, 0.8], [0.4, 0.7], [0.55, 0.1]])
    thresholds = np.array([0.5, 0.65])
    chosen = select_pseudo_labels(scores, thresholds, np.array([2, 1]))
    # tag 0: texts 2 and 0 (0.95, 0.9); tag 1: text 2 (0.8); text 1 and 4 are over quota
    np.testing.assert_array_equal(chosen.positions, [0, 2])
    np.testing.assert_array_equal(chosen.labels, [[1, 0], [1, 1]])  # the whole row of decisions
    assert chosen.per_tag(["a", "b"]) == {"a": 2, "b": 1}
    assert len(select_pseudo_labels(scores, np.array([0.99, 0.99]), np.array([2, 1]))) == 0  # nothing confident


def test_pool_texts_drop_copies_of_labeled_texts_and_repeats():
    assert pool_texts(["a", "b", "a", "c", "v"], ["v", "t"]) == (["a", "b", "c"], 2)


# ---------------------------------------------------------------- rounds

class ScriptedBase(Method):
    """A base whose k-th fit gets ``quality[k]`` of the valid texts right (the rest all wrong):
    the valid F1 of each round is set by the test, so the stopping rule can be checked."""

    name = "scripted"
    quality: list[float] = []
    fits = 0
    truth: dict[str, np.ndarray] = {}

    def fit(self, train, valid, unlabeled, context):
        self.correct = ScriptedBase.quality[ScriptedBase.fits]
        ScriptedBase.fits += 1
        self.tags = list(train.tags)

    def predict_scores(self, texts):
        rows = []
        for i, text in enumerate(texts):
            truth = ScriptedBase.truth.get(text)
            if truth is None:  # a pool text: confident in its first tag
                rows.append(np.eye(len(self.tags))[i % len(self.tags)] * 0.9)
            else:
                right = (i / max(len(texts), 1)) < self.correct
                rows.append(truth.astype(float) if right else 1.0 - truth)
        return np.asarray(rows)


@pytest.mark.parametrize("quality, best_round, stop, rounds_run", [
    ([0.5, 0.8, 0.6, 0.9], 1, "valid F1 fell", 3),  # round 2 falls: round 3 is never fitted
    ([0.5, 0.5, 0.9], 0, "valid F1 did not improve", 2),
    ([0.3, 0.5, 0.7, 0.9], 3, "rounds done", 4),
])
def test_rounds_stop_when_valid_f1_stops_improving_and_the_best_round_is_kept(
        registered, tmp_path, quality, best_round, stop, rounds_run):
    registered(ScriptedBase)
    train, valid, _ = tiny_splits()
    ScriptedBase.quality, ScriptedBase.fits = quality, 0
    ScriptedBase.truth = {t: row for t, row in zip(valid.texts, valid.labels)}
    method = _fit({"base": "scripted", "rounds": 3}, train, valid, _pool(30), tmp_path)
    details = method.details()
    assert [r["round"] for r in details["rounds"]] == list(range(rounds_run))
    assert ScriptedBase.fits == rounds_run
    assert details["best_round"] == best_round and details["stop"] == stop
    assert method.model.correct == quality[best_round]  # the kept model is the best round's
    f1s = [r["valid_micro_f1"] for r in details["rounds"]]
    assert f1s.index(max(f1s)) == best_round


def test_the_record_keeps_per_round_counts_agreement_and_valid_f1(tmp_path):
    train, valid, _ = tiny_splits()
    slice_ = LabeledTexts(train.texts[:10], train.labels[:10], train.tags)
    method = _fit({"base": "nb", "rounds": 2, "max_per_tag": 6}, slice_, valid, _pool(), tmp_path)
    details = method.details()
    json.dumps(details)
    first = details["rounds"][1]
    assert set(first["pseudo_labels_per_tag"]) == set(train.tags)
    assert first["pseudo_labelled_texts"] > 0
    assert first["training_texts"] == 10 + first["pseudo_labelled_texts"]
    assert 0.0 <= first["agreement_with_own_predict"] <= 1.0
    assert {"valid_micro_f1", "valid_macro_f1", "fit_s"} <= set(first)
    assert details["pseudo_labels_used"] == details["rounds"][details["best_round"]]["pseudo_labelled_texts"]


def test_same_seed_gives_the_same_rounds_and_scores(tmp_path):
    train, valid, test = tiny_splits()
    slice_ = LabeledTexts(train.texts[:16], train.labels[:16], train.tags)
    params = {"base": "nb", "rounds": 2, "max_per_tag": 6}
    runs = [_fit(params, slice_, valid, _pool(), tmp_path / str(i)) for i in range(2)]

    def without_times(details):
        return [{k: v for k, v in r.items() if k != "fit_s"} for r in details["rounds"]]

    assert without_times(runs[0].details()) == without_times(runs[1].details())
    assert runs[0].details()["rounds"][1]["pseudo_labelled_texts"] > 0
    np.testing.assert_array_equal(runs[0].predict_scores(test.texts), runs[1].predict_scores(test.texts))


def test_a_label_free_base_scores_the_pool_once_into_the_cache(tmp_path):
    pytest.importorskip("sentence_transformers")
    train, valid, _ = tiny_splits()
    params = {"base": "zeroshot", "student": "nb", "rounds": 1, "max_per_tag": 5}
    first = _fit(params, train, valid, _pool(40), tmp_path)
    assert first.details()["pool_scores"] == "computed"
    assert list((tmp_path / "cache" / "self_train_pool_scores").glob("*.npy"))
    other_slice = LabeledTexts(train.texts[:8], train.labels[:8], train.tags)  # another slice, same pool
    second = _fit(params, other_slice, valid, _pool(40), tmp_path, seed=1)
    assert second.details()["pool_scores"] == "cache"


# ---------------------------------------------------------------- parameters

def _cell_key(settings, overrides: list[str]) -> dict:
    from harness.plan import plan_run
    from harness.testing import single_method_pm

    plan = plan_run(single_method_pm(SelfTrain), settings, ["self_train"], [TINY_DATASET], [0], [16], overrides=overrides)
    (spec,) = plan.cells
    return spec.key


def test_base_parameters_from_the_command_line_change_the_cell_key(tiny_settings):
    from harness.params import parse_overrides

    parsed = parse_overrides(["self_train.base_params={\"alpha\": 0.5}"], ["self_train"])
    assert parsed == {"self_train": {"base_params": {"alpha": 0.5}}}
    nb = ["self_train.base=nb"]
    plain = _cell_key(tiny_settings, nb)
    alpha = _cell_key(tiny_settings, nb + ["self_train.base_params={\"alpha\": 0.5}"])
    other_alpha = _cell_key(tiny_settings, nb + ["self_train.base_params={\"alpha\": 0.1}"])
    other_base = _cell_key(tiny_settings, [])  # the default base, knn_embed
    hashes = {k["params_hash"] for k in (plain, alpha, other_alpha, other_base)}
    assert len(hashes) == 4


@pytest.mark.parametrize("params, message", [
    ({"base": "nbb"}, "self_train.base: Value error, unknown method 'nbb'; did you mean 'nb'?"),
    ({"base": "self_train"}, "cannot be self_train itself"),
    ({"base": "nb", "base_params": {"alpha": "much"}}, "nb.alpha"),
    ({"base_params": {"no_such": 1}}, "knn_embed.no_such"),
    ({"base": "nb", "base_preset": "boook"}, "method 'nb' has no preset 'boook'"),
    ({"base": "zeroshot"}, "learns nothing from labels: name a student"),
    ({"student": "zeroshot"}, "self_train.student: Value error, method 'zeroshot' learns nothing from labels"),
    ({"student_params": {"alpha": 0.5}}, "student_params without a student"),
])
def test_bad_parameters_fail_in_one_line_naming_them(params, message):
    with pytest.raises(ParamError) as info:
        build_params(SelfTrain, DEFAULT_PRESET, params)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_base_without_scores_is_refused(registered):
    class PredictOnly(Method):
        name = "predict_only"

        def predict(self, texts):
            return np.zeros((len(texts), 3), dtype=np.uint8)

    registered(PredictOnly)
    with pytest.raises(ParamError, match="gives no scores"):
        build_params(SelfTrain, DEFAULT_PRESET, {"base": "predict_only"})


def test_multiclass_pseudo_labels_carry_one_tag_the_highest_scored():
    scores = np.array([[0.9, 0.8, 0.1],   # both first tags clear their thresholds: only the higher counts
                       [0.2, 0.7, 0.6],
                       [0.3, 0.2, 0.1]])  # nothing confident
    pseudo = select_pseudo_labels(scores, np.array([0.5, 0.5, 0.5]), np.array([5, 5, 5]), multiclass=True)
    assert pseudo.positions.tolist() == [0, 1]
    assert pseudo.labels.tolist() == [[1, 0, 0], [0, 1, 0]]


def test_a_multiclass_dataset_gets_one_tag_per_issue(tmp_path):
    from test_multiclass import write_single_label_dataset

    from harness.driver import run_plan
    from harness.plan import plan_run
    from harness.plugins import make_plugin_manager
    from harness.records import iter_records

    settings = write_single_label_dataset(tmp_path)
    pm = make_plugin_manager(autoload=False)
    plan = plan_run(pm, settings, ["self_train"], ["kinds"], [0], None, DEFAULT_PRESET, ["self_train.base=nb"], None, False)
    assert run_plan(pm, plan)["failed"] == 0
    records = list(iter_records(tmp_path / "results"))
    assert records and all(r.status == "ok" and r.dataset.task == "multiclass" for r in records)
    assert all(r.metrics.accuracy is not None for r in records)


SCORED_BASE = '''
from harness import hookimpl
from harness_nb import NaiveBayes


class ScoredBase(NaiveBayes):
    name = "scored_base"
    version = "{version}"


@hookimpl
def register_methods(register):
    register(ScoredBase)
'''


def test_a_new_version_of_the_base_runs_self_trains_cells_again(tmp_path, monkeypatch):
    """self_train's key holds its base's version and full parameters: a real plugin module
    (on $HARNESS_PLUGINS) at version 1, then 2, reruns self_train's cell and not nb's."""
    import sys

    import harness.plugins
    from harness.driver import run_plan
    from harness.plan import plan_run
    from harness.plugins import get_plugin_manager
    from harness.records import read_record
    from harness.testing import tiny_run_settings

    def install(version: str) -> None:
        (tmp_path / "scored_base.py").write_text(SCORED_BASE.format(version=version))
        sys.modules.pop("scored_base", None)
        monkeypatch.setattr(harness.plugins, "_default_pm", None)  # self_train resolves its base there

    def plan():
        return plan_run(get_plugin_manager(), settings, ["self_train", "nb"], [TINY_DATASET], [0], [8],
                        overrides=["self_train.base=scored_base", "self_train.rounds=1"])

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HARNESS_PLUGINS", "scored_base")
    monkeypatch.setenv("HARNESS_DISABLE_PLUGIN_AUTOLOAD", "1")
    settings = tiny_run_settings(tmp_path / "run")
    install("1")
    assert run_plan(get_plugin_manager(), plan())["ok"] == 2
    assert plan().todo == []  # nothing changed: nothing to do
    install("2")
    again = plan()
    assert [spec.method for spec in again.todo] == ["self_train"]
    assert run_plan(get_plugin_manager(), again) == {"planned": 2, "skipped": 1, "ok": 1, "failed": 0}
    (spec,) = again.todo
    base = read_record(spec.path()).key["dependencies"]["base"]
    assert base == {"method": "scored_base", "version": "2", "params": NaiveBayes.Params().model_dump(mode="json")}
    sys.modules.pop("scored_base")
