"""Could an exact greedy pick skip most of the LM head? A low-rank bound, measured.

`python -m benchmarks.head_pruning [--prompts 32] [--new-tokens 16] [--model-dir <folder>]`
records the LM head's inputs while the model decodes a seeded sample of the bundled eval prompts
greedily (bf16), and asks, for each of those hidden states h, how much of the vocabulary an exact
pruned pick would still have to score. With P the projection onto the top-k right singular
vectors of the tied embedding E, every logit obeys

    h . e_v  <=  (P h) . (P e_v) + |(I - P) h| |(I - P) e_v|      (Cauchy-Schwarz on the residual)

so only the tokens whose bound reaches the true maximum logit can be the argmax: the pick would
cost a rank-k product over the whole vocabulary plus an exact product over those candidates. It
pays only if the candidates are a small share. Printed per k: the mean and largest share (float32
arithmetic; the bound is checked to hold for the argmax). docs/performance.md has the result.
"""

from __future__ import annotations

import argparse
import json

import torch

from benchmarks.decode_bound import add_model_dir_option, load_for_decoding, model_dir_from


def head_inputs(
    model_dir: str, n_prompts: int, new_tokens: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The LM head's inputs (one row per generated token) while `model_dir` decodes greedily, and
    the head's weight (the tied embedding), both in float32."""
    from mixmerge.evaluation.generation import prompt_text

    prompts, tokenizer, model, config = load_for_decoding(model_dir, n_prompts, seed, new_tokens)
    seen: list[torch.Tensor] = []
    hook = model.get_output_embeddings().register_forward_pre_hook(
        lambda _module, args: seen.append(args[0][:, -1, :].float().clone())
    )
    enc = tokenizer([prompt_text(tokenizer, p) for p in prompts], return_tensors="pt",
                    padding=True, add_special_tokens=False)  # fmt: skip
    with torch.inference_mode():
        model.generate(**enc, generation_config=config)
    hook.remove()
    return torch.cat(seen), model.get_output_embeddings().weight.detach().float()


def candidate_shares(hidden: torch.Tensor, embedding: torch.Tensor, ranks: list[int]) -> dict:
    """The mean largest logit, and per rank k the mean and largest share of the vocabulary whose
    bound reaches each state's largest logit."""
    logits = hidden @ embedding.T
    top = logits.max(-1).values
    # The bound is computed in another order than the logits: allow float32 rounding.
    best = top - 1e-4 * top.abs().clamp(min=1)
    _, _, vh = torch.linalg.svd(embedding, full_matrices=False)
    out: dict = {}
    for k in ranks:
        basis = vh[:k].T
        e_k, h_k = embedding @ basis, hidden @ basis
        e_rest = (embedding - e_k @ basis.T).norm(dim=-1)
        h_rest = (hidden - h_k @ basis.T).norm(dim=-1)
        bound = h_k @ e_k.T + h_rest[:, None] * e_rest[None, :]
        assert bool((bound.gather(1, logits.argmax(-1, keepdim=True)) >= best[:, None]).all())
        share = (bound >= best[:, None]).float().mean(-1)
        out[k] = {
            "mean_share": round(share.mean().item(), 4),
            "max_share": round(share.max().item(), 4),
        }
    return {"max_logit_mean": round(top.mean().item(), 2), "ranks": out}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.head_pruning", description=__doc__)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    add_model_dir_option(parser)
    args = parser.parse_args()
    hidden, embedding = head_inputs(model_dir_from(args), args.prompts, args.new_tokens, args.seed)
    result = {
        "hidden_states": hidden.shape[0],
        "vocabulary": embedding.shape[0],
        "hidden_norm_mean": round(hidden.norm(dim=-1).mean().item(), 1),
        **candidate_shares(hidden, embedding, [64, 128, 256, 384, 512]),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
