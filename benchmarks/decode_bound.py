"""How fast could an exact greedy decoder be? A bound for the generation target.

`python -m benchmarks.decode_bound [--prompts 128] [--model-dir <folder>]` times, on one seeded
sample of the bundled eval prompts (batches of 32, 64 new tokens, bf16, the default model's chat
baseline unless `--model-dir` is given):

- `generate`: transformers' batched greedy `model.generate`;
- `fast`: mixmerge's decoder (`mixmerge.evaluation.decoder.greedy_decode`, packed weights);
- `trunk_only`: the same decoding steps with the tied LM head's arithmetic removed — the trunk
  re-runs the fast decoder's recorded tokens (teacher forcing), rows leaving as they did;
- `prefill_only`: the prompts' forward pass alone.

Any decoder whose outputs equal greedy `generate`'s must still run the trunk on every token, so
`generate / trunk_only` bounds its speed-up from above, whatever it does with the head.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from benchmarks.run import eval_prompts
from mixmerge.evaluation.decoder import greedy_decode, packed_linears, preallocated_cache
from mixmerge.evaluation.generation import Decoding, _generation_config, prompt_text
from mixmerge.modeling import load_causal_lm, load_tokenizer


def _trunk_only(model, batches, outputs, new_tokens: int) -> None:  # noqa: ANN001
    for enc, outs in zip(batches, outputs, strict=True):
        mask = enc["attention_mask"]
        cache = preallocated_cache(model.config, enc["input_ids"].shape[1] + new_tokens)
        positions = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        alive, tokens = list(range(len(outs))), enc["input_ids"]
        for step in range(new_tokens - 1):
            model.model(
                input_ids=tokens, attention_mask=mask, position_ids=positions, cache=cache,
                use_cache=True,
            )  # fmt: skip
            keep = [i for i, row in enumerate(alive) if len(outs[row]) > step + 1]
            if not keep:
                break
            if len(keep) < len(alive):
                index = torch.tensor(keep)
                cache.batch_select_indices(index)
                mask, positions = mask[index], positions[index]
                alive = [alive[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], -1)
            positions = positions[:, -1:] + 1
            tokens = torch.tensor([[outs[row][step]] for row in alive])


def measure(model_dir: str, n_prompts: int, seed: int, new_tokens: int = 64) -> dict[str, float]:
    prompts = eval_prompts(n_prompts, seed)
    random.Random(seed).shuffle(prompts)
    tokenizer = load_tokenizer(model_dir)
    tokenizer.padding_side = "left"
    model = load_causal_lm(model_dir, "bfloat16", False, key="model").eval()
    config = _generation_config(model, tokenizer, Decoding(max_new_tokens=new_tokens))
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
            _trunk_only(model, batches, fast, new_tokens)
            out["trunk_only_s"] = time.perf_counter() - start
            start = time.perf_counter()
            for enc in batches:
                mask = enc["attention_mask"]
                model.model(
                    input_ids=enc["input_ids"], attention_mask=mask,
                    position_ids=(mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0),
                    cache=preallocated_cache(model.config, mask.shape[1] + new_tokens),
                    use_cache=True,
                )  # fmt: skip
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
    parser.add_argument(
        "--model-dir", help="a model folder (default: the default model's chat baseline)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model_dir = args.model_dir or str(resolve_model_dir())
    result = measure(model_dir, args.prompts, args.seed)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


def resolve_model_dir() -> Path:
    """The default model's folder (for Gemma 3 270M: the chat baseline, converted once)."""
    import tempfile

    from benchmarks.options import BenchOptions
    from benchmarks.run import resolve_bench_model

    with tempfile.TemporaryDirectory() as work:
        return resolve_bench_model(BenchOptions(), Path(work))[0]


if __name__ == "__main__":
    main()
