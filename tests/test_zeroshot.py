"""The zeroshot plugin: NLI scores equal to transformers' pipeline, embedding scores equal to
sentence-transformers' cosine, the decision rule chosen on valid, and the score cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.methods import FitContext, LabeledTexts
from harness.params import ParamError, build_params
from harness.testing import TINY_TAGS, MethodContract, save_tiny_bert_tokenizer, tiny_multilabel
from harness_zeroshot.method import ZeroShot, hypotheses_for
from harness_zeroshot.reference import build_minilm_nli, pipeline_per_text
from harness_zeroshot.rules import DecisionRule, choose_rule

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
LONG_TEMPLATE = "In the long and careful and considered opinion of the many kind people who have read it from start to end , this example is {} ."


def nli_texts() -> list[str]:
    """Texts of very different lengths: some get truncated, every batch needs padding."""
    data = tiny_multilabel(14, seed=3)
    return [" ".join([text] * (1 + i % 4)) for i, text in enumerate(data.texts)]


def build_tiny_nli(folder: Path, label2id: dict[str, int], texts: list[str]) -> Path:
    """A randomly initialised BERT with NLI labels and a word-level tokenizer trained on ``texts``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    # model_max_length 24: long premises are truncated, and LONG_TEMPLATE alone does not fit
    vocab_size = save_tiny_bert_tokenizer(folder, texts + [LONG_TEMPLATE, "this example is ."] + TINY_TAGS, max_length=24)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, initializer_range=0.5,
                        label2id=label2id, id2label={i: label for label, i in label2id.items()})
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


NLI_LABELS = {
    "contradiction first": {"contradiction": 0, "neutral": 1, "entailment": 2},  # bart-large-mnli's order
    "entailment first": {"entailment": 0, "neutral": 1, "contradiction": 2},  # the pipeline then uses the last logit
}


@pytest.fixture(scope="module", params=list(NLI_LABELS))
def tiny_nli(request, tmp_path_factory) -> Path:
    return build_tiny_nli(tmp_path_factory.mktemp("nli"), NLI_LABELS[request.param], nli_texts())


def pipeline_scores(model_dir: Path, texts: list[str], tags: list[str], template: str) -> np.ndarray:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    pipe = pipeline("zero-shot-classification", model=AutoModelForSequenceClassification.from_pretrained(model_dir),
                    tokenizer=AutoTokenizer.from_pretrained(model_dir), device="cpu")
    return pipeline_per_text(pipe, texts, tags, template)


@pytest.mark.parametrize("template", ["This example is {}.", LONG_TEMPLATE], ids=["book-template", "template-over-the-limit"])
def test_nli_batched_scores_equal_the_pipeline(tiny_nli, template):
    from harness_zeroshot.nli import nli_scores

    texts = nli_texts()
    hypotheses = [template.format(tag) for tag in TINY_TAGS]
    # at most 5 pairs and 80 padded tokens per batch: batches of 2 to 5 pairs, all padded
    batched = nli_scores(texts, hypotheses, model=str(tiny_nli), batch_size=5, batch_tokens=80, device="cpu")
    expected = pipeline_scores(tiny_nli, texts, TINY_TAGS, template)
    assert batched.shape == (len(texts), len(TINY_TAGS))
    assert expected.std() > 0.01  # the random model does separate pairs, so the comparison means something
    np.testing.assert_allclose(batched, expected, atol=1e-5, rtol=0)


def test_bf16_scores_stay_close_to_fp32_on_a_minilm_sized_model(tmp_path):
    from harness_zeroshot.nli import nli_scores

    model = str(build_minilm_nli(tmp_path))  # real-sized activations, unlike the tiny model's
    texts, hypotheses = nli_texts(), [f"This example is {tag}." for tag in TINY_TAGS]
    exact = nli_scores(texts, hypotheses, model=model, device="cpu")
    fast = nli_scores(texts, hypotheses, model=model, device="cpu", precision="bf16")
    difference = np.abs(fast - exact).max()
    assert 1e-5 < difference < 1e-2  # computed in bf16, and still close


def test_length_sorted_batches_respect_both_caps():
    from harness_zeroshot.nli import length_sorted_batches

    lengths = [30, 500, 7, 120, 120, 64, 9, 700]
    batches = list(length_sorted_batches(lengths, batch_size=3, batch_tokens=256))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert [lengths[i] for i in np.concatenate(batches)] == sorted(lengths, reverse=True)
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) <= 3 and (len(batch) == 1 or len(batch) * longest <= 256)
    assert [len(b) for b in batches] == [1, 1, 2, 3, 1]  # a pair over the budget still runs, alone


def test_nli_needs_an_entailment_label(tmp_path):
    from harness_zeroshot.nli import nli_scores

    folder = build_tiny_nli(tmp_path, {"negative": 0, "positive": 1}, nli_texts())
    with pytest.raises(ValueError, match="no entailment label"):
        nli_scores(["a text"], ["This example is bug."], model=str(folder), device="cpu")


class ScoresNotCached(AssertionError):
    """Raised by a scorer patched in once the scores should come from the cache."""


def not_cached(*args, **kwargs):
    raise ScoresNotCached


def _context(cache_dir: Path, descriptions: dict[str, str] | None = None) -> FitContext:
    return FitContext(seed=0, tags=list(TINY_TAGS), dataset="tiny", fingerprint="tiny", cache_dir=cache_dir,
                      tag_descriptions=descriptions or {})


def _splits() -> tuple[LabeledTexts, LabeledTexts, LabeledTexts]:
    data = tiny_multilabel(40, seed=5)
    empty = LabeledTexts([], np.zeros((0, 3), dtype=np.uint8), list(TINY_TAGS))
    return empty, LabeledTexts(data.texts[:20], data.labels[:20], data.tags), LabeledTexts(data.texts[20:], data.labels[20:], data.tags)


def _fit(params: dict, cache_dir: Path, descriptions: dict[str, str] | None = None) -> tuple[ZeroShot, np.ndarray]:
    train, valid, test = _splits()
    method = ZeroShot(ZeroShot.Params(**params))
    method.fit(train, valid, [], _context(cache_dir, descriptions))
    return method, method.predict(test.texts)


def test_nli_method_caches_scores_per_split(tiny_nli, tmp_path, monkeypatch):
    import harness_zeroshot.nli

    params = {"backend": "nli", "model": str(tiny_nli), "batch_size": 8}
    first, prediction = _fit(params, tmp_path)
    assert first.details()["scores"] == {"valid": "computed", "test": "computed"}
    assert prediction.shape == (20, 3) and set(np.unique(prediction)) <= {0, 1}

    monkeypatch.setattr(harness_zeroshot.nli, "nli_scores", not_cached)
    again, prediction_again = _fit(params, tmp_path)  # another seed or a rerun: nothing to compute
    assert again.details()["scores"] == {"valid": "cache", "test": "cache"}
    np.testing.assert_array_equal(prediction_again, prediction)
    assert again.details()["rule"] == first.details()["rule"]
    with pytest.raises(ScoresNotCached):  # another template is another cache entry
        _fit({**params, "template": "This issue is about {}."}, tmp_path)
    with pytest.raises(ScoresNotCached):  # and so is another precision
        _fit({**params, "precision": "bf16"}, tmp_path)


def test_a_cell_waits_for_scores_another_cell_is_computing(tiny_nli, tmp_path, monkeypatch):
    import threading

    import harness_zeroshot.nli
    from harness.locks import artifact_lock

    params = {"backend": "nli", "model": str(tiny_nli), "batch_size": 8}
    _fit(params, tmp_path)
    valid_path, test_path = sorted((tmp_path / "zeroshot_scores").glob("*.npy"), key=lambda p: p.stat().st_mtime)
    matrix = np.load(valid_path)
    valid_path.unlink()
    monkeypatch.setattr(harness_zeroshot.nli, "nli_scores", not_cached)
    outcome: dict[str, object] = {}

    def other_cell() -> None:
        try:
            outcome["method"] = _fit(params, tmp_path)[0]
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    with artifact_lock(valid_path):  # another cell is scoring the valid split right now
        waiting = threading.Thread(target=other_cell)
        waiting.start()
        waiting.join(timeout=0.5)
        assert waiting.is_alive()  # it waits instead of scoring the same texts again
        np.save(valid_path, matrix)
    waiting.join(timeout=30)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["method"].details()["scores"] == {"valid": "cache", "test": "cache"}


@pytest.fixture(scope="module")
def minilm_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("minilm-cache")


def test_embedding_scores_are_minilm_cosines(minilm_cache):
    from sentence_transformers import SentenceTransformer

    from harness.models import resolve_model
    from harness_zeroshot.embedding import embedding_scores

    texts = ["The training crashes with a CUDA out of memory error and a long traceback",
             "The documentation page has a broken link",
             "Feature request: a new option to add"]
    hypotheses = hypotheses_for(TINY_TAGS, "This example is {}.", {"docs": "documentation"})
    scores = embedding_scores(texts, hypotheses, MINILM, minilm_cache)
    model = SentenceTransformer(resolve_model(MINILM))
    model.max_seq_length = 128
    expected = (model.encode(texts, normalize_embeddings=True) @ model.encode(hypotheses, normalize_embeddings=True).T)
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert list(scores.argmax(axis=1)) == [0, 1, 2]  # bug, docs (as "documentation"), feature


def test_embedding_method_uses_descriptions_and_the_cache(minilm_cache, monkeypatch):
    import harness_zeroshot.embedding

    descriptions = {"feature": "a feature request"}
    method, prediction = _fit({}, minilm_cache, descriptions)
    details = method.details()
    assert details["hypotheses"] == ["This example is bug.", "This example is docs.", "This example is a feature request."]
    valid = _splits()[1]
    assert details["rule"] == choose_rule(method.scores(valid.texts, "valid"), valid.labels).rule.as_dict()
    assert prediction.shape == (20, 3)

    monkeypatch.setattr(harness_zeroshot.embedding, "embedding_scores", not_cached)
    again, prediction_again = _fit({}, minilm_cache, descriptions)
    assert again.details()["scores"] == {"valid": "cache", "test": "cache"}
    np.testing.assert_array_equal(prediction_again, prediction)
    with pytest.raises(ScoresNotCached):  # other hypotheses, other scores: never a stale cache entry
        _fit({"use_descriptions": False}, minilm_cache, descriptions)


def test_unknown_description_tag_is_an_error():
    with pytest.raises(ValueError, match=r"\['bgu'\], which are not tags"):
        hypotheses_for(TINY_TAGS, "This example is {}.", {"bgu": "a bug"})


# ---------------------------------------------------------------- the decision rule

def test_top_1_wins_when_the_best_tag_is_always_right():
    labels = np.eye(3, dtype=np.uint8)[[0, 1, 2, 0, 1, 2]]
    # the right tag always leads its row by 0.05, but rows sit at different levels: no threshold separates
    scores = np.linspace(0.3, 0.9, 6)[:, None] - 0.05 * (1 - labels)
    choice = choose_rule(scores, labels)
    assert choice.rule == DecisionRule("top_k", 1)
    assert choice.valid_f1 == pytest.approx(1.0)
    assert choice.best_threshold[1] < 1.0


def test_threshold_wins_when_tag_counts_vary():
    labels = np.array([[1, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 1]], dtype=np.uint8)
    scores = np.where(labels == 1, 0.62, 0.30) + np.array([[0.0, 0.01, 0.02]])
    choice = choose_rule(scores, labels)
    # the lowest threshold above every negative score (0.32) that keeps every positive one (>= 0.62)
    assert choice.rule == DecisionRule("threshold", 0.33)
    assert choice.rule.as_dict() == {"kind": "threshold", "threshold": 0.33}
    assert choice.valid_f1 == pytest.approx(1.0)
    assert choice.best_top_k[1] < 1.0


def test_macro_selection_can_differ_from_micro():
    # frequent tag 0 scores 0.6 where present; rare tag 1 scores 0.5 where present and 0.55 on
    # six untagged rows. Micro F1 drops the rare tag (threshold 0.56); macro F1 keeps it.
    labels = np.array([[1, 0]] * 10 + [[0, 1]] * 2 + [[0, 0]] * 6, dtype=np.uint8)
    scores = np.array([[0.6, 0.1]] * 10 + [[0.1, 0.5]] * 2 + [[0.1, 0.55]] * 6)
    micro, macro = choose_rule(scores, labels, "micro"), choose_rule(scores, labels, "macro")
    assert micro.rule == DecisionRule("threshold", 0.56) and micro.valid_f1 == pytest.approx(20 / 22)
    # top-1 and every threshold in (0.1, 0.5] tie at macro F1 0.7; the earlier candidate wins
    assert macro.rule == DecisionRule("top_k", 1) and macro.valid_f1 == pytest.approx(0.7)
    assert macro.best_threshold == (DecisionRule("threshold", 0.11), pytest.approx(0.7))


def test_top_k_ties_go_to_the_first_tag():
    assert DecisionRule("top_k", 2).apply(np.array([[0.5, 0.5, 0.5]])).tolist() == [[1, 1, 0]]


# ---------------------------------------------------------------- registration and parameters

def test_registered_label_free_with_presets(harness_pm):
    method_class = harness_pm.registry.methods["zeroshot"]
    assert method_class is ZeroShot and not method_class.uses_labels
    book = build_params(ZeroShot, "book", {})
    assert (book.backend, book.model, book.template) == ("nli", "facebook/bart-large-mnli", "This example is {}.")
    default = build_params(ZeroShot, "default", {})
    assert (default.backend, default.model) == ("embedding", MINILM)


def test_template_without_a_slot_is_refused():
    with pytest.raises(ParamError, match=r"zeroshot\.template: .*needs one '\{\}' where the tag goes"):
        build_params(ZeroShot, "default", {"template": "This example is a tag."})


class TestZeroShotContract(MethodContract):
    """The contract every method passes, with the default preset (embedding zero-shot, real MiniLM)."""

    method_class = ZeroShot
    other_params = {"template": "This issue is about {}."}


def test_center_calibration_uses_valid_texts_not_labels(tmp_path):
    """A tag whose hypothesis is close to every text wins everywhere raw; centering fixes it."""
    from harness.methods import FitContext, LabeledTexts
    from harness_zeroshot.method import ZeroShot, ZeroShotParams

    tags = ["a", "b"]
    valid_scores = np.array([[0.9, 0.2], [0.8, 0.4], [0.85, 0.1], [0.7, 0.5]], dtype=np.float32)
    labels = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.uint8)
    context = FitContext(seed=0, tags=tags, dataset="d", fingerprint="f", cache_dir=tmp_path)
    results = {}
    for calibrate in ("none", "center"):
        method = ZeroShot(ZeroShotParams(calibrate=calibrate))
        method.scores = lambda texts, split: valid_scores[: len(texts)]
        texts = ["t"] * 4
        method.fit(LabeledTexts([], np.zeros((0, 2), np.uint8), tags), LabeledTexts(texts, labels, tags), [], context)
        results[calibrate] = method.predict(texts)
        shuffled = ZeroShot(ZeroShotParams(calibrate=calibrate))
        shuffled.scores = method.scores
        shuffled.fit(LabeledTexts([], np.zeros((0, 2), np.uint8), tags), LabeledTexts(texts, labels[::-1], tags), [], context)
        np.testing.assert_allclose(shuffled.offset, method.offset)  # labels do not move the offset
    assert results["center"].tolist() == labels.tolist()
    assert results["none"].tolist() != labels.tolist()
