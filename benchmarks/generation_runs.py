"""The generation section: mixmerge's batched evaluation generation
(`mixmerge.evaluation.generation.generate_responses`: left-padded, length-sorted batches) against
the loop people write first, one `generate` call per prompt. Same model, dtype, prompts and greedy
decoding.

New tokens are counted the same way for both: the decoded responses re-tokenised (the batched path
returns text only). Both timings include loading the model, as each path loads it itself.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from mixmerge.data.formatting import prompt_text
from mixmerge.evaluation.generation import Decoding, generate_responses
from mixmerge.modeling import load_causal_lm, load_tokenizer


def one_at_a_time(
    model_path: str, prompts: list[str], max_new_tokens: int, dtype: str
) -> list[str]:
    """Greedy responses, one prompt per `generate` call (no padding, no batching)."""
    tokenizer = load_tokenizer(model_path)
    model = load_causal_lm(model_path, dtype).eval()
    responses = []
    with torch.inference_mode():
        for prompt in prompts:
            enc = tokenizer(
                prompt_text(tokenizer, prompt), return_tensors="pt", add_special_tokens=False
            )
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
            )
            responses.append(
                tokenizer.decode(
                    out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True
                ).strip()
            )
    return responses


def count_tokens(tokenizer: Any, responses: list[str]) -> int:
    return sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in responses)


def run(spec: dict[str, Any]) -> dict[str, Any]:
    model_path, prompts, new = spec["model_dir"], spec["prompts"], spec["max_new_tokens"]
    tokenizer = load_tokenizer(model_path)
    load_causal_lm(model_path)  # warm the file cache so neither path pays the first read
    # mixmerge's defaults otherwise (greedy, batch 32, native dtype); the loop uses the same dtype
    decoding = Decoding(max_new_tokens=new)
    figures: dict[str, Any] = {}
    for name, generate in (
        (
            "batched",
            lambda: generate_responses(model_path, prompts, decoding, desc="bench generation"),
        ),
        ("loop", lambda: one_at_a_time(model_path, prompts, new, decoding.dtype)),
    ):
        start = time.perf_counter()
        responses = generate()
        seconds = time.perf_counter() - start
        tokens = count_tokens(tokenizer, responses)
        figures[name] = {
            "seconds": seconds,
            "new_tokens": tokens,
            "tokens_per_s": tokens / seconds,
            "prompts": len(prompts),
        }
    figures["batched"]["batch_size"] = decoding.batch_size
    figures["loop"]["batch_size"] = 1
    figures["batched"]["dtype"] = figures["loop"]["dtype"] = decoding.dtype
    return figures
