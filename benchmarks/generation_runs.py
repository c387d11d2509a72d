"""The generation section: mixmerge's greedy evaluation decoder (`generation.decoder=fast`:
preallocated cache, finished rows leave the batch, packed bf16 weights on CPUs) against
transformers' batched `model.generate` (`generation.decoder=generate`) — the same left-padded,
length-sorted batches of the same size, model, dtype and prompts — and whether their responses
are identical.

New tokens are counted the same way for both: the decoded responses re-tokenised. Both timings
include loading the model, as each path loads it itself.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from mixmerge.evaluation.generation import DECODERS, Decoding, generate_responses
from mixmerge.modeling import load_causal_lm, load_tokenizer


def count_tokens(tokenizer: Any, responses: list[str]) -> int:
    return sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    model_path, prompts, new = spec["model_dir"], spec["prompts"], spec["max_new_tokens"]
    tokenizer = load_tokenizer(model_path)
    load_causal_lm(model_path)  # warm the file cache so neither path pays the first read
    # mixmerge's defaults otherwise (greedy, batch 32, native dtype), for both decoders; with DRY,
    # generate runs mixmerge's ResponseDRY processor, the fast decoder the same penalties
    decoding = Decoding(max_new_tokens=new, dry_multiplier=spec.get("dry_multiplier", 0.0))
    figures: dict[str, Any] = {}
    outputs: dict[str, list[str]] = {}
    for name in DECODERS:
        settings = replace(decoding, decoder=name)
        start = time.perf_counter()
        responses = generate_responses(model_path, prompts, settings, desc=f"bench {name}")
        seconds = time.perf_counter() - start
        outputs[name] = responses
        tokens = count_tokens(tokenizer, responses)
        figures[name] = {
            "seconds": seconds,
            "new_tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "prompts": len(prompts),
        }
    for name in figures:
        figures[name] |= {
            "batch_size": decoding.batch_size,
            "dtype": decoding.dtype,
            "dry_multiplier": decoding.dry_multiplier,
        }
    figures["identical"] = sum(
        a == b for a, b in zip(outputs["fast"], outputs["generate"], strict=True)
    )
    return figures
