"""Log-probabilities of every tag's answer after prefix + segment, all tags from one pass.

For each segment (an issue, or retrieved demonstrations + the issue) the model continues a
prefix whose key/value cache is computed once and reused (with fixed demonstrations the prefix
is the instruction and the demonstrations, the same for every issue of a slice). One forward
pass per batch of segments then reads, over that cache:

    row i:  segment_i  [padding]  tag_1[:-1] tag_2[:-1] ... tag_L[:-1]

with a 4-D attention mask in which every tag's tokens see the prefix, the segment and the
earlier tokens of their own tag only, and position ids that continue the segment for each tag.
The last segment token predicts every tag's first token; a tag's token j predicts its token
j+1. The sum over a tag's tokens equals a separate forward pass over prefix + segment + tag
(``naive_tag_log_probs``, the reference the tests and benchmarks/bench_llm_icl.py compare to).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np


def _cache_kwarg(base_model: Any) -> str:
    # transformers 5 renamed past_key_values to cache (the old name warns, then goes in 5.40)
    return "cache" if "cache" in inspect.signature(base_model.forward).parameters else "past_key_values"


class TagScorer:
    """Scores tag continuations with a causal LM, reusing the cache of the last prefix seen."""

    def __init__(self, model: Any, continuations: list[list[int]], batch_size: int = 8) -> None:
        if any(len(c) == 0 for c in continuations):
            raise ValueError("every tag needs at least one token to score")
        self.model = model
        self.base = model.base_model  # the decoder without the LM head, for hidden states only
        self.head = model.get_output_embeddings()
        self.cache_kwarg = _cache_kwarg(self.base)
        self.continuations = continuations
        self.batch_size = batch_size
        self._prefix: tuple[int, ...] | None = None
        self._prefix_cache: Any = None
        self.prefix_passes = 0  # prefix computations in this scorer's life (1 per slice with fixed demonstrations)

    def _cache_for(self, prefix: list[int]) -> Any:
        import torch

        if tuple(prefix) != self._prefix:
            ids = torch.tensor([prefix], device=self.model.device)
            with torch.inference_mode():
                out = self.base(input_ids=ids, use_cache=True)
            cache = getattr(out, "cache", None)
            self._prefix_cache = cache if cache is not None else out.past_key_values
            self._prefix = tuple(prefix)
            self.prefix_passes += 1
        return self._prefix_cache

    def score(self, prefix: list[int], segments: list[list[int]]) -> np.ndarray:
        """(len(segments), tags) summed log-probabilities of each tag after prefix + segment."""
        if not prefix:
            raise ValueError("the prompt prefix is empty; it holds at least the instruction")
        if any(len(s) == 0 for s in segments):
            raise ValueError("a segment is empty; it ends with the answer label at least")
        out = np.zeros((len(segments), len(self.continuations)), dtype=np.float64)
        for start in range(0, len(segments), self.batch_size):
            out[start:start + self.batch_size] = self._score_batch(prefix, segments[start:start + self.batch_size])
        return out

    def _score_batch(self, prefix: list[int], segments: list[list[int]]) -> np.ndarray:
        import torch

        device, dtype = self.model.device, self.model.dtype
        b, p = len(segments), len(prefix)
        n_max = max(len(s) for s in segments)
        inputs = [c[:-1] for c in self.continuations]  # the last token of a tag is predicted, never fed
        starts = np.cumsum([0] + [len(c) for c in inputs])  # each tag's first column after the segments
        width = n_max + int(starts[-1])

        ids = torch.zeros((b, width), dtype=torch.long)
        positions = torch.zeros((b, width), dtype=torch.long)
        allowed = torch.zeros((b, width, p + width), dtype=torch.bool)
        allowed[:, :, :p] = True  # everything sees the prefix
        causal = torch.tril(torch.ones((n_max, n_max), dtype=torch.bool))
        for i, segment in enumerate(segments):
            n = len(segment)
            ids[i, :n] = torch.tensor(segment)
            positions[i, :n_max] = p + torch.arange(n_max).clamp(max=n - 1)  # padding repeats the last position
            allowed[i, :n_max, p:p + n_max] = causal  # real tokens come before padding: they never see it
            for tag, tokens in enumerate(inputs):
                lo, hi = n_max + int(starts[tag]), n_max + int(starts[tag + 1])
                if lo == hi:
                    continue
                ids[i, lo:hi] = torch.tensor(tokens)
                positions[i, lo:hi] = p + n + torch.arange(hi - lo)
                allowed[i, lo:hi, p:p + n] = True  # the tag sees the segment ...
                allowed[i, lo:hi, p + lo:p + hi] = torch.tril(torch.ones((hi - lo, hi - lo), dtype=torch.bool))  # ... and itself
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]

        cache = copy.deepcopy(self._cache_for(prefix))
        if b > 1:
            cache.batch_repeat_interleave(b)
        with torch.inference_mode():
            hidden = self.base(
                input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                use_cache=True, **{self.cache_kwarg: cache},
            ).last_hidden_state
            # read the LM head only where a tag token is predicted: the last segment token and the tag columns
            last = torch.tensor([len(s) - 1 for s in segments], device=device)
            reads = torch.cat([hidden[torch.arange(b, device=device), last][:, None], hidden[:, n_max:]], dim=1)
            log_probs = torch.log_softmax(self.head(reads).float(), dim=-1).cpu().numpy()

        scores = np.zeros((b, len(self.continuations)), dtype=np.float64)
        for tag, tokens in enumerate(self.continuations):
            scores[:, tag] = log_probs[:, 0, tokens[0]]
            for j, token in enumerate(tokens[1:]):
                scores[:, tag] += log_probs[:, 1 + int(starts[tag]) + j, token]
        return scores


def naive_tag_log_probs(model: Any, prefix: list[int], segments: list[list[int]], continuations: list[list[int]]) -> np.ndarray:
    """The reference: one forward pass over prefix + segment + tag for every (segment, tag)."""
    import torch

    out = np.zeros((len(segments), len(continuations)), dtype=np.float64)
    with torch.inference_mode():
        for i, segment in enumerate(segments):
            context = prefix + segment
            for tag, tokens in enumerate(continuations):
                ids = torch.tensor([context + tokens], device=model.device)
                log_probs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
                rows = torch.arange(len(context) - 1, len(context) + len(tokens) - 1, device=model.device)
                out[i, tag] = float(log_probs[rows, torch.tensor(tokens, device=model.device)].sum())
    return out
