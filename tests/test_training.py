"""The training engine (harness.training): batches, the loop's kept weights, schedules,
prediction order and the cached precision probe."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from harness import training  # noqa: E402
from harness.training import (  # noqa: E402
    Encoded,
    OptimizerSettings,
    by_length_batches,
    choose_precision,
    epoch_groups,
    length_grouped_batches,
    predict,
    train,
)


def _encoded(lengths: list[int]) -> Encoded:
    width = max(lengths)
    ids = torch.zeros((len(lengths), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.arange(1, length + 1) + 100 * row
        mask[row, :length] = 1
    return Encoded(ids, mask, np.asarray(lengths))


def test_every_epoch_visits_every_row_once_in_batches_of_similar_length():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 64, size=1000)
    batches = length_grouped_batches(lengths, 4, rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])
    shuffled = np.mean([np.ptp(lengths[b]) for b in np.array_split(rng.permutation(1000), 250)])
    assert spread < shuffled / 4  # batches pad far less than random ones
    # seeded: the same order for the same seed, another for another
    assert [b.tolist() for b in epoch_groups(lengths, 4, 300, 1)] == [b.tolist() for b in epoch_groups(lengths, 4, 300, 1)]
    assert [b.tolist() for b in epoch_groups(lengths, 4, 300, 1)] != [b.tolist() for b in epoch_groups(lengths, 4, 300, 2)]
    assert len(epoch_groups(lengths, 4, 300, 1)) == 300


def test_a_batch_is_cut_to_its_longest_text_and_carries_its_aligned_values():
    encoded = _encoded([3, 7, 2, 5])
    groups = [np.array([0, 2]), np.array([1, 3])]
    batches = list(encoded.batches(groups, {"labels": [np.array([[1.0], [0.0]]), np.array([[0.0], [1.0]])]}))
    assert [b["input_ids"].shape for b in batches] == [(2, 3), (2, 7)]
    assert batches[0]["input_ids"][1].tolist() == [201, 202, 0]  # row 2, padded to row 0's 3 tokens
    assert batches[1]["labels"].tolist() == [[0.0], [1.0]]
    assert torch.equal(batches[1]["attention_mask"].sum(dim=1), torch.tensor([7, 5]))


def test_predict_returns_rows_in_their_own_order():
    encoded = _encoded([5, 1, 4, 2, 3])
    model = torch.nn.Linear(1, 1)  # only its device is read
    first_id_and_length = predict(model, encoded, 2, "fp32",
                                  lambda m, b: torch.stack([b["input_ids"][:, 0], b["attention_mask"].sum(1)], 1).float())
    assert first_id_and_length.tolist() == [[1, 5], [101, 1], [201, 4], [301, 2], [401, 3]]
    assert [len(b) for b in by_length_batches(encoded.lengths, 2)] == [2, 2, 1]


def test_the_best_evaluation_weights_come_back_at_the_end():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    inputs = torch.randn(8, 3)
    snapshots, scores = [], iter([0.2, 0.9, 0.4, 0.1])

    def evaluate():
        snapshots.append(model.weight.detach().clone())
        return {"score": next(scores)}

    batches = ({"x": inputs} for _ in range(8))
    trained = train(model, batches, lambda m, b: m(b["x"]).pow(2).mean(), OptimizerSettings(learning_rate=0.1),
                    total_steps=8, steps_per_epoch=2, precision="fp32", evaluate=evaluate, evaluate_every=2)
    assert [row["step"] for row in trained.evaluations] == [2, 4, 6, 8]
    assert trained.best["step"] == 4 and trained.best["epoch"] == 2
    assert torch.equal(model.weight, snapshots[1])  # the weights of the best evaluation, not the last
    assert len(trained.loss_per_epoch) == 4 and trained.loss_per_epoch[-1] < trained.loss_per_epoch[0]


@pytest.mark.parametrize("schedule, reference", [
    ("linear", transformers.get_linear_schedule_with_warmup),
    ("cosine", transformers.get_cosine_schedule_with_warmup),
    ("constant", None),
])
def test_learning_rate_schedules_match_transformers(schedule, reference):
    ours = training._lr_factor(schedule, 10, 100)
    if reference is None:
        expected = [min(1.0, step / 10) for step in range(100)]
    else:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = reference(optimizer, 10, 100)
        expected = []
        for _ in range(100):
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    assert [ours(step) for step in range(100)] == pytest.approx(expected)


def test_the_cpu_precision_probe_runs_once_per_machine_and_is_kept(tmp_path, monkeypatch):
    if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        assert choose_precision("auto", "cpu", tmp_path) == "fp32"  # no bf16 kernels: nothing to measure
        return
    calls = []
    monkeypatch.setattr(training, "_probed", {})
    monkeypatch.setattr(training, "_probe_cpu_precisions", lambda: calls.append(1) or {"fp32": 1.0, "bf16": 0.5})
    assert choose_precision("auto", "cpu", tmp_path) == "bf16"
    monkeypatch.setattr(training, "_probed", {})  # a new process: the file answers
    assert choose_precision("auto", "cpu", tmp_path) == "bf16" and calls == [1]
    (saved,) = (tmp_path / "precision_probe").iterdir()
    assert json.loads(saved.read_text())["seconds"] == {"fp32": 1.0, "bf16": 0.5}
    monkeypatch.setattr(training, "_probed", {})
    monkeypatch.setattr(training, "_probe_cpu_precisions", lambda: {"fp32": 1.0, "bf16": 0.95})
    assert choose_precision("auto", "cpu", tmp_path / "other") == "fp32"  # not 10% faster: fp32
    assert choose_precision("bf16", "cpu", tmp_path) == "bf16" and choose_precision("fp32", "cuda", None) == "fp32"
