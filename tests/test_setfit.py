"""setfit: seeded contrastive pairs, the head and decision rule, the method contract on a tiny
sentence-transformer built here, and real MiniLM on mirror issues."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from harness.methods import FitContext, LabeledTexts
from harness.params import ParamError, build_params
from harness.testing import TINY_TAGS, MethodContract, save_tiny_sentence_transformer, tiny_multilabel, tiny_splits
from harness_setfit import SetFit, SetFitParams
from harness.toolkit import LogisticHead, decide
from harness_setfit.pairs import contrastive_pairs, pair_budget, with_none_tag

# Small, fast settings; the tests add "model": the tiny sentence-transformer's folder.
FAST = {"num_iterations": 2, "max_pairs": None, "batch_size": 8, "max_length": 32, "body_learning_rate": 1e-3,
        "eval_batch_size": 32}


@pytest.fixture(scope="session")
def tiny_st(tmp_path_factory) -> str:
    return str(save_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st"), tiny_multilabel(200).texts))


def context(cache_dir: Path, seed: int = 0, progress=lambda message: None, task: str | None = None) -> FitContext:
    return FitContext(seed=seed, tags=list(TINY_TAGS), dataset="tiny", fingerprint="tiny", cache_dir=cache_dir,
                      progress=progress, task=task or "multilabel")


# ---------------------------------------------------------------- plugin and parameters

def test_plugin_registers_without_heavy_imports(harness_pm):
    assert harness_pm.registry.methods["setfit"] is SetFit
    code = "import sys, harness_setfit; print([m for m in ('torch', 'transformers', 'sentence_transformers', 'sklearn') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_mpnet_and_book_presets_are_setfits_published_setting():
    for preset in ("mpnet", "book"):
        p = build_params(SetFit, preset, {})
        assert (p.model, p.num_iterations, p.max_pairs, p.epochs, p.batch_size) == (
            "sentence-transformers/all-mpnet-base-v2", 20, None, 1, 16)


@pytest.mark.parametrize(
    ("override", "named"),
    [({"num_iterations": 0}, "setfit.num_iterations"), ({"pair_target": "cosine"}, "setfit.pair_target"),
     ({"max_length": 4}, "setfit.max_length"), ({"head_class_weight": "auto"}, "setfit.head_class_weight")],
)
def test_bad_parameters_name_the_parameter(override, named):
    with pytest.raises(ParamError, match=named):
        build_params(SetFit, "default", override)


# ---------------------------------------------------------------- pairs

def _shares_a_tag(labels: np.ndarray, i: int, j: int) -> bool:
    tags = with_none_tag(labels)
    return bool((tags[i] & tags[j]).any())


def test_multilabel_positives_share_a_tag_and_negatives_none():
    labels = tiny_multilabel(40).labels.copy()
    labels[:3] = 0  # untagged issues: "none of these" is their tag
    pairs = contrastive_pairs(labels, pair_budget(len(labels), 5, None), seed=0)
    assert len(pairs) == 2 * 5 * 40
    assert (pairs.first != pairs.second).all()
    for i, j, target in zip(pairs.first, pairs.second, pairs.target):
        assert target == float(_shares_a_tag(labels, i, j))
    # one positive and one negative partner per text per iteration: balanced, and every text used equally
    assert pairs.target.mean() == pytest.approx(0.5)
    assert np.bincount(pairs.first, minlength=40).tolist() == [10] * 40
    untagged = pairs.target[np.isin(pairs.first, [0, 1, 2])]
    assert untagged.sum() == len(untagged) / 2  # two untagged issues make a positive pair


def test_pairs_are_seeded():
    labels = tiny_multilabel(30).labels
    first, again, other = (contrastive_pairs(labels, 100, seed=s) for s in (0, 0, 1))
    np.testing.assert_array_equal(first.first, again.first)
    np.testing.assert_array_equal(first.second, again.second)
    assert not np.array_equal(first.second, other.second)


def test_pair_budget_caps_the_count_and_spreads_over_the_slice():
    labels = tiny_multilabel(50).labels
    assert pair_budget(50, 20, None) == 2000 and pair_budget(50, 20, 300) == 300
    pairs = contrastive_pairs(labels, 30, seed=0)  # fewer pairs than one iteration needs
    assert len(pairs) == 30 and len(set(pairs.first.tolist())) == 15


def test_multiclass_positives_have_the_same_class():
    classes = np.repeat([0, 1, 2], 5)
    labels = np.eye(3, dtype=np.uint8)[classes]
    pairs = contrastive_pairs(labels, pair_budget(len(labels), 3, None), seed=0)
    assert len(pairs) == 2 * 3 * 15
    np.testing.assert_array_equal(pairs.target, (classes[pairs.first] == classes[pairs.second]).astype(np.float32))


def test_jaccard_targets_grade_partial_overlap():
    labels = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 1], [1, 1, 0]], dtype=np.uint8)
    pairs = contrastive_pairs(labels, 40, seed=0, target="jaccard")
    expected = {(0, 1): 0.5, (0, 3): 1.0, (0, 2): 0.0, (1, 3): 0.5}
    for i, j, target in zip(pairs.first, pairs.second, pairs.target):
        key = (min(i, j), max(i, j))
        if key in expected:
            assert target == pytest.approx(expected[key])


def test_a_single_text_gives_no_pairs():
    assert len(contrastive_pairs(np.array([[1, 0]], dtype=np.uint8), 10, seed=0)) == 0


# ---------------------------------------------------------------- head and decision rule

def test_multilabel_head_gives_constant_scores_for_tags_without_both_classes():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 4))
    labels = np.zeros((20, 3), dtype=np.uint8)
    labels[:, 0] = vectors[:, 0] > 0
    labels[:, 2] = 1
    scores = LogisticHead("multilabel", 1.0, None, 0).fit(vectors, labels).predict_proba(vectors)
    assert scores.shape == (20, 3)
    assert (scores[:, 1] == 0).all() and (scores[:, 2] == 1).all()
    assert f1_score(labels[:, 0], scores[:, 0] > 0.5) > 0.8


def test_multiclass_head_is_a_softmax_with_argmax():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 4))
    classes = vectors[:, :2].argmax(axis=1)  # classes 0 and 1; class 2 absent from the slice
    labels = np.eye(3, dtype=np.uint8)[classes]
    scores = LogisticHead("multiclass", 1.0, None, 0).fit(vectors, labels).predict_proba(vectors)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-6)
    assert (scores[:, 2] == 0).all()
    predicted = decide(scores, "multiclass", threshold=0.99)  # the threshold does not apply
    assert (predicted.sum(axis=1) == 1).all() and (predicted.argmax(axis=1) == classes).mean() > 0.8


# ---------------------------------------------------------------- the method on a tiny sentence-transformer

class TestSetFitContract(MethodContract):
    """The contract every method passes (harness.testing), on a tiny random sentence-transformer."""

    method_class = SetFit
    other_params = {"num_iterations": 3}
    min_micro_f1 = 0.5

    @pytest.fixture(scope="class")
    def contract_params(self, tiny_st):
        return {**FAST, "model": tiny_st}

    def test_scores_are_probabilities_and_predict_applies_the_threshold(self, fitted, contract_data):
        method, predicted = fitted
        test = contract_data[2]
        scores = method.predict_scores(test.texts)
        assert scores.shape == (len(test), len(test.tags)) and ((scores >= 0) & (scores <= 1)).all()
        np.testing.assert_array_equal(predicted, (scores > method.details()["threshold"]).astype(np.uint8))
        assert method.predict_scores([]).shape == (0, len(test.tags))

    def test_details_record_pairs_and_stage_times(self, fitted):
        method, _ = fitted
        details = method.details()
        assert details["pair_training"]["pairs"] == 2 * FAST["num_iterations"] * 50
        assert details["pair_training"]["pairs_per_s"] > 0
        assert set(details["stage_s"]) == {"load_s", "pairs_s", "body_s", "head_s", "valid_s"}
        assert details["task"] == "multilabel" and 0 < details["threshold"] < 1


def test_pair_training_moves_the_body_and_reports_progress(tiny_st, tmp_path):
    from sentence_transformers import SentenceTransformer

    train, valid, test = tiny_splits()
    messages: list[str] = []
    method = SetFit(SetFitParams(**{**FAST, "num_iterations": 4}, model=tiny_st))
    method.fit(train, valid, [], context(tmp_path, progress=messages.append))
    assert any("pair training: step" in m and "ETA" in m for m in messages)
    assert any("pair training done" in m and "pairs/s" in m for m in messages)
    assert any("head fitted" in m for m in messages)
    before = SentenceTransformer(tiny_st, device="cpu").encode(test.texts[:4])
    after = method.model.encode(test.texts[:4])
    assert not np.allclose(before, after)  # the body was trained, not only the head
    loss = method.details()["pair_training"]["loss_per_epoch"]
    assert len(loss) == 1 and loss[0] < 0.5


def test_valid_and_test_are_embedded_once_and_scores_equal_a_fresh_embedding(tiny_st, tmp_path, monkeypatch):
    import harness_setfit.body as body

    train, valid, test = tiny_splits()
    method = SetFit(SetFitParams(**FAST, model=tiny_st))
    embedded: list[int] = []
    real_embed = body.embed
    monkeypatch.setattr(body, "embed", lambda model, texts, batch: embedded.append(len(texts)) or real_embed(model, texts, batch))
    method.fit(train, valid, [], context(tmp_path))
    # the core's order: predict(test), then the scores of valid and of test
    method.predict(test.texts)
    valid_scores = method.predict_scores(valid.texts)
    test_scores = method.predict_scores(test.texts)
    assert embedded == [len(train), len(valid), len(test)]  # head, threshold, predict: once each
    test_scores[:] = -1  # a caller changing its copy changes nothing in the method
    # sentence-transformers' own encode, an embedding path independent of the training engine's
    fresh = method.head.predict_proba(method.model.encode(test.texts))
    np.testing.assert_allclose(method.predict_scores(test.texts), fresh, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(valid_scores, method.head.predict_proba(method.model.encode(valid.texts)), rtol=1e-5, atol=1e-6)
    method.predict_scores(test.texts[:3])
    assert embedded[3:] == [3]  # another list is embedded; at most two are kept


def test_multiclass_context_predicts_one_tag_per_text(tiny_st, tmp_path):
    train, valid, test = tiny_splits()

    def one_hot(data: LabeledTexts) -> LabeledTexts:
        return LabeledTexts(data.texts, np.eye(len(data.tags), dtype=np.uint8)[data.labels.argmax(axis=1)], data.tags)

    method = SetFit(SetFitParams(**FAST, model=tiny_st))
    method.fit(one_hot(train), one_hot(valid), [], context(tmp_path, task="multiclass"))
    predicted = method.predict(test.texts)
    assert (predicted.sum(axis=1) == 1).all()
    np.testing.assert_allclose(method.predict_scores(test.texts).sum(axis=1), 1.0, atol=1e-6)
    assert method.details()["task"] == "multiclass"


def test_empty_train_is_a_clear_error(tiny_st, tmp_path):
    train, valid, _ = tiny_splits()
    empty = LabeledTexts([], np.zeros((0, len(train.tags)), dtype=np.uint8), train.tags)
    with pytest.raises(ValueError, match="training slice is empty"):
        SetFit(SetFitParams(**FAST, model=tiny_st)).fit(empty, valid, [], context(tmp_path))


def test_a_folder_that_is_no_model_is_a_clear_error(tmp_path):
    from harness.models import ModelResolutionError

    train, valid, _ = tiny_splits()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelResolutionError, match=r"parameter 'model'"):
        SetFit(SetFitParams(**FAST, model=str(tmp_path / "empty"))).fit(train, valid, [], context(tmp_path))


# ---------------------------------------------------------------- real MiniLM on mirror issues

@pytest.mark.slow
def test_minilm_setfit_beats_a_trivial_baseline_on_mirror_issues(tmp_path):
    """Single-tag issues of four frequent tags: 4 train issues per tag, 8 valid and 8 test per tag."""
    from conftest import MIRROR, single_tag_issues

    from harness.config import load_config
    from harness.data import prepare

    if not MIRROR.exists():
        pytest.skip(f"data mirror not found at {MIRROR}")
    dataset = prepare(load_config("github-issues-datasets"), [MIRROR.parent], tmp_path / "prepared")

    train, valid, test = (single_tag_issues(dataset, split, n) for split, n in (("train", 4), ("valid", 8), ("test", 8)))
    method = SetFit(SetFitParams(num_iterations=2, max_length=48))  # 64 pairs: minutes on a busy CPU
    method.fit(train, valid, [], context(tmp_path / "cache"))
    valid_micro = method.details()["valid_micro_f1"]
    test_micro = f1_score(test.labels, method.predict(test.texts), average="micro", zero_division=0)
    # trivial baseline: every issue gets the training slice's most frequent tag (a quarter right here)
    trivial = np.zeros_like(test.labels)
    trivial[:, train.labels.sum(axis=0).argmax()] = 1
    baseline = f1_score(test.labels, trivial, average="micro", zero_division=0)
    assert valid_micro > 0.5 and test_micro > baseline + 0.2, (valid_micro, test_micro, baseline)
