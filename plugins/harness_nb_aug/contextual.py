"""nlpaug's contextual word substitution, made fast and batch-independent.

Imported only when a contextual augmenter is built (it imports nlpaug, torch and transformers).

Two changes to ``ContextualWordEmbsAug`` (nlpaug 1.1.11), nothing else:

- ``MaskedPositionsFillMask`` answers nlpaug's fill-mask queries as transformers' fill-mask
  pipeline does (same top-k tokens, same order) but scores the vocabulary only at the [MASK]
  position instead of at every token, and runs a real batch (the pipeline that nlpaug builds
  runs texts one by one). Scoring every position costs as much as the whole encoder again.
- ``SeededContextualWordEmbsAug`` draws every random choice (which words to mask, which
  candidate to take) from a generator seeded by the text being augmented, so a text's
  augmentation depends on (text, seed) only, not on the other texts in its batch. That is what
  lets augmented texts be cached per text and shared by every slice.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from nlpaug.augmenter.word import ContextualWordEmbsAug
from nlpaug.model.lang_models import FmTransformers

from harness.toolkit import stable_hash


class MaskedPositionsFillMask(FmTransformers):
    """nlpaug's fill-mask model with vocabulary scores computed at the masked position only."""

    def predict(self, texts: list[str], target_words: Any = None, n: int = 1) -> list[list[str]]:
        tokenizer, model = self.model.tokenizer, self.model.model
        top_k = self.top_k or 5  # what FmTransformers passes to the pipeline
        candidates: list[list[str]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = tokenizer(
                texts[start:start + self.batch_size], padding=True, truncation=True, return_tensors="pt"
            ).to(model.device)
            is_mask = batch["input_ids"] == tokenizer.mask_token_id
            # The MLM head maps the encoder output to vocabulary scores; keep only the masked
            # positions before it runs (shape (1, number of masks, hidden)).
            def keep_masked_positions(module, args, output):
                output.last_hidden_state = output.last_hidden_state[is_mask].unsqueeze(0)
                return output

            hook = model.base_model.register_forward_hook(keep_masked_positions)
            try:
                with torch.inference_mode():
                    scores = model(**batch).logits[0]
            finally:
                hook.remove()
            top_ids = scores.topk(min(top_k, scores.shape[-1]), dim=-1).indices.tolist()
            first_mask_row: dict[int, list[int]] = {}
            for row, ids in zip(is_mask.nonzero()[:, 0].tolist(), top_ids):
                first_mask_row.setdefault(row, ids)  # nlpaug masks one word per text and query
            for row in range(len(batch["input_ids"])):
                tokens = [tokenizer.decode([token_id]) for token_id in first_mask_row.get(row, [])]
                candidates.append([t for t in tokens if self._is_word_candidate(t)])
        return candidates

    def _is_word_candidate(self, token: str) -> bool:
        # the same filter FmTransformers.predict applies to the pipeline's answers
        if self.model_type == "bert":
            return not token.startswith("##")
        if self.model_type in ("roberta", "bart"):
            return token.startswith(" ")
        return True


class SeededContextualWordEmbsAug(ContextualWordEmbsAug):
    """ContextualWordEmbsAug whose random draws depend on the text and ``seed_parts`` only."""

    seed_parts: tuple[Any, ...] = ()
    _drawing_for: Any = None  # the tokens of the text whose words are being picked

    @classmethod
    def get_model(cls, model_path, model_type, device="cpu", force_reload=False, batch_size=32, top_k=None,
                  silence=True, use_custom_api=False):
        # nlpaug would cache the model in a module dict keyed by the folder's base name; the
        # caller keeps one augmenter per model instead (see augmenters.py).
        return MaskedPositionsFillMask(model_path, model_type=model_type, device=device, batch_size=batch_size,
                                       top_k=top_k, silence=silence)

    def _get_aug_idxes(self, tokens):
        self._drawing_for = tokens
        try:
            return super()._get_aug_idxes(tokens)
        finally:
            self._drawing_for = None

    def sample(self, x, num=None):
        if not isinstance(x, list):
            return super().sample(x, num)
        # x is the list of maskable word positions of a text (seeded by its tokens too) or the
        # model's candidate words for one masked position (a function of the text already)
        rng = random.Random(stable_hash([*self.seed_parts, self._drawing_for, x]))
        return rng.sample(x, num)
