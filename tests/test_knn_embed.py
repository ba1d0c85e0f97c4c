"""knn_embed: the (k, m) grid against a brute-force loop, real MiniLM on mirror issues, the
shared embedding cache, the book's mean-pooling path (tiny GPT-2) and the edge cases."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from harness.config import load_config
from harness.data import prepare
from harness.embeddings import EmbeddingCache, EncoderSpec
from harness.methods import FitContext, LabeledTexts
from harness.params import ParamError, build_params
from harness.testing import MethodContract
from harness_knn_embed import KnnEmbed, KnnEmbedParams
from harness_knn_embed.grid import cumulative_votes, grid_scores, vote_predictions
from harness_knn_embed.search import ExactIndex


def _context(cache_dir: Path, tags: list[str]) -> FitContext:
    return FitContext(seed=0, tags=list(tags), dataset="test", fingerprint="test", cache_dir=cache_dir)


def _subset(data: LabeledTexts, rows) -> LabeledTexts:
    rows = list(rows)
    return LabeledTexts([data.texts[i] for i in rows], data.labels[rows], data.tags)


# ---------------------------------------------------------------- plugin

def test_plugin_registers_without_heavy_imports(harness_pm):
    assert harness_pm.registry.methods["knn_embed"] is KnnEmbed
    book = build_params(KnnEmbed, "book", {})
    assert (book.model, book.pooling, book.max_length, book.batch_size) == ("miguelvictor/python-gpt2-large", "mean", 128, 16)
    code = "import sys, harness_knn_embed; print([m for m in ('torch', 'faiss', 'transformers', 'sentence_transformers') if m in sys.modules])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("override", "named"),
    [({"metric": "cosine"}, "knn_embed.metric"), ({"k_max": 0}, "knn_embed.k_max"),
     ({"select_by": "weighted"}, "knn_embed.select_by")],
)
def test_bad_parameters_name_the_parameter(override, named):
    with pytest.raises(ParamError, match=named):
        build_params(KnnEmbed, "default", override)


class TestKnnEmbedContract(MethodContract):
    """The contract every method passes (harness.testing), with real MiniLM on the tiny set."""

    method_class = KnnEmbed
    other_params = {"metric": "ip", "k_max": 8}
    min_micro_f1 = 0.6


# ---------------------------------------------------------------- grid and search on random vectors

def _random_problem(seed: int, n_train: int = 40, n_valid: int = 30, dim: int = 8, n_tags: int = 5):
    rng = np.random.default_rng(seed)
    train_vectors = rng.normal(size=(n_train, dim)).astype(np.float32)
    valid_vectors = rng.normal(size=(n_valid, dim)).astype(np.float32)
    train_labels = (rng.random((n_train, n_tags)) < 0.3).astype(np.uint8)
    train_labels[:, -1] = 0  # a tag absent from the slice
    valid_labels = (rng.random((n_valid, n_tags)) < 0.3).astype(np.uint8)
    return train_vectors, valid_vectors, train_labels, valid_labels


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("seed", [0, 1])
def test_grid_matches_one_search_per_pair(metric, seed):
    train_vectors, valid_vectors, train_labels, valid_labels = _random_problem(seed)
    index = ExactIndex(train_vectors, metric=metric)
    k_max = 16
    fast = grid_scores(cumulative_votes(train_labels[index.nearest(valid_vectors, k_max)]), valid_labels)

    micro = np.full((k_max, k_max), np.nan)
    macro = np.full((k_max, k_max), np.nan)
    for k in range(1, k_max + 1):
        for m in range(1, k + 1):  # the book's way: a fresh search and a full scoring per pair
            votes = train_labels[index.nearest(valid_vectors, k)].sum(axis=1)
            predicted = (votes >= m).astype(np.uint8)
            micro[k - 1, m - 1] = f1_score(valid_labels, predicted, average="micro", zero_division=0)
            macro[k - 1, m - 1] = f1_score(valid_labels, predicted, average="macro", zero_division=0)
    np.testing.assert_allclose(fast.micro, micro, rtol=0, atol=1e-12)
    np.testing.assert_allclose(fast.macro, macro, rtol=0, atol=1e-12)
    for average, table in (("micro", micro), ("macro", macro)):
        best_k, best_m = np.unravel_index(np.nanargmax(table), table.shape)  # first maximum, row-major
        assert fast.best(average) == (best_k + 1, best_m + 1)


def test_grid_ties_go_to_the_smallest_k_then_m():
    labels = np.ones((4, 1), dtype=np.uint8)  # every neighbour carries the only tag: F1 = 1 everywhere
    votes = cumulative_votes(np.ones((3, 4, 1), dtype=np.uint8))
    scores = grid_scores(votes, labels[:3])
    assert np.nanmin(scores.micro) == 1.0 and scores.best("micro") == (1, 1)
    assert np.isnan(scores.micro[0, 1])  # m > k is not a candidate
    np.testing.assert_array_equal(vote_predictions(votes[:, 1, :], 2), np.ones((3, 1)))


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_exact_index_returns_the_true_nearest_rows(metric):
    train_vectors, valid_vectors, _, _ = _random_problem(3)
    found = ExactIndex(train_vectors, metric=metric).nearest(valid_vectors, 5)
    if metric == "l2":
        distance = ((valid_vectors[:, None, :] - train_vectors[None, :, :]) ** 2).sum(-1)
    else:  # cosine
        unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
        distance = -unit(valid_vectors) @ unit(train_vectors).T
    np.testing.assert_array_equal(found, np.argsort(distance, axis=1)[:, :5])
    with pytest.raises(ValueError, match="k=41"):
        ExactIndex(train_vectors, metric=metric).nearest(valid_vectors, 41)


# ---------------------------------------------------------------- real MiniLM on mirror issues

@pytest.fixture(scope="module")
def mirror_sample(tmp_path_factory):
    """Single-tag issues of four frequent tags from the real mirror: train 40, valid 32, test 32."""
    from conftest import MIRROR, single_tag_issues

    if not MIRROR.exists():
        pytest.skip(f"data mirror not found at {MIRROR}")
    dataset = prepare(load_config("github-issues-datasets"), [MIRROR.parent], tmp_path_factory.mktemp("prepared"))

    samples = (single_tag_issues(dataset, split, per_tag) for split, per_tag in (("train", 10), ("valid", 8), ("test", 8)))
    return (*samples, tmp_path_factory.mktemp("embeddings"))


@pytest.fixture(scope="module")
def fitted_on_mirror(mirror_sample):
    train, valid, test, cache_dir = mirror_sample
    method = KnnEmbed()
    method.fit(train, valid, [], _context(cache_dir, train.tags))
    return method, method.predict(test.texts)


def test_minilm_neighbours_carry_the_tags(mirror_sample, fitted_on_mirror):
    train, valid, test, cache_dir = mirror_sample
    method, predicted = fitted_on_mirror
    details = method.details()
    assert details["texts_encoded"] == len(train) + len(valid) + len(test)
    assert 1 <= details["m"] <= details["k"] <= details["k_searched"] == 16
    # the grid's valid score is the score of the prediction path with the chosen (k, m)
    assert details["valid_micro_f1"] == pytest.approx(f1_score(valid.labels, method.predict(valid.texts), average="micro", zero_division=0))
    real = f1_score(test.labels, predicted, average="micro", zero_division=0)
    # control: the same embeddings with the training tags shuffled across issues
    shuffled = LabeledTexts(train.texts, train.labels[np.random.default_rng(0).permutation(len(train))], train.tags)
    control = KnnEmbed()
    control.fit(shuffled, valid, [], _context(cache_dir, train.tags))
    chance = f1_score(test.labels, control.predict(test.texts), average="micro", zero_division=0)
    assert real > 0.6 and real > chance + 0.2, (real, chance)


def test_second_fit_reads_every_vector_from_the_cache(mirror_sample, fitted_on_mirror):
    train, valid, test, cache_dir = mirror_sample
    first, first_prediction = fitted_on_mirror
    again = KnnEmbed()
    again.fit(train, valid, [], _context(cache_dir, train.tags))
    prediction = again.predict(test.texts)
    assert again.cache.forward_passes == 0 and again.details()["texts_encoded"] == 0
    np.testing.assert_array_equal(prediction, first_prediction)
    assert (again.details()["k"], again.details()["m"]) == (first.details()["k"], first.details()["m"])
    # what the plugin read is what the core cache holds for MiniLM's setting
    vectors = EmbeddingCache(cache_dir, EncoderSpec()).embed(test.texts[:3])
    assert vectors.shape == (3, 384)


# ---------------------------------------------------------------- edge cases (MiniLM on tiny texts)

def test_slice_smaller_than_k_caps_k(tiny_data, fit_context):
    train, valid, test = tiny_data
    method = KnnEmbed()
    method.fit(_subset(train, range(3)), valid, [], fit_context)
    assert method.details()["k_searched"] == 3 and method.details()["k"] <= 3
    assert method.predict(test.texts).shape == (len(test), len(test.tags))


def test_tag_absent_from_the_slice_is_never_predicted(tiny_data, fit_context):
    train, valid, test = tiny_data
    train = LabeledTexts(train.texts, train.labels.copy(), train.tags)
    train.labels[:, 1] = 0
    method = KnnEmbed()
    method.fit(train, valid, [], fit_context)
    predicted = method.predict(test.texts + valid.texts)
    assert predicted[:, 1].sum() == 0 and predicted[:, [0, 2]].sum() > 0


def test_empty_texts_are_embedded_and_tagged(tiny_data, fit_context):
    train, valid, test = tiny_data
    train = LabeledTexts(train.texts[:-1] + [""], train.labels, train.tags)
    method = KnnEmbed(KnnEmbedParams(metric="ip"))
    method.fit(train, valid, [], fit_context)
    predicted = method.predict(["", "", test.texts[0]])
    assert predicted.shape == (3, len(test.tags))
    np.testing.assert_array_equal(predicted[0], predicted[1])


def test_empty_train_or_valid_is_a_clear_error(tiny_data, fit_context):
    train, valid, _ = tiny_data
    with pytest.raises(ValueError, match="training slice is empty"):
        KnnEmbed().fit(_subset(train, []), valid, [], fit_context)
    with pytest.raises(ValueError, match="valid split, which is empty"):
        KnnEmbed().fit(train, _subset(valid, []), [], fit_context)


# ---------------------------------------------------------------- the book's path: mean pooling over a GPT-2 AutoModel

@pytest.fixture
def tiny_gpt2(tmp_path, tiny_data) -> Path:
    """A 1-layer GPT-2 with random weights and a word-level tokenizer that has no pad token."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    texts = [t for part in tiny_data for t in part.texts]
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=["[UNK]", "<|endoftext|>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", eos_token="<|endoftext|>")
    path = tmp_path / "tiny-gpt2"
    fast.save_pretrained(path)
    eos = fast.eos_token_id
    config = GPT2Config(vocab_size=fast.vocab_size, n_positions=32, n_embd=16, n_layer=1, n_head=2,
                        bos_token_id=eos, eos_token_id=eos)
    GPT2Model(config).save_pretrained(path)
    return path


def test_mean_pooling_gpt2_with_empty_texts(tiny_gpt2, tiny_data, fit_context):
    train, valid, test = tiny_data
    params = KnnEmbedParams(model=str(tiny_gpt2), pooling="mean", max_length=16, batch_size=2)
    method = KnnEmbed(params)
    method.fit(train, valid, [], fit_context)
    # two empty texts sort last and form a batch of their own: GPT-2 adds no token to pool
    predicted = method.predict(test.texts[:3] + ["", ""])
    assert predicted.shape == (5, len(test.tags))
    vectors = method.cache.embed(["", test.texts[0]])
    assert not vectors[0].any() and vectors[1].any()
    assert method.cache.folder != EmbeddingCache(fit_context.cache_dir, EncoderSpec()).folder
