"""finetune and adapt_finetune on a tiny BERT built here (random weights, word-level tokenizer
trained on the test texts): these check the mechanics, never the quality of a real model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from harness.methods import FitContext, LabeledTexts
from harness.models import ModelResolutionError
from harness.testing import TINY_TAGS, MethodContract, busy_loop, save_tiny_bert_tokenizer, tiny_multilabel, tiny_splits
from harness_finetune import AdaptFineTune, FineTune

pytest.importorskip("transformers")

# Small, fast settings; the tests add "model": the tiny BERT's folder. Its random word embeddings
# must learn, unlike a pretrained model's (test_frozen_word_embeddings_stay_as_pretrained).
FAST = {"max_length": 32, "epochs": 5, "min_steps": 0, "learning_rate": 2e-3, "batch_size": 4, "tune_threshold": False,
        "precision": "fp32", "freeze_word_embeddings_up_to": 0}
FAST_DA = {**FAST, "da_epochs": 2, "da_batch_size": 16, "da_learning_rate": 1e-3, "da_max_length": 32,
           "da_max_texts": 200, "da_eval_texts": 8}


def unlabeled_texts(n: int = 120, seed: int = 1) -> list[str]:
    """Issue-like texts without labels, in the tiny set's vocabulary."""
    rng = np.random.default_rng(seed)
    words = ["the", "issue", "with", "dataset", "crash", "readme", "support", "error", "typo", "option"]
    return [" ".join(rng.choice(words, size=8)) for _ in range(n)]


def build_tiny_bert(folder: Path) -> None:
    """A 2-layer BERT without an MLM head (like the MiniLM checkpoint) and its tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    vocab_size = save_tiny_bert_tokenizer(folder, tiny_multilabel(200).texts + unlabeled_texts())
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny-bert")
    build_tiny_bert(folder)
    return str(folder)


def context(cache_dir: Path, slice_name: str = "all", seed: int = 0, progress=lambda message: None) -> FitContext:
    return FitContext(seed=seed, tags=list(TINY_TAGS), dataset="tiny", fingerprint="tiny", cache_dir=cache_dir,
                      slice_name=slice_name, progress=progress)


class TestFineTuneContract(MethodContract):
    method_class = FineTune
    other_params = {"epochs": 2}
    min_micro_f1 = 0.6

    @pytest.fixture(scope="class")
    def contract_params(self, tiny_bert):
        return {**FAST, "model": tiny_bert}

    def test_training_lowers_the_loss(self, fitted):
        method, _ = fitted
        losses = [row["train_loss"] for row in method.details()["epochs"]]
        assert len(losses) == FAST["epochs"]
        assert losses[-1] < losses[0]

    def test_details_record_the_epochs_and_stage_times(self, fitted):
        details = fitted[0].details()
        per_epoch = details["valid_micro_f1_per_evaluation"]
        assert len(per_epoch) == FAST["epochs"]
        assert details["best_epoch"] == int(np.argmax(per_epoch)) + 1  # first best on ties, as the Trainer keeps
        assert details["threshold"] == 0.5
        assert details["stage_s"]["fine_tune_s"] > 0 and "predict_s" in details["stage_s"]

    def test_predict_seconds_add_up_over_calls(self, fitted, monkeypatch):
        from types import SimpleNamespace

        import harness_finetune.methods

        method = fitted[0]
        stages = dict(method._stage_s)
        clock = iter(range(100))  # the plugin's clock ticks one second a reading: each call takes 1 s
        monkeypatch.setattr(harness_finetune.methods, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
        method._stage_s.pop("predict_s", None)
        try:
            for _ in range(3):  # as the cell: predict(test), predict_scores(valid), predict_scores(test)
                method.predict_scores(["the issue with dataset"])
            assert method.details()["stage_s"]["predict_s"] == 3.0
        finally:
            method._stage_s = stages


class TestAdaptFineTuneContract(MethodContract):
    method_class = AdaptFineTune
    other_params = {"da_epochs": 1}
    min_micro_f1 = 0.6

    @pytest.fixture(scope="class")
    def contract_params(self, tiny_bert):
        return {**FAST_DA, "model": tiny_bert}

    def fit(self, params, train, valid, cache_dir):
        # the contract passes no unlabeled texts; adaptation needs some
        from harness.cell import seed_everything

        method = self.build(params)
        seed_everything(self.seed)
        method.fit(train, valid, unlabeled_texts(), context(cache_dir, seed=self.seed))
        return method


def test_keeps_the_best_epoch_not_the_last(tiny_bert, tmp_path):
    # valid = the training texts with every label flipped: the better the fit to train, the
    # worse on valid, so the best valid epoch comes early and the last one is worse
    train, _, _ = tiny_splits()
    flipped = LabeledTexts(train.texts, 1 - train.labels, train.tags)
    method = FineTune(FineTune.Params(**{**FAST, "epochs": 4, "learning_rate": 5e-3}, model=tiny_bert))
    method.fit(train, flipped, [], context(tmp_path))
    details = method.details()
    per_epoch = details["valid_micro_f1_per_evaluation"]
    assert details["best_epoch"] < 4 and per_epoch[-1] < max(per_epoch)
    from sklearn.metrics import f1_score

    restored = f1_score(flipped.labels, method.predict(flipped.texts), average="micro", zero_division=0)
    assert restored == pytest.approx(max(per_epoch), abs=1e-6)  # the weights are the best epoch's


def test_fine_tuning_writes_no_checkpoints(tiny_bert, tmp_path, monkeypatch):
    # the best evaluation's weights are kept in memory: no temporary folder, nothing in the cache or here
    import tempfile

    made: list[str] = []
    real_enter = tempfile.TemporaryDirectory.__enter__
    monkeypatch.setattr(tempfile.TemporaryDirectory, "__enter__", lambda self: made.append(self.name) or real_enter(self))
    monkeypatch.chdir(tmp_path)
    train, valid, _ = tiny_splits()
    method = FineTune(FineTune.Params(**{**FAST, "epochs": 3}, model=tiny_bert))
    method.fit(train, valid, [], context(tmp_path / "cache"))
    assert made == [] and list(tmp_path.rglob("*")) == []
    assert len(method.details()["epochs"]) == 3


@pytest.mark.parametrize(
    "n_texts, epochs, min_steps, max_evaluations, expected",
    [
        (6, 5, 300, 10, (150, 15, 2)),  # the default preset on the 8-issue slice: 150 epochs, evaluated every 15
        (30, 5, 300, 10, (38, 4, 8)),  # 38 epochs, not rounded up to 40: evaluated every 4 and after the 38th
        (818, 5, 300, 20, (5, 1, 205)),  # the full split already has 1,025 steps in 5 epochs
        (6, 20, 0, None, (20, 1, 2)),  # the book: 20 epochs, each evaluated, whatever the slice
    ],
)
def test_small_slices_train_for_at_least_min_steps(n_texts, epochs, min_steps, max_evaluations, expected):
    from harness_finetune.classifier import ClassifierSettings, training_schedule

    settings = ClassifierSettings(max_length=32, epochs=epochs, min_steps=min_steps, max_evaluations=max_evaluations,
                                  learning_rate=1e-4, lr_scheduler="constant", batch_size=4, eval_batch_size=32,
                                  weight_decay=0.0, threshold=0.5, tune_threshold=False, precision="fp32",
                                  freeze_word_embeddings_up_to=128, device="cpu")
    assert training_schedule(n_texts, settings) == expected


def test_frozen_word_embeddings_stay_as_pretrained(tiny_bert, tmp_path):
    import torch
    from transformers import BertModel

    pretrained = BertModel.from_pretrained(tiny_bert).get_input_embeddings().weight.detach()
    train, valid, _ = tiny_splits()
    # the tiny training split has 50 texts: frozen up to 50 texts, trained with a bound of 49
    for freeze, up_to in ((True, len(train)), (False, len(train) - 1)):
        method = FineTune(FineTune.Params(**{**FAST, "epochs": 2, "freeze_word_embeddings_up_to": up_to}, model=tiny_bert))
        method.fit(train, valid, [], context(tmp_path))
        model = method._fitted.model
        after = model.get_input_embeddings().weight.detach()
        assert torch.equal(after, pretrained) is freeze
        assert method.details()["frozen_parameters"] == (pretrained.numel() if freeze else 0)
        # the rest of the encoder trains either way
        layer = model.bert.encoder.layer[0].attention.self.query.weight
        assert not torch.equal(layer, BertModel.from_pretrained(tiny_bert).encoder.layer[0].attention.self.query.weight)


@pytest.mark.parametrize("epochs, every, evaluated", [(6, 2, [2, 4, 6]), (7, 3, [3, 6, 7])])
def test_min_steps_and_max_evaluations_drive_the_trainer(tiny_bert, tmp_path, epochs, every, evaluated):
    train, valid, _ = tiny_splits()
    steps_per_epoch = -(-len(train) // FAST["batch_size"])
    min_steps = (epochs - 1) * steps_per_epoch + 1  # one step past epochs - 1: ``epochs`` epochs
    method = FineTune(FineTune.Params(**{**FAST, "epochs": 1, "min_steps": min_steps, "max_evaluations": 3}, model=tiny_bert))
    method.fit(train, valid, [], context(tmp_path))
    details = method.details()
    assert details["epochs_trained"] == epochs and details["evaluated_every_epochs"] == every
    # every ``every`` epochs, and after the last one even when it ends a shorter period
    assert [row["epoch"] for row in details["epochs"]] == evaluated
    assert [row["step"] for row in details["epochs"]] == [epoch * steps_per_epoch for epoch in evaluated]
    assert details["best_epoch"] in evaluated


def test_adapted_model_is_trained_once_and_reused(tiny_bert, tmp_path, monkeypatch):
    from harness_finetune import adaptation

    calls = []
    real_train = adaptation._train
    monkeypatch.setattr(adaptation, "_train", lambda *args, **kwargs: calls.append(1) or real_train(*args, **kwargs))
    train, valid, _ = tiny_splits()
    pool = unlabeled_texts()
    messages: list[str] = []

    first = AdaptFineTune(AdaptFineTune.Params(**FAST_DA, model=tiny_bert))
    first.fit(LabeledTexts(train.texts[:16], train.labels[:16], train.tags), valid, pool,
              context(tmp_path, "16", progress=messages.append))
    second = AdaptFineTune(AdaptFineTune.Params(**FAST_DA, model=tiny_bert))
    second.fit(train, valid, pool, context(tmp_path, "all", seed=1))

    assert len(calls) == 1  # the second slice and seed load the cached model
    one, two = first.details()["adaptation"], second.details()["adaptation"]
    assert one["reused"] is False and two["reused"] is True
    assert one["mlm_loss_after"] < one["mlm_loss_before"]
    assert two["mlm_loss_after"] == one["mlm_loss_after"]
    assert two["train_texts"] == len(pool) - FAST_DA["da_eval_texts"]
    (folder,) = [p for p in (tmp_path / "adapted_lm").iterdir() if p.is_dir()]
    assert (folder / "model.safetensors").exists()
    assert json.loads((folder / "adaptation.json").read_text())["mlm_loss_before"] == one["mlm_loss_before"]
    assert any("domain adaptation" in m and "ETA" in m for m in messages)
    assert any(m.startswith("adapt_finetune slice 16: epoch 5/5, valid score") for m in messages)


def test_other_adaptation_settings_train_another_model(tiny_bert, tmp_path):
    train, valid, _ = tiny_splits()
    for da_epochs in (1, 2):
        method = AdaptFineTune(AdaptFineTune.Params(**{**FAST_DA, "da_epochs": da_epochs, "epochs": 1}, model=tiny_bert))
        method.fit(train, valid, unlabeled_texts(), context(tmp_path))
        assert method.details()["adaptation"]["reused"] is False


def test_adaptation_without_unlabeled_texts_is_a_clear_error(tiny_bert, tmp_path):
    train, valid, _ = tiny_splits()
    method = AdaptFineTune(AdaptFineTune.Params(**FAST_DA, model=tiny_bert))
    with pytest.raises(ValueError, match="da_eval_texts=8"):
        method.fit(train, valid, ["", "   "], context(tmp_path))


def test_unknown_model_names_the_parameter(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    train, valid, _ = tiny_splits()
    method = FineTune(FineTune.Params(**{**FAST, "model": "no-such-org/no-such-model"}))
    with pytest.raises(ModelResolutionError, match="'no-such-org/no-such-model' \\(parameter 'model'\\)"):
        method.fit(train, valid, [], context(tmp_path))


def test_a_folder_that_is_no_model_is_a_clear_error(tmp_path):
    from harness_finetune.runtime import ModelLoadError

    train, valid, _ = tiny_splits()
    method = FineTune(FineTune.Params(**{**FAST, "model": str(tmp_path)}))
    with pytest.raises(ModelLoadError, match="parameter 'model'"):
        method.fit(train, valid, [], context(tmp_path))


def test_out_of_memory_names_what_to_lower():
    import torch

    from harness_finetune.runtime import FineTuneMemoryError, explain_out_of_memory

    with pytest.raises(FineTuneMemoryError, match="while fine-tuning x; lower batch_size"):
        with explain_out_of_memory("fine-tuning x", "lower batch_size (now 4)"):
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    with pytest.raises(FineTuneMemoryError):
        with explain_out_of_memory("predicting", "lower eval_batch_size"):
            raise torch.OutOfMemoryError("CUDA out of memory")
    with pytest.raises(ValueError, match="unrelated"):  # other errors pass through unchanged
        with explain_out_of_memory("predicting", "lower eval_batch_size"):
            raise ValueError("unrelated")


def test_bf16_with_a_threshold_tuned_on_valid(tiny_bert, tmp_path):
    # what the default preset does on a CPU with native bf16
    from harness.rules import THRESHOLD_GRID

    train, valid, test = tiny_splits()
    method = FineTune(FineTune.Params(**{**FAST, "tune_threshold": True, "precision": "bf16", "epochs": 2}, model=tiny_bert))
    method.fit(train, valid, [], context(tmp_path))
    details = method.details()
    assert details["precision"] == "bf16"
    assert details["threshold"] in THRESHOLD_GRID
    assert all(row["threshold"] in THRESHOLD_GRID for row in details["epochs"])
    assert method.predict(test.texts).shape == (len(test), len(test.tags))


CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@pytest.mark.skipif(CORES < 2, reason="with one core every worker gets one thread anyway")
@pytest.mark.parametrize("jobs", [1, 2])
def test_a_fit_keeps_the_thread_cap_of_its_worker(jobs, tmp_path):
    # `harness run --jobs 2` gives each worker half the cores; the fit's torch set-up must not undo that
    import subprocess
    import sys

    from harness.testing import TINY_DATASET, write_tiny_dataset

    cfg_dir, data_dir = write_tiny_dataset(tmp_path)
    tests_dir = str(Path(__file__).resolve().parent)
    env = {**os.environ, "HARNESS_PLUGINS": "torch_threads_methods", "HARNESS_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")]))}
    for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(name, None)
    results = tmp_path / "results"
    with busy_loop():  # a busy machine: threads must sleep
        done = subprocess.run(
            [sys.executable, "-c", "from harness.cli import main; main()", "run", "--methods", "torch_threads",
             "--datasets", TINY_DATASET, "--seeds", "0,1", "--datasets-cfg", str(cfg_dir), "--data-dir", str(data_dir),
             "--results", str(results), "--cache-dir", str(tmp_path / "cache"), "--no-report", "--quiet",
             "--jobs", str(jobs)],
            env=env, capture_output=True, text=True, timeout=300,
        )
    assert done.returncode == 0, done.stderr
    records = [json.loads(path.read_text()) for path in results.glob("cells/**/*.json")]
    assert records and all(record["status"] == "ok" for record in records)
    assert {record["details"]["torch_threads"] for record in records} == {max(1, CORES // jobs)}
    # beside a busy process, passive OpenMP waiting is in place before the fit imports torch,
    # in the driver and in workers
    assert {record["details"]["omp_wait_policy"] for record in records} == {"PASSIVE"}


@pytest.mark.parametrize("env, expected", [
    ({}, "PASSIVE"),  # beside a busy process
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),  # the user's own setting wins
    ({"GOMP_SPINCOUNT": "5"}, None),  # so does a spin count
])
def test_beside_a_busy_process_openmp_threads_sleep_unless_the_user_chose(env, expected):
    # as run_cell chooses before a fit, here after the plugin is imported (which must not load torch)
    import subprocess
    import sys

    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = ("import os, sys, harness_finetune; from harness.cores import choose_openmp_waiting; "
            "torch_loaded = 'torch' in sys.modules; choose_openmp_waiting(); "
            "print(os.environ.get('OMP_WAIT_POLICY'), torch_loaded)")
    with busy_loop():
        out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(expected), "False"]  # and importing the plugin does not load torch
