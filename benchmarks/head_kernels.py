"""Is an int8 pass over the LM head cheaper than the bf16 one on this CPU?

`python -m benchmarks.head_kernels [--rows 32] [--repeats 20] [--model-dir <folder>]` times one
decoding step's head product — `rows` hidden states (random, bf16) against the tied
262,144 × 640 embedding of the default model's chat baseline — with each kernel PyTorch offers on
a CPU: the bf16 product on oneDNN-packed weights (what the fast decoder runs), plain
`F.linear` in bf16, weight-only int8 (`aten._weight_int8pack_mm`: int8 weights with per-row
scales, bf16 activations) and int8 × int8 → int32 (`torch._int_mm`). An exact greedy decoder
could screen the vocabulary with a cheap int8 pass and re-check the few candidates in bf16 only if
such a pass were well under the bf16 one (docs/performance.md, "How fast could an exact decoder
be?"). Timings only: the int8 products are not checked against anything.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from benchmarks.decode_bound import add_model_dir_option, model_dir_from


def _ms(step: Callable[[], object], repeats: int) -> float:
    step()  # warm-up: oneDNN picks and caches its kernel on the first call
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats * 1000


def measure(model_dir: str, rows: int, repeats: int) -> dict[str, float]:
    from mixmerge.modeling import load_causal_lm

    model = load_causal_lm(model_dir, "bfloat16", False, key="model").eval()
    weight = model.get_output_embeddings().weight.detach()
    hidden = torch.randn(rows, weight.shape[1], dtype=torch.bfloat16)
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
    scale = weight.float().abs().amax(1, keepdim=True) / 127
    q = torch.round(weight.float() / scale).to(torch.int8)
    hidden_q = torch.randint(-127, 127, hidden.shape, dtype=torch.int8)
    q_t = q.t().contiguous()
    with torch.inference_mode():
        out = {
            "bf16_packed_ms": _ms(
                lambda: torch.ops.mkldnn._linear_pointwise(hidden, packed, None, "none", [], ""),
                repeats,
            ),
            "bf16_linear_ms": _ms(lambda: torch.nn.functional.linear(hidden, weight), repeats),
            "int8_weight_only_ms": _ms(
                lambda: torch.ops.aten._weight_int8pack_mm(
                    hidden, q, scale.squeeze(1).to(torch.bfloat16)
                ),
                repeats,
            ),
            "int8_int8_ms": _ms(lambda: torch._int_mm(hidden_q, q_t), repeats),
        }
    out.update(rows=rows, vocabulary=weight.shape[0], hidden=weight.shape[1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.head_kernels", description=__doc__)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=20)
    add_model_dir_option(parser)
    args = parser.parse_args()
    print(json.dumps(measure(model_dir_from(args), args.rows, args.repeats), indent=1))


if __name__ == "__main__":
    main()
