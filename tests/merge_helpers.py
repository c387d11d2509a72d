"""Tiny "fine-tuned" model families for the merge tests: a random base and perturbed copies of it."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from mixmerge.modeling import ensure_tiny_random
from mixmerge.provenance import PROVENANCE_FILE, parent_entry, write_provenance

ARCH = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}


def make_base(dest: Path, seed: int = 0, **arch: object) -> Path:
    """A tiny random Llama with the byte tokenizer (what `model=tiny_random` builds)."""
    return ensure_tiny_random(dest, {**ARCH, **arch}, seed=seed)


def make_finetuned(
    base: Path, dest: Path, seed: int, scale: float = 0.02, provenance: bool = True
) -> Path:
    """A copy of `base` with seeded noise on every weight, saved as `mixmerge.train` saves a model.

    Its provenance names `base` as its parent, as a trained model's does; provenance=False leaves
    it without one (a model mixmerge did not make).
    """
    model = AutoModelForCausalLM.from_pretrained(base)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    model.save_pretrained(dest)
    AutoTokenizer.from_pretrained(base).save_pretrained(dest)
    if provenance:
        write_provenance(
            dest, "train", name=dest.name, objective="sft", parent=parent_entry(base.name, base)
        )
    else:
        (dest / PROVENANCE_FILE).unlink(missing_ok=True)
    return dest


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a saved model, whatever its sharding."""
    out: dict[str, torch.Tensor] = {}
    for file in sorted(Path(folder).glob("*.safetensors")):
        out.update(load_file(file))
    return out
