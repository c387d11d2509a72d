"""Reference log-probabilities, computed once per (reference model, data) and cached on disk.

The cache key is a content fingerprint of the reference model's files (mixmerge.fingerprints) and of the tokenised pairs, so a
rerun reuses it and any change to either invalidates it. The reference model is loaded only for
this pass and freed before training starts.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mixmerge.fingerprints import model_fingerprint
from mixmerge.modeling import load_causal_lm
from mixmerge.training.dpo import PreferenceCollator, concatenated_logps

log = logging.getLogger(__name__)


def fingerprint_pairs(examples: Any, max_length: int) -> str:
    digest = hashlib.sha256(str(max_length).encode())
    for ex in examples:
        for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
            digest.update(repr(ex[key]).encode())
    return digest.hexdigest()[:16]


def autocast_for(precision: str) -> contextlib.AbstractContextManager:
    """Compute reference log-probs in the precision the policy trains in, so they start equal."""
    if str(precision).startswith("bf16"):
        return torch.autocast("cuda" if torch.cuda.is_available() else "cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def reference_logps(
    model_path: str,
    examples: Any,
    pad_token_id: int,
    cache_dir: str | Path,
    max_length: int,
    precision: str,
    batch_size: int = 8,
    trust_remote_code: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(chosen, rejected) reference log-probs for every pair, from the cache when possible."""
    # Per-file digests are remembered under cache_dir, so an 8B reference is hashed once.
    model_fp = model_fingerprint(model_path, cache_dir)[:16]
    key = f"{model_fp}-{fingerprint_pairs(examples, max_length)}-{str(precision).split('-')[0]}"
    cache_file = Path(cache_dir) / f"{key}.pt"
    info = {"cache_file": str(cache_file), "model": str(model_path), "key": key}
    if cache_file.is_file():
        cached = torch.load(cache_file)
        log.info("Reference log-probs reused from %s", cache_file)
        return cached["chosen"], cached["rejected"], {**info, "reused": True}

    model = load_causal_lm(model_path, trust_remote_code=trust_remote_code).eval()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    loader = DataLoader(
        examples, batch_size=batch_size, shuffle=False, collate_fn=PreferenceCollator(pad_token_id)
    )
    chosen, rejected = [], []
    with torch.inference_mode(), autocast_for(precision):
        for batch in tqdm(loader, desc="Reference log-probs"):
            c, r = concatenated_logps(model, {k: v.to(device) for k, v in batch.items()})
            chosen.append(c.float().cpu())
            rejected.append(r.float().cpu())
    del model
    gc.collect()
    result = {"chosen": torch.cat(chosen), "rejected": torch.cat(rejected)}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp")
    torch.save(result, tmp)
    tmp.replace(cache_file)
    return result["chosen"], result["rejected"], {**info, "reused": False}
