"""The linear baselines: tfidf_linear and embed_linear under the contract suite, their own rule,
the multiclass head, the shared embedding cache, and tfidf_linear at ``all`` on the mirror
against the published cell."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.methods import LabeledTexts
from harness.params import ParamError, build_params
from harness.rules import THRESHOLD_GRID
from harness.testing import MethodContract
from harness_linear import EmbedLinear, EmbedLinearParams, TfidfLinear, TfidfLinearParams

ROOT = Path(__file__).resolve().parents[1]


class TestTfidfLinearContract(MethodContract):
    method_class = TfidfLinear
    other_params = {"C": 1.0}
    min_micro_f1 = 0.8


class TestEmbedLinearContract(MethodContract):
    method_class = EmbedLinear
    other_params = {"C": 10.0}
    min_micro_f1 = 0.6


def _single_label(data: LabeledTexts) -> LabeledTexts:
    """The rows with exactly one tag: a multiclass split."""
    rows = [i for i, row in enumerate(data.labels) if row.sum() == 1]
    return LabeledTexts([data.texts[i] for i in rows], data.labels[rows], data.tags)


def test_plugin_registers_both_without_heavy_imports(harness_pm):
    assert harness_pm.registry.methods["tfidf_linear"] is TfidfLinear
    assert harness_pm.registry.methods["embed_linear"] is EmbedLinear
    assert build_params(EmbedLinear, "mpnet", {}).model == "sentence-transformers/all-mpnet-base-v2"
    code = ("import sys, harness_linear; "
            "print([m for m in ('sklearn', 'torch', 'sentence_transformers') if m in sys.modules])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


@pytest.mark.parametrize(("method", "override", "named"), [
    (TfidfLinear, {"features": "char"}, "tfidf_linear.features"),
    (TfidfLinear, {"threshold": 1.5}, "tfidf_linear.threshold"),
    (EmbedLinear, {"C": 0}, "embed_linear.C"),
    (EmbedLinear, {"class_weight": "auto"}, "embed_linear.class_weight"),
])
def test_bad_parameters_name_the_parameter(method, override, named):
    with pytest.raises(ParamError, match=named):
        build_params(method, "default", override)


@pytest.mark.parametrize("method_class", [TfidfLinear, EmbedLinear])
def test_the_own_threshold_comes_from_the_grid_on_valid_unless_fixed(method_class, tiny_data, fit_context):
    train, valid, test = tiny_data
    tuned = method_class()
    tuned.fit(train, valid, [], fit_context)
    details = tuned.details()
    assert details["threshold"] in THRESHOLD_GRID
    # the own rule is 'score > threshold' on the method's own scores, and valid F1 is that rule's
    scores = tuned.predict_scores(test.texts)
    np.testing.assert_array_equal(tuned.predict(test.texts), (scores > details["threshold"]).astype(np.uint8))
    strict = method_class(method_class.Params(threshold=0.99))
    strict.fit(train, valid, [], fit_context)
    assert strict.details()["threshold"] == 0.99
    assert strict.predict(test.texts).sum() < tuned.predict(test.texts).sum()


def test_character_ngrams_add_features_to_the_words(tiny_data, fit_context):
    train, valid, _ = tiny_data
    words, both = TfidfLinear(), TfidfLinear(TfidfLinearParams(features="word+char"))
    words.fit(train, valid, [], fit_context)
    both.fit(train, valid, [], fit_context)
    assert both.details()["features"] > words.details()["features"] > 10


@pytest.mark.parametrize("method_class", [TfidfLinear, EmbedLinear])
def test_a_multiclass_task_gets_one_tag_per_text_from_a_softmax(method_class, tiny_data, fit_context):
    train, valid, test = (_single_label(part) for part in tiny_data)
    method = method_class()
    method.fit(train, valid, [], dataclasses.replace(fit_context, task="multiclass"))
    scores = method.predict_scores(test.texts)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0)
    predicted = method.predict(test.texts)
    np.testing.assert_array_equal(predicted.sum(axis=1), 1)
    np.testing.assert_array_equal(predicted.argmax(axis=1), scores.argmax(axis=1))
    assert (predicted.argmax(axis=1) == test.labels.argmax(axis=1)).mean() > 0.6


def test_embed_linear_reads_the_vectors_knn_embed_cached(tiny_data, fit_context):
    from harness_knn_embed import KnnEmbed

    train, valid, test = tiny_data
    KnnEmbed().fit(train, valid, [], fit_context)
    probe = EmbedLinear(EmbedLinearParams())
    probe.fit(train, valid, [], fit_context)
    assert probe.details()["texts_encoded"] == 0  # the same encoder setting: one embedding pass for both
    probe.predict(test.texts)
    assert probe.cache.forward_passes == len(set(test.texts))


@pytest.mark.parametrize("method_class", [TfidfLinear, EmbedLinear])
def test_an_empty_slice_is_a_clear_error(method_class, tiny_data, fit_context):
    train, valid, _ = tiny_data
    empty = LabeledTexts([], np.zeros((0, len(train.tags)), dtype=np.uint8), train.tags)
    with pytest.raises(ValueError, match="training slice is empty"):
        method_class().fit(empty, valid, [], fit_context)


def test_tfidf_linear_at_all_on_the_mirror_reproduces_the_published_cell(tmp_path):
    """The published seed-0 cell at 'all' (micro F1 at least the example plugin's 0.814 there),
    computed again from the mirror: the same F1 and the same test predictions."""
    from conftest import MIRROR

    if not MIRROR.exists():
        pytest.skip(f"data mirror not found at {MIRROR}")
    (published,) = [json.loads(p.read_text()) for p in (ROOT / "results" / "cells" / "github-issues-datasets" / "tfidf_linear").glob("*.json")
                    if json.loads(p.read_text())["slice"]["name"] == "all" and json.loads(p.read_text())["seed"] == 0]
    assert published["metrics"]["micro_f1"] >= 0.814
    results = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "harness", "run", "--methods", "tfidf_linear", "--slices", "all",
                          "--data-dir", str(MIRROR.parent), "--results", str(results), "--cache-dir", str(tmp_path / "cache"),
                          "--quiet", "--no-report"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    (record,) = [json.loads(p.read_text()) for p in (results / "cells" / "github-issues-datasets" / "tfidf_linear").glob("*.json")]
    assert record["key"] == published["key"]
    assert record["metrics"] == published["metrics"]
