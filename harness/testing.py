"""Pytest support for harness and plugin authors (loaded through the ``pytest11`` entry point).

Fixtures: ``harness_pm`` (fresh plugin manager, no autoload), ``tiny_data`` (train, valid,
test of a small multi-label set), ``fit_context``, ``tiny_settings`` (the same kind of data
written to disk as a dataset named ``tiny``, for runs through the real runner).

``make_plugin_manager`` (from harness.plugins): a plugin's tests build their own manager with it.

``MethodContract``: the test suite every method should pass, whether it gives 0/1 tags
(``predict``), scores (``predict_scores``) or both. Subclass it in a test module::

    class TestMyMethod(MethodContract):
        method_class = MyMethod
        params = {"epochs": 1}          # small, fast settings for the tests
        other_params = {"epochs": 2}    # overrides giving another valid setting: another cell key
        min_micro_f1 = 0.5              # optional: the tiny set is easy to learn

Parameters that need a file made at test time (a tiny model) come from overriding the
class-scoped fixture ``contract_params``.

Heavy modules (the runner, pandas, scikit-learn) are imported inside the tests, so loading
this plugin keeps every pytest start fast.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import pytest

from harness.hookspecs import hookimpl
from harness.methods import (
    FitContext, LabeledTexts, Method, MethodParams, has_own_predict, has_save, has_scores, params_hash,
    validate_prediction, validate_scores,
)
from harness.plugins import HarnessPluginManager, make_plugin_manager

TINY_TAGS = ["bug", "docs", "feature"]
_WORDS = {
    "bug": ["crash", "error", "traceback", "fails", "broken"],
    "docs": ["readme", "typo", "documentation", "example", "docstring"],
    "feature": ["support", "add", "option", "request", "new"],
}


@contextlib.contextmanager
def busy_loop() -> Iterator[None]:
    """Another process busy-loops on one core meanwhile, as another program on a user's machine
    does (for tests and benchmarks of how torch's threads behave on a loaded machine)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


def tiny_multilabel(n: int = 60, seed: int = 0) -> LabeledTexts:
    """A small multi-label set whose tags are learnable from their words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], np.zeros((n, len(TINY_TAGS)), dtype=np.uint8)
    for i in range(n):
        chosen = [j for j in range(len(TINY_TAGS)) if rng.random() < 0.4] or [int(rng.integers(len(TINY_TAGS)))]
        words = ["the", "issue", "with", "dataset"]
        for j in chosen:
            labels[i, j] = 1
            words += list(rng.choice(_WORDS[TINY_TAGS[j]], size=3))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return LabeledTexts(texts, labels, list(TINY_TAGS))


def save_tiny_bert_tokenizer(folder: Path, texts: list[str], max_length: int = 64) -> int:
    """Train a lower-casing word-level BERT-style tokenizer on ``texts`` and save it to ``folder``
    (for tiny models built inside tests). Returns the vocabulary size."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=max_length,
    ).save_pretrained(folder)
    return tokenizer.get_vocab_size()


def save_tiny_sentence_transformer(folder: Path, texts: list[str], seed: int = 0) -> Path:
    """Build a 2-layer BERT with random weights (word-level tokenizer trained on ``texts``) plus
    mean pooling, and save it to ``folder`` as a sentence-transformers model. Returns ``folder``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel

    bert = Path(folder) / "bert"
    vocab_size = save_tiny_bert_tokenizer(bert, texts)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(bert)
    transformer = Transformer(str(bert), max_seq_length=64)
    SentenceTransformer(modules=[transformer, Pooling(32, pooling_mode="mean")], device="cpu").save(str(folder))
    return Path(folder)


@pytest.fixture
def harness_pm() -> HarnessPluginManager:
    """A fresh plugin manager with the built-ins and no entry-point autoload."""
    return make_plugin_manager(autoload=False)


def tiny_splits() -> tuple[LabeledTexts, LabeledTexts, LabeledTexts]:
    """(train, valid, test) of the tiny multi-label set: 50, 20 and 20 texts."""
    data = tiny_multilabel(90)
    parts = [slice(0, 50), slice(50, 70), slice(70, 90)]
    return tuple(LabeledTexts(data.texts[p], data.labels[p], data.tags) for p in parts)  # type: ignore[return-value]


@pytest.fixture
def tiny_data() -> tuple[LabeledTexts, LabeledTexts, LabeledTexts]:
    """(train, valid, test) of the tiny multi-label set."""
    return tiny_splits()


@pytest.fixture
def fit_context(tmp_path) -> FitContext:
    return FitContext(seed=0, tags=list(TINY_TAGS), dataset="tiny", fingerprint="tiny", cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------- the tiny set as a dataset on disk

TINY_DATASET = "tiny"


def write_tiny_dataset(folder: Path, n: int = 120, n_unlabeled: int = 20, seed: int = 0) -> tuple[Path, Path]:
    """Write the tiny set as GitHub-issue-shaped JSONL plus its dataset config.

    Returns ``(datasets_cfg_dir, data_dir)`` to pass as ``--datasets-cfg`` and ``--data-dir``
    (or ``Settings.datasets_cfg_dirs`` / ``Settings.data_dirs``). Slices are 8, 16 and all.
    """
    data = tiny_multilabel(n, seed)
    rng = np.random.default_rng(seed + 1)
    rows = [
        {"title": f"issue {i}", "body": text, "labels": [t for t, on in zip(data.tags, row) if on]}
        for i, (text, row) in enumerate(zip(data.texts, data.labels))
    ]
    filler = ["the", "issue", "with", "dataset", "question", "thanks", "hello"]
    rows += [
        {"title": f"unlabeled {i}", "body": " ".join(rng.choice(filler, size=6)), "labels": []}
        for i in range(n_unlabeled)
    ]
    cfg_dir, data_dir = folder / "datasets_cfg", folder / "data"
    cfg_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / f"{TINY_DATASET}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    config = {
        "name": TINY_DATASET,
        "description": "generated by harness.testing.write_tiny_dataset",
        "source": {"file": f"{TINY_DATASET}.jsonl"},
        "text": "{title}\n\n{body}",
        "labels": {"field": "labels"},
        "slices": [8, 16, "all"],
    }
    (cfg_dir / f"{TINY_DATASET}.yaml").write_text(json.dumps(config, indent=1), encoding="utf-8")  # JSON is YAML
    return cfg_dir, data_dir


def tiny_run_settings(folder: Path):
    """``harness.datasets.Settings`` for the tiny dataset written under ``folder``."""
    from harness.datasets import Settings

    cfg_dir, data_dir = write_tiny_dataset(folder)
    return Settings(
        results_dir=str(folder / "results"), cache_dir=str(folder / "cache"),
        data_dirs=(str(data_dir),), datasets_cfg_dirs=(str(cfg_dir),),
    )


@pytest.fixture
def tiny_settings(tmp_path):
    """Runner settings for the dataset ``tiny`` written under a fresh folder."""
    return tiny_run_settings(tmp_path)


# ---------------------------------------------------------------- the method contract

METHOD_NAME_PATTERN = r"[A-Za-z][A-Za-z0-9_\-]*"  # no '.' (--set METHOD.PARAM) and no '@' (variants)


class _SingleMethodPlugin:
    """A plugin object that registers one method class (for a plugin manager built in a test)."""

    def __init__(self, method_class: type[Method]) -> None:
        self.method_class = method_class

    @hookimpl
    def register_methods(self, register) -> None:
        register(self.method_class)


def single_method_pm(method_class: type[Method]) -> HarnessPluginManager:
    """A plugin manager, without built-ins or autoload, that knows only ``method_class``."""
    pm = make_plugin_manager(autoload=False, builtins=False)
    pm.register_module(_SingleMethodPlugin(method_class), name=f"contract-{method_class.name}")
    return pm


class MethodContract:
    """What every method must do. Subclass it as ``class TestX(MethodContract)`` and set
    ``method_class``, ``params`` (fast settings), ``other_params`` (overrides on top of
    ``params`` that make another valid setting) and, if the method should learn the tiny set,
    ``min_micro_f1``. Parameters that need files built at test time (a tiny model) come from
    overriding the class-scoped fixture ``contract_params`` instead of setting ``params``."""

    method_class: ClassVar[type[Method]]
    params: ClassVar[dict[str, Any]] = {}
    other_params: ClassVar[dict[str, Any] | None] = None
    min_micro_f1: ClassVar[float | None] = None
    seed: ClassVar[int] = 0

    # ------------------------------------------------ helpers a subclass may reuse

    def build(self, params: dict[str, Any]) -> Method:
        """A fresh instance with the default preset plus ``params``."""
        from harness.params import DEFAULT_PRESET, build_params

        return self.method_class(build_params(self.method_class, DEFAULT_PRESET, dict(params)))

    def fit(self, params: dict[str, Any], train: LabeledTexts, valid: LabeledTexts, cache_dir: Path) -> Method:
        """Seed and fit as the runner does; label-free methods get an empty train split."""
        from harness.cell import seed_everything

        method = self.build(params)
        if not self.method_class.uses_labels:
            train = LabeledTexts([], np.zeros((0, len(train.tags)), dtype=np.uint8), list(train.tags))
        seed_everything(self.seed)
        method.fit(train, valid, [], self.fit_context(list(train.tags), cache_dir))
        return method

    def fit_context(self, tags: list[str], cache_dir: Path) -> FitContext:
        """The context ``fit`` hands the method (and ``load`` gets back)."""
        return FitContext(seed=self.seed, tags=list(tags), dataset=TINY_DATASET, fingerprint="tiny",
                          cache_dir=cache_dir, slice_name="all")

    def cell_spec(self, settings, params: dict[str, Any], slice_size: int | str = 16):
        """The runner's cell for this method on the tiny dataset (``--set`` carries ``params``)."""
        from harness.plan import plan_run

        name = self.method_class.name
        overrides = [f"{name}.{key}={json.dumps(value)}" for key, value in params.items()]  # JSON is YAML
        plan = plan_run(single_method_pm(self.method_class), settings, [name], [TINY_DATASET], [self.seed],
                        [slice_size], overrides=overrides)
        (spec,) = plan.cells
        return spec

    # ------------------------------------------------ fixtures shared by the tests of one class

    @pytest.fixture(scope="class")
    def contract_params(self) -> dict[str, Any]:
        """The parameters every contract test uses; override to build them at test time."""
        return dict(self.params)

    @pytest.fixture(scope="class")
    def contract_data(self) -> tuple[LabeledTexts, LabeledTexts, LabeledTexts]:
        return tiny_splits()

    @pytest.fixture(scope="class")
    def fitted(self, contract_params, contract_data, tmp_path_factory) -> tuple[Method, np.ndarray | None]:
        """The method fitted once on the tiny train split, and its raw prediction on test (None
        for a method that gives scores only)."""
        train, valid, test = contract_data
        method = self.fit(contract_params, train, valid, tmp_path_factory.mktemp("contract-cache"))
        return method, method.predict(test.texts) if has_own_predict(method) else None

    def outputs(self, method: Method, texts: list[str], n_tags: int) -> dict[str, np.ndarray]:
        """What the method gives for ``texts``: its checked own prediction and/or scores."""
        given = {}
        if has_own_predict(method):
            given["predict"] = validate_prediction(self.method_class.name, method.predict(texts), len(texts), n_tags)
        if has_scores(method):
            given["scores"] = validate_scores(self.method_class.name, method.predict_scores(texts), len(texts), n_tags)
        return given

    @pytest.fixture(scope="class")
    def contract_settings(self, tmp_path_factory):
        return tiny_run_settings(tmp_path_factory.mktemp("contract-run"))

    # ------------------------------------------------ declaration and parameters

    def test_declares_name_version_and_params(self):
        cls = self.method_class
        assert isinstance(getattr(cls, "name", None), str) and re.fullmatch(METHOD_NAME_PATTERN, cls.name), (
            f"{cls.__name__}.name must match {METHOD_NAME_PATTERN}, got {getattr(cls, 'name', None)!r}"
        )
        assert isinstance(cls.version, str) and cls.version, f"{cls.__name__}.version must be a non-empty string"
        assert isinstance(cls.uses_labels, bool)
        assert issubclass(cls.Params, MethodParams), f"{cls.__name__}.Params must subclass harness.methods.MethodParams"

    def test_every_preset_builds_valid_params(self):
        from harness.params import build_params

        for preset in self.method_class.presets:
            build_params(self.method_class, preset, {})  # raises ParamError naming the bad value

    def test_unknown_parameter_is_rejected(self):
        from harness.params import DEFAULT_PRESET, ParamError, build_params

        with pytest.raises(ParamError, match="no_such_parameter"):
            build_params(self.method_class, DEFAULT_PRESET, {"no_such_parameter": 1})

    def test_params_survive_a_json_round_trip(self, contract_params):
        # cell specs carry parameters as JSON to worker processes and into the records
        params = self.build(contract_params).params
        dumped = json.loads(json.dumps(params.model_dump(mode="json")))
        again = self.method_class.Params.model_validate(dumped)
        assert again == params
        assert params_hash(again) == params_hash(params)

    def test_other_params_change_the_cell_key(self, contract_params, contract_settings):
        if not self.method_class.Params.model_fields:
            pytest.skip(f"{self.method_class.__name__} has no parameters")
        assert self.other_params is not None, "set other_params: overrides of params that make another valid setting"
        other = {**contract_params, **self.other_params}
        assert params_hash(self.build(contract_params).params) != params_hash(self.build(other).params), (
            "other_params must change at least one parameter"
        )
        first = self.cell_spec(contract_settings, contract_params)
        second = self.cell_spec(contract_settings, other)
        assert first.key["params_hash"] != second.key["params_hash"]
        assert first.key_hash != second.key_hash
        assert first.path() != second.path(), "two parameter settings must not share a record file"

    # ------------------------------------------------ fit and predict

    def test_gives_predictions_or_scores(self, fitted):
        method, _ = fitted
        assert has_own_predict(method) or has_scores(method), "define predict(texts), predict_scores(texts) or both"

    def test_predicts_a_0_1_matrix_of_the_right_shape(self, fitted, contract_data):
        _, raw = fitted
        if raw is None:
            pytest.skip("the method gives scores only")
        test = contract_data[2]
        prediction = validate_prediction(self.method_class.name, raw, len(test), len(test.tags))
        assert prediction.shape == (len(test), len(test.tags))

    def test_scores_are_a_finite_matrix_of_the_right_shape(self, fitted, contract_data):
        method, _ = fitted
        if not has_scores(method):
            pytest.skip("the method gives no scores")
        test = contract_data[2]
        validate_scores(self.method_class.name, method.predict_scores(test.texts), len(test), len(test.tags))

    def test_predicts_a_single_text(self, fitted, contract_data):
        method, _ = fitted
        test = contract_data[2]
        assert self.outputs(method, test.texts[:1], len(test.tags))

    def test_details_are_json_serialisable(self, fitted):
        method, _ = fitted
        details = method.details()
        assert isinstance(details, dict)
        json.dumps(details)  # stored in the cell record

    def test_same_seed_gives_the_same_predictions(self, fitted, contract_params, contract_data, tmp_path):
        train, valid, test = contract_data
        first = self.outputs(fitted[0], test.texts, len(test.tags))
        second = self.outputs(self.fit(contract_params, train, valid, tmp_path / "cache"), test.texts, len(test.tags))
        for output in first:
            np.testing.assert_array_equal(first[output], second[output], err_msg=output)

    def test_saved_then_loaded_predicts_and_scores_the_same(self, contract_params, contract_data, tmp_path):
        # harness train saves the fitted method and harness tag loads it: the tags must be the measured ones
        if not has_save(self.method_class):
            pytest.skip("the method defines no save and load (harness train cannot keep it)")
        train, valid, test = contract_data
        cache_dir = tmp_path / "cache"
        method = self.fit(contract_params, train, valid, cache_dir)
        before = self.outputs(method, test.texts, len(test.tags))
        folder = tmp_path / "saved"
        folder.mkdir()
        method.save(folder)
        assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.pickle")), "save must write no pickles"
        loaded = self.method_class.load(folder, method.params, self.fit_context(list(test.tags), cache_dir))
        assert isinstance(loaded, self.method_class)
        after = self.outputs(loaded, test.texts, len(test.tags))
        assert sorted(after) == sorted(before)
        for output in before:
            np.testing.assert_array_equal(before[output], after[output], err_msg=output)

    def test_copes_with_a_tag_that_has_no_positive_example(self, contract_params, contract_data, tmp_path):
        # small slices (8 issues) often lack every example of some tag
        if not self.method_class.uses_labels:
            pytest.skip("the method uses no training labels")
        train, valid, test = contract_data
        labels = train.labels.copy()
        labels[:, 0] = 0
        method = self.fit(contract_params, LabeledTexts(train.texts, labels, train.tags), valid, tmp_path / "cache")
        assert self.outputs(method, test.texts, len(test.tags))

    def test_learns_the_tiny_set(self, fitted, contract_data):
        if self.min_micro_f1 is None:
            pytest.skip("min_micro_f1 not set for this method")
        from harness.evaluation import evaluate_method

        _, valid, test = contract_data
        evaluation = evaluate_method(fitted[0], self.method_class.name, valid, test, "multilabel")
        micro = evaluation.rule_metrics[evaluation.rule]["micro_f1"]
        assert micro >= self.min_micro_f1, (
            f"micro F1 {micro:.3f} under rule {evaluation.rule!r} on the tiny set, expected >= {self.min_micro_f1}"
        )

    # ------------------------------------------------ through the real runner

    def test_runs_as_a_cell_of_the_runner(self, contract_params, contract_settings):
        from harness.cell import run_cell

        spec = self.cell_spec(contract_settings, contract_params)
        result = run_cell(spec, pm=single_method_pm(self.method_class))
        record = result.record
        assert record.status == "ok", record.traceback
        params = self.build(contract_params).params
        assert record.method.params == params.model_dump(mode="json")
        assert record.key["params_hash"] == params_hash(params)
        assert 0.0 <= record.metrics.micro_f1 <= 1.0
        assert record.rule in record.rule_metrics
        json.dumps(record.to_json())  # the record is written as JSON
        # its arrays come back with the record, which names them with their checksum
        from harness.predictions import decode_predictions, predictions_entry, predictions_path

        assert record.predictions.model_dump() == predictions_entry(predictions_path(spec.path()), result.predictions)
        arrays = decode_predictions(result.predictions, record.predictions.file)
        assert arrays["test_prediction"].shape == arrays["test_labels"].shape

    def test_errors_become_failed_cells(self, contract_params, contract_settings):
        from harness.cell import run_cell

        base = self.method_class

        class FitFails(base):  # type: ignore[misc, valid-type]
            def fit(self, *args, **kwargs):
                raise RuntimeError("contract: fit failed on purpose")

        class PredictsTooFewTags(base):  # type: ignore[misc, valid-type]
            def predict(self, texts):
                return np.asarray(super().predict(texts))[:, :-1]

        class ScoresTooFewTags(base):  # type: ignore[misc, valid-type]
            def predict_scores(self, texts):
                return np.asarray(super().predict_scores(texts))[:, :-1]

        method = self.build(contract_params)
        cases = [(FitFails, "fit failed on purpose")]
        cases += [(PredictsTooFewTags, "predicted shape")] if has_own_predict(method) else []
        # a predict built on predict_scores may be the first to meet the short scores
        cases += [(ScoresTooFewTags, "shape")] if has_scores(method) else []
        spec = self.cell_spec(contract_settings, contract_params)
        for broken, message in cases:
            record = run_cell(spec, pm=single_method_pm(broken)).record
            assert record.status == "failed"
            assert message in record.error
            json.dumps(record.to_json())
