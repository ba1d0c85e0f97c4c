"""Text embeddings, computed once per (model, pooling, max_length, normalisation) and text.

The cache is shared by every slice, seed and method (kNN lookup, embedding zero-shot): a
folder per encoder setting holding ``vectors.npy`` and ``keys.json`` (one SHA-256 per text,
in row order). Only texts not yet in the cache go through the model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from pydantic import Field

from harness.artifacts import cached_artifact
from harness.hashing import stable_hash, text_key
from harness.methods import MethodParams
from harness.models import resolve_model
from harness.store import write_json_atomic, write_npy_atomic


@dataclass(frozen=True)
class EncoderSpec:
    """Everything that changes a text's vector."""

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    # "sentence-transformers": the model's own pipeline (pooling and normalisation as shipped);
    # "mean": masked mean pooling over a plain AutoModel's last hidden state (the book's way)
    pooling: Literal["sentence-transformers", "mean"] = "sentence-transformers"
    max_length: int = 128
    normalize: bool = False

    def key(self) -> str:
        return stable_hash(asdict(self))


class EncoderParams(MethodParams):
    """The encoder parameters of a method on cached embeddings; subclass it and add the method's own.
    Together the first four key the shared cache (``spec()``)."""

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    pooling: Literal["sentence-transformers", "mean"] = "sentence-transformers"
    max_length: int = Field(128, ge=1)
    normalize: bool = False  # unit-length vectors from the encoder (MiniLM's own pipeline already does it)
    batch_size: int = Field(64, ge=1)

    def spec(self) -> EncoderSpec:
        return EncoderSpec(model=self.model, pooling=self.pooling, max_length=self.max_length, normalize=self.normalize)


class EmbeddingCache:
    """Vectors on disk for one encoder setting; computes only the texts it lacks."""

    def __init__(self, cache_dir: Path, spec: EncoderSpec) -> None:
        self.spec = spec
        self.folder = Path(cache_dir) / "embeddings" / spec.key()
        self.forward_passes = 0  # texts encoded by the model in this process (0 on a full cache hit)

    def _load(self) -> tuple[list[str], np.ndarray | None]:
        keys_path, vectors_path = self.folder / "keys.json", self.folder / "vectors.npy"
        if not (keys_path.exists() and vectors_path.exists()):
            return [], None
        keys = json.loads(keys_path.read_text())
        vectors = np.load(vectors_path)
        if len(keys) != len(vectors):  # a write was interrupted between the two files
            return [], None
        return keys, vectors

    def _save(self, keys: list[str], vectors: np.ndarray) -> None:
        write_json_atomic(self.folder / "spec.json", asdict(self.spec))
        write_npy_atomic(self.folder / "vectors.npy", vectors)
        write_json_atomic(self.folder / "keys.json", keys)

    def embed(
        self,
        texts: list[str],
        batch_size: int = 64,
        device: str = "auto",
        progress: Callable[[str], None] = lambda message: None,
    ) -> np.ndarray:
        """Vectors for ``texts`` in order, float32, shape (len(texts), dim)."""
        wanted = [text_key(t) for t in texts]

        def lookup() -> np.ndarray | None:
            keys, vectors = self._load()
            position = {key: i for i, key in enumerate(keys)}
            if vectors is None or any(key not in position for key in wanted):
                return None
            return vectors[[position[key] for key in wanted]]

        def encode_missing() -> np.ndarray:
            keys, vectors = self._load()  # what other processes saved, under the lock now
            known = set(keys)
            missing = {key: text for key, text in zip(wanted, texts) if key not in known}
            progress(f"embedding {len(missing)} texts with {self.spec.model}")
            fresh = encode(list(missing.values()), self.spec, batch_size=batch_size, device=device)
            self.forward_passes += len(missing)
            keys, vectors = keys + list(missing), fresh if vectors is None else np.concatenate([vectors, fresh])
            self._save(keys, vectors)
            position = {key: i for i, key in enumerate(keys)}
            return vectors[[position[key] for key in wanted]]

        # one process encodes, concurrent cells wait and then read its vectors (no lost update either)
        vectors, _ = cached_artifact(self.folder, lookup, encode_missing)
        return vectors


def encode(texts: list[str], spec: EncoderSpec, batch_size: int = 64, device: str = "auto") -> np.ndarray:
    """Run the model over ``texts`` (no cache) on ``device`` (harness.devices). Longest texts
    first, to pad less."""
    from harness.devices import resolve_device

    path = resolve_model(spec.model, parameter="model")
    device = resolve_device(device)
    order = np.argsort([-len(t) for t in texts], kind="stable")
    sorted_texts = [texts[i] for i in order]
    if spec.pooling == "sentence-transformers":
        vectors = _encode_sentence_transformers(sorted_texts, path, spec, batch_size, device)
    else:
        vectors = _encode_mean_pooling(sorted_texts, path, spec, batch_size, device)
    out = np.empty_like(vectors)
    out[order] = vectors
    return out


_loaded: dict[tuple[str, str, str], object] = {}  # one model instance per process


def _encode_sentence_transformers(texts, path, spec, batch_size, device) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    key = ("st", path, device)
    if key not in _loaded:
        _loaded[key] = SentenceTransformer(path, device=device)
    model = _loaded[key]
    model.max_seq_length = spec.max_length
    return np.asarray(
        model.encode(texts, batch_size=batch_size, normalize_embeddings=spec.normalize, convert_to_numpy=True, show_progress_bar=False),
        dtype=np.float32,
    )


def _encode_mean_pooling(texts, path, spec, batch_size, device) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    key = ("auto", path, device)
    if key not in _loaded:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if tokenizer.pad_token is None:  # GPT-2 style models: pad with EOS, as the book does
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModel.from_pretrained(path).to(device).eval()
        _loaded[key] = (tokenizer, model)
    tokenizer, model = _loaded[key]
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                              max_length=spec.max_length, return_tensors="pt").to(model.device)
            if batch["input_ids"].shape[1] == 0:  # only empty texts and no BOS token (GPT-2): nothing to pool
                chunks.append(np.zeros((batch["input_ids"].shape[0], model.config.hidden_size), dtype=np.float32))
                continue
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            chunks.append(pooled.float().cpu().numpy())
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, model.config.hidden_size), dtype=np.float32)
    if spec.normalize:
        vectors = unit_rows(vectors)
    return vectors.astype(np.float32)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (float32); an all-zero row (nothing to embed) stays zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
