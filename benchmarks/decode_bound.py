"""How fast could an exact greedy decoder be? A bound for the generation target.

`python -m benchmarks.decode_bound [--prompts 128] [--model-dir <folder>]` times, on one seeded
sample of the bundled eval prompts (batches of 32, 64 new tokens, bf16, the default model's chat
baseline unless `--model-dir` is given):

- `generate`: transformers' batched greedy `model.generate`;
- `fast`: mixmerge's decoder (`mixmerge.evaluation.decoder.greedy_decode`, packed weights);
- `trunk_only`: the same decoding steps with the tied LM head's arithmetic removed — the
  decoder's own loop (`decode_rows`) replays the fast decoder's recorded tokens through the trunk
  alone, rows leaving as they did;
- `prefill_only`: the prompts' forward pass alone (the same loop, one step).

Any decoder whose outputs equal greedy `generate`'s must still run the trunk on every token, so
`generate / trunk_only` bounds its speed-up from above, whatever it does with the head.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.run import eval_prompts
from mixmerge.evaluation.decoder import decode_rows, greedy_decode, packed_linears
from mixmerge.evaluation.generation import Decoding, _generation_config, prompt_text
from mixmerge.modeling import load_causal_lm, load_tokenizer


def _replay(model, outputs: list[list[int]]):  # noqa: ANN001, ANN202
    """A decoding step of the trunk alone: the model's forward without the LM head, then the
    token the fast decoder recorded for each row still decoding."""

    def next_tokens(inputs: dict, alive: torch.Tensor, step: int, history: list) -> torch.Tensor:
        model.model(**inputs)
        return torch.tensor([outputs[row][step] for row in alive.tolist()])

    return next_tokens


def load_for_decoding(
    model_dir: str, n_prompts: int, seed: int, new_tokens: int
) -> tuple[list[dict[str, Any]], Any, Any, Any]:
    """A seeded, shuffled sample of the bundled eval prompts, and the model (bf16), its
    left-padding tokenizer and greedy generation config, as evaluation decodes."""
    prompts = eval_prompts(n_prompts, seed)
    random.Random(seed).shuffle(prompts)
    tokenizer = load_tokenizer(model_dir)
    tokenizer.padding_side = "left"
    model = load_causal_lm(model_dir, "bfloat16", False, key="model").eval()
    config = _generation_config(model, tokenizer, Decoding(max_new_tokens=new_tokens))
    return prompts, tokenizer, model, config


def measure(model_dir: str, n_prompts: int, seed: int, new_tokens: int = 64) -> dict[str, float]:
    prompts, tokenizer, model, config = load_for_decoding(model_dir, n_prompts, seed, new_tokens)
    stops = set(config.eos_token_id)
    texts = [prompt_text(tokenizer, p) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))  # as evaluation batches them
    batches = [
        tokenizer([texts[i] for i in order[s : s + 32]], return_tensors="pt", padding=True,
                  add_special_tokens=False)
        for s in range(0, len(order), 32)
    ]  # fmt: skip
    out: dict[str, float] = {}
    with torch.inference_mode():
        start = time.perf_counter()
        reference = [
            model.generate(**enc, generation_config=config)[:, enc["input_ids"].shape[1] :]
            for enc in batches
        ]
        out["generate_s"] = time.perf_counter() - start
        with packed_linears(model, 32):
            start = time.perf_counter()
            fast = [
                greedy_decode(model, e["input_ids"], e["attention_mask"], new_tokens, stops)
                for e in batches
            ]
            out["fast_s"] = time.perf_counter() - start
            start = time.perf_counter()
            replayed = []
            for enc, outs in zip(batches, fast, strict=True):
                args = (enc["input_ids"], enc["attention_mask"], new_tokens, stops)
                replayed.append(decode_rows(model, *args, _replay(model, outs)))
            out["trunk_only_s"] = time.perf_counter() - start
            out["replay_identical"] = replayed == fast
            start = time.perf_counter()
            for enc, outs in zip(batches, fast, strict=True):
                args = (enc["input_ids"], enc["attention_mask"], 1, stops)
                decode_rows(model, *args, _replay(model, outs))
            out["prefill_only_s"] = time.perf_counter() - start
    pad = tokenizer.pad_token_id
    out["identical"] = sum(
        [t for t in g if t != pad][: len(f)] == f
        for gen, fst in zip(reference, fast, strict=True)
        for g, f in zip(gen.tolist(), fst, strict=True)
    )
    out["prompts"] = len(prompts)
    out["new_tokens"] = sum(len(f) for fst in fast for f in fst)
    out["fast_speedup"] = out["generate_s"] / out["fast_s"]
    out["bound_speedup"] = out["generate_s"] / out["trunk_only_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.decode_bound", description=__doc__)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    add_model_dir_option(parser)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = measure(model_dir_from(args), args.prompts, args.seed)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def add_model_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir", help="a model folder (default: the default model's chat baseline)"
    )


def model_dir_from(args: argparse.Namespace) -> str:
    return args.model_dir or str(resolve_model_dir())


def resolve_model_dir() -> Path:
    """The default model's folder (for Gemma 3 270M: the chat baseline, converted once)."""
    import tempfile

    from benchmarks.options import BenchOptions
    from benchmarks.run import resolve_bench_model

    with tempfile.TemporaryDirectory() as work:
        return resolve_bench_model(BenchOptions(), Path(work))[0]


if __name__ == "__main__":
    main()
