"""One device policy: ``--device`` (and ``--device METHOD=DEVICE``) decides where every torch
method and the embedding cache put their tensors, and the cell record names the device.

On this CPU build of torch, CUDA is faked as available. Any tensor sent to CUDA then fails (the
build has none), so a fit that succeeds with ``cpu`` kept every tensor on the CPU, and the same
fit failing with ``auto`` shows that the policy reached the method.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.devices import parse_device_option, resolve_device
from harness.methods import FitContext
from harness.params import build_params
from harness.testing import TINY_TAGS, save_tiny_sentence_transformer, tiny_multilabel, tiny_splits, write_tiny_dataset

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA reported as available; any tensor actually sent there fails (no CUDA in this build)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)


def test_device_option_values():
    assert parse_device_option(()) == ("auto", {})
    assert parse_device_option(("cuda:1", "setfit=cpu", "knn_embed=cuda")) == ("cuda:1", {"setfit": "cpu", "knn_embed": "cuda"})
    for bad, named in (("gpu", "--device 'gpu'"), ("setfit=tpu", "--device setfit= 'tpu'"), ("=cpu", "'=cpu'")):
        with pytest.raises(ValueError, match=named):
            parse_device_option((bad,))


def test_auto_follows_cuda_availability(fake_cuda, monkeypatch):
    assert resolve_device("auto") == "cuda" and resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"


# ---------------------------------------------------------------- every torch method, cpu vs auto


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    from test_finetune import build_tiny_bert
    from test_llm_icl import _tiny_causal_lm
    from test_zeroshot import NLI_LABELS, build_tiny_nli, nli_texts

    bert = tmp_path_factory.mktemp("bert")
    build_tiny_bert(bert)
    return {
        "bert": str(bert),
        "st": str(save_tiny_sentence_transformer(tmp_path_factory.mktemp("st"), tiny_multilabel(200).texts)),
        "nli": str(build_tiny_nli(tmp_path_factory.mktemp("nli"), NLI_LABELS["contradiction first"], nli_texts())),
        "llama": str(_tiny_causal_lm(tmp_path_factory.mktemp("llama"), "llama")),
    }


def _torch_methods(models: dict[str, str]) -> dict[str, tuple[str, dict]]:
    """Each torch method with fast parameters on a tiny model, and how to find its tensors."""
    fast_finetune = {"model": models["bert"], "max_length": 32, "epochs": 1, "min_steps": 0, "batch_size": 8}
    return {
        "finetune": ("finetune", fast_finetune),
        "adapt_finetune": ("adapt_finetune", {**fast_finetune, "da_epochs": 1, "da_max_texts": 40, "da_eval_texts": 8,
                                              "da_max_length": 32}),
        "setfit": ("setfit", {"model": models["st"], "num_iterations": 1, "max_length": 32}),
        "knn_embed": ("knn_embed", {"model": models["st"]}),
        "zeroshot_nli": ("zeroshot", {"backend": "nli", "model": models["nli"]}),
        "zeroshot_embedding": ("zeroshot", {"backend": "embedding", "model": models["st"]}),
        "llm_icl": ("llm_icl", {"model": models["llama"], "k": 1, "max_text_tokens": 8, "valid_size": 6}),
    }


@pytest.mark.parametrize("case", ["finetune", "adapt_finetune", "setfit", "knn_embed", "zeroshot_nli",
                                  "zeroshot_embedding", "llm_icl"])
def test_cpu_device_keeps_every_tensor_on_the_cpu_where_cuda_exists(case, tiny_models, fake_cuda, harness_pm, tmp_path):
    import harness.embeddings

    harness.embeddings._loaded.clear()
    name, params = _torch_methods(tiny_models)[case]
    method_class = harness_pm.registry.methods[name]
    train, valid, test = tiny_splits()
    pool = [text for text in tiny_multilabel(60, seed=5).texts]

    def fit(device: str):
        method = method_class(build_params(method_class, "default", params))
        context = FitContext(seed=0, tags=list(TINY_TAGS), dataset="tiny", fingerprint="tiny",
                             cache_dir=tmp_path / device, device=device)
        method.fit(train, valid, pool, context)
        return method

    method = fit("cpu")
    assert method.predict(test.texts).shape == (len(test), len(TINY_TAGS))
    # the same method under 'auto' goes for the (fake) GPU, which this torch build does not have
    harness.embeddings._loaded.clear()
    with pytest.raises((AssertionError, RuntimeError), match="CUDA|cuda"):
        fit("auto")


# ---------------------------------------------------------------- the run option and the record


def _run(tmp_path: Path, *extra: str):
    cfg_dir, data_dir = write_tiny_dataset(tmp_path / "data")
    results = tmp_path / "results"
    outcome = CliRunner().invoke(cli, ["run", "--datasets", "tiny", "--datasets-cfg", str(cfg_dir), "--data-dir",
                                       str(data_dir), "--results", str(results), "--cache-dir", str(tmp_path / "cache"),
                                       "--slices", "8", "--no-report", "--quiet", *extra])
    records = [json.loads(p.read_text()) for p in sorted(results.rglob("*.json")) if p.parent.name != ".locks"]
    return outcome, [r for r in records if "key_hash" in r]


def test_the_record_names_the_device_per_method(tiny_models, fake_cuda, tmp_path):
    outcome, records = _run(tmp_path, "--methods", "knn_embed,nb", "--set", f"knn_embed.model={tiny_models['st']}",
                            "--device", "cuda", "--device", "knn_embed=cpu")
    assert outcome.exit_code == 0, outcome.output
    by_method = {r["method"]["name"]: r for r in records}
    assert by_method["knn_embed"]["status"] == "ok"
    assert by_method["knn_embed"]["environment"]["device"] == "cpu"
    assert "gpu" not in by_method["knn_embed"]["environment"]


def test_a_bad_device_is_one_line(tmp_path):
    outcome, _ = _run(tmp_path, "--methods", "nb", "--device", "gpu")
    assert outcome.exit_code == 2
    assert outcome.output.strip().splitlines()[-1] == "error: --device 'gpu': expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
    outcome, _ = _run(tmp_path, "--methods", "nb", "--device", "nosuch=cpu")
    assert outcome.exit_code == 2 and "--device: unknown method 'nosuch'" in outcome.output
