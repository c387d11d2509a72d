"""Greedy decoding for evaluation without `generate()`'s per-step machinery.

Evaluation decodes hundreds of short answers greedily in left-padded batches. This decoder runs
the same model forward as `model.generate` (same weights, same attention kernels, same masks and
position ids) and only changes the bookkeeping around it:

- the cache is preallocated once per batch (prompt + max_new_tokens) and filled in place;
- a row that emits a stop token leaves the batch: its cache rows are dropped, and the remaining
  rows run on (a row's arithmetic does not depend on its neighbours);
- the next token is the argmax of the last position's logits, as greedy `generate` picks it
  (taken on the logits' own dtype: the same index, without a float32 copy of the vocabulary);
- on a CPU, bfloat16 linear layers run on weights reordered once into oneDNN's blocked layout
  (`packed_linears`), instead of being reordered inside every matmul call; a float32 model's
  output head runs as `(W hᵀ)ᵀ` (`transposed_head`), which the BLAS computes faster for a few rows
  and a large vocabulary. The packed product is bit-identical; the transposed one agrees to float32
  rounding (see `transposed_head`).

So its outputs are `generate`'s greedy outputs (tests compare them token for token on tiny models,
and the benchmark on the real one). Sampling still goes through `generate`. What it saves is
`generate`'s overhead, which matters on a loaded CPU; on a quiet one the model's arithmetic
dominates and it is only a few percent faster (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

from mixmerge.evaluation.repetition import Dry, dry_penalties, pick_penalized


class _Preallocated:
    """Mixin for a cache layer: keys/values live in one buffer of `capacity` positions, written in
    place; `keys`/`values` are views of the filled part, exactly what concatenation would hold."""

    capacity: int = 0

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:  # type: ignore[attr-defined]
            self.lazy_initialization(key_states, value_states)  # type: ignore[attr-defined]
            b, h, _, d = key_states.shape
            self._k = key_states.new_empty(b, h, self.capacity, d)
            self._v = value_states.new_empty(b, h, self.capacity, value_states.shape[-1])
            self._n = 0
        new = key_states.shape[-2]
        self._k[:, :, self._n : self._n + new] = key_states
        self._v[:, :, self._n : self._n + new] = value_states
        self._n += new
        if hasattr(self, "cumulative_length"):
            self.cumulative_length += new
        self.keys = self._k[:, :, : self._n]
        self.values = self._v[:, :, : self._n]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._n if self.is_initialized else 0  # type: ignore[attr-defined]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:  # type: ignore[attr-defined]
            self._k = self._k.index_select(0, indices)
            self._v = self._v.index_select(0, indices)
            self.keys = self._k[:, :, : self._n]
            self.values = self._v[:, :, : self._n]


class _PreallocatedLayer(_Preallocated, DynamicLayer):
    pass


class _PreallocatedSlidingLayer(_Preallocated, DynamicSlidingWindowLayer):
    """A sliding-window layer that never slides: used only when the whole sequence fits in the
    window, where the sliding layer keeps and returns every position, like a full one."""


def preallocated_cache(config: Any, capacity: int) -> DynamicCache | None:
    """A cache for `config` whose layers are preallocated for `capacity` positions, or None when a
    layer would have to slide or is of a kind this does not know (then `generate`'s cache is used)."""
    cache = DynamicCache(config=config)
    layers = []
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            new: _Preallocated = _PreallocatedLayer()
        elif type(layer) is DynamicSlidingWindowLayer and capacity < layer.sliding_window:
            new = _PreallocatedSlidingLayer(sliding_window=layer.sliding_window)
        else:
            return None
        new.capacity = capacity
        layers.append(new)
    cache.layers = layers
    return cache


def _can_pack(model: Any) -> bool:
    return (
        next(model.parameters()).device.type == "cpu"
        and next(model.parameters()).dtype == torch.bfloat16
        and torch.backends.mkldnn.is_available()
        and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )


@contextmanager
def _forwards_replaced(
    forwards: list[tuple[torch.nn.Module, Callable[..., Any]]],
) -> Iterator[None]:
    """Each module runs its given forward instead of its class's while inside."""
    for module, forward in forwards:
        module.forward = forward
    try:
        yield
    finally:
        for module, _ in forwards:
            del module.forward  # back to the class's forward


@contextmanager
def packed_linears(model: Any, rows_hint: int = 32) -> Iterator[int]:
    """Run every `nn.Linear` of a bfloat16 CPU model on a oneDNN-packed copy of its weight while
    inside; yields how many layers were packed (0 where packing does not apply: GPU, float32, no
    oneDNN bf16). Costs one packed copy of the linear weights (a tied embedding counts once more)."""
    if not _can_pack(model):
        yield 0
        return
    packed: dict[int, torch.Tensor] = {}  # by weight identity: a tied head shares the packing
    forwards = []
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        weight = module.weight
        if id(weight) not in packed:
            packed[id(weight)] = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), rows_hint)

        def forward(x: torch.Tensor, w: torch.Tensor = packed[id(weight)], m: Any = module) -> Any:
            return torch.ops.mkldnn._linear_pointwise(x, w, m.bias, "none", [], "")

        forwards.append((module, forward))
    with _forwards_replaced(forwards):
        yield len(forwards)


def _float32_cpu_head(model: Any) -> torch.nn.Linear | None:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    weight = head.weight
    return head if weight.device.type == "cpu" and weight.dtype == torch.float32 else None


@contextmanager
def transposed_head(model: Any) -> Iterator[bool]:
    """Run a float32 CPU model's output head as `(W hᵀ)ᵀ` instead of `h Wᵀ` while inside; yields
    whether it applies (a plain bias-free `nn.Linear` head, float32, on a CPU).

    Decoding multiplies a few rows (one per prompt of the batch) by the head's whole vocabulary: for
    Gemma 3, [32, 640] × [640, 262,144], most of a float32 decoding step on a CPU. With the
    vocabulary as the rows of the output, an AVX2 CPU's BLAS ran that product about twice as fast
    (docs/performance.md). Each logit is the same dot product over the hidden size; the BLAS may
    sum it in another order for some row counts (differences of a few 1e-6 at 2 and 8 rows of
    Gemma's head, none at 1, 17, 31 or 32, measured), so the logits agree to float32 rounding and
    the greedy tokens are `generate`'s wherever compared (tests on tiny models; the benchmark and
    the evaluation's prompts on Gemma 3 270M: docs/performance.md). The logits come back as a
    transposed view; only their maximum is read.
    """
    head = _float32_cpu_head(model)
    if head is None:
        yield False
        return
    weight = head.weight

    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        return (weight @ rows.t()).t().reshape(*x.shape[:-1], weight.shape[0])

    with _forwards_replaced([(head, forward)]):
        yield True


# One decoding step: (inputs for the model's forward, rows still decoding, step, the tokens each of
# those rows has generated so far) -> their next tokens.
NextTokens = Callable[[dict[str, Any], torch.Tensor, int, list[list[int]]], torch.Tensor]


def _greedy_step(model: Any, dry: Dry | None = None) -> NextTokens:
    def next_tokens(
        inputs: dict[str, Any], alive: torch.Tensor, step: int, history: list[list[int]]
    ) -> torch.Tensor:
        logits = model(**inputs, logits_to_keep=1).logits[:, -1, :]
        if dry is not None:
            return pick_penalized(logits, [dry_penalties(h, dry) for h in history])
        # generate's greedy search casts to float32, then takes the argmax. The cast is exact and
        # both return the first of equal maxima (documented for argmax and for max over a dim), so
        # the index of the bfloat16 maximum is the same token. It is computed without the cast: on
        # a CPU, cast and argmax over 262,144 logits per row took about 23 ms per step of a batch
        # of 32; max(-1).indices on the bfloat16 logits takes about 8 ms.
        return logits.max(-1).indices

    return next_tokens


@torch.inference_mode()
def decode_rows(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    stop_ids: set[int],
    next_tokens: NextTokens,
) -> list[list[int]]:
    """The decoding loop over a left-padded batch: each step `next_tokens` gives the rows still
    decoding their next token; a row that emits a stop token leaves the batch. For each row, the
    new token ids up to and including the first stop token (or `max_new_tokens` of them).
    greedy_decode picks by argmax; benchmarks/decode_bound.py replays recorded tokens through it."""
    rows = input_ids.shape[0]
    out: list[list[int]] = [[] for _ in range(rows)]
    capacity = input_ids.shape[1] + max_new_tokens
    cache = preallocated_cache(model.config, capacity) or DynamicCache(config=model.config)
    # As generate: positions count the real tokens of each row (pads get position 0).
    position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    alive = torch.arange(rows)
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long)
    mask = attention_mask
    tokens, positions = input_ids, position_ids
    for step in range(max_new_tokens):
        inputs = {
            "input_ids": tokens,
            "attention_mask": mask,
            "position_ids": positions,
            "cache": cache,
            "use_cache": True,
        }
        nxt = next_tokens(inputs, alive, step, [out[row] for row in alive.tolist()])
        for row, tok in zip(alive.tolist(), nxt.tolist(), strict=True):
            out[row].append(tok)
        if step == max_new_tokens - 1:
            break
        done = torch.isin(nxt, stops)
        if bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            alive, nxt, mask = alive[keep], nxt[keep], mask[keep]
            positions = positions[keep]
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
        positions = positions[:, -1:] + 1
        tokens = nxt[:, None]
    return out


def greedy_decode(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    stop_ids: set[int],
    dry: Dry | None = None,
) -> list[list[int]]:
    """Greedy continuations of a left-padded batch: for each row, the new token ids up to and
    including the first stop token (or `max_new_tokens` of them). With `dry`, the DRY penalty on
    repeats applies as `ResponseDRY` applies it in `generate`."""
    return decode_rows(
        model, input_ids, attention_mask, max_new_tokens, stop_ids, _greedy_step(model, dry)
    )
