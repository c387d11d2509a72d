"""Reference log-probabilities, computed once per (reference model, data) and cached on disk.

The cache key is a content fingerprint of the reference model's files (mixmerge.fingerprints) and
of the tokenised pairs, so a rerun reuses it and any change to either invalidates it. When the
reference is the model training starts from (the default), the pass runs on the policy's own,
still untrained weights, so no second copy is ever loaded; another reference model is loaded only
for this pass and freed before training starts. Pairs are packed into rows as in training (or,
unpacked, scored in length order), so little of the pass is padding.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mixmerge.data.datamodule import row_lengths
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


def scoring_device() -> torch.device:
    """This process's GPU (LOCAL_RANK under a multi-process launcher), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def reference_logps(
    model_path: str,
    examples: Any,
    pad_token_id: int,
    cache_dir: str | Path,
    max_length: int,
    precision: str,
    batch_size: int = 8,
    trust_remote_code: bool = False,
    loaded: Any = None,
    pack_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(chosen, rejected) reference log-probs for every pair, from the cache when possible.

    `loaded`: the model at `model_path`, already in memory (the policy before training); it is
    used as it is instead of loading another copy. `pack_length`: pack each batch's sequences into
    rows of that many tokens (as training does), else pad them.
    """
    # Per-file digests are remembered under cache_dir, so an 8B reference is hashed once.
    model_fp = model_fingerprint(model_path, cache_dir)[:16]
    key = f"{model_fp}-{fingerprint_pairs(examples, max_length)}-{str(precision).split('-')[0]}"
    cache_file = Path(cache_dir) / f"{key}.pt"
    info = {"cache_file": str(cache_file), "model": str(model_path), "key": key}
    if cache_file.is_file():
        cached = torch.load(cache_file)
        log.info("Reference log-probs reused from %s", cache_file)
        return cached["chosen"], cached["rejected"], {**info, "reused": True}

    model = (
        loaded
        if loaded is not None
        else load_causal_lm(model_path, trust_remote_code=trust_remote_code)
    )
    chosen, rejected = score_pairs(
        model, examples, pad_token_id, precision, batch_size, pack_length
    )
    if loaded is None:
        del model
        gc.collect()
    result = {"chosen": chosen, "rejected": rejected}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")  # ranks of a multi-process run race here
    torch.save(result, tmp)
    tmp.replace(cache_file)
    return chosen, rejected, {**info, "reused": False}


def score_pairs(
    model: Any,
    examples: Any,
    pad_token_id: int,
    precision: str,
    batch_size: int,
    pack_length: int | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) log-probs of every pair under `model`, in the examples' order; the
    model is left in the mode (train/eval) it came in."""
    was_training = model.training
    model.eval()
    device = scoring_device()
    model.to(device)  # (the policy stays there: it is this process's training device too)
    # Padded rows: longest pairs first, so each batch is padded to about its own length. Packed
    # rows: the data's order, since mixed lengths pack tighter.
    order = list(range(len(examples)))
    if not pack_length:
        order.sort(key=row_lengths(examples).__getitem__, reverse=True)
    loader = DataLoader(
        [examples[i] for i in order],
        batch_size=batch_size,
        shuffle=False,
        collate_fn=PreferenceCollator(pad_token_id, pack_length),
    )
    chosen = torch.empty(len(order))
    rejected = torch.empty(len(order))
    index = torch.tensor(order)
    done = 0
    # no_grad, not inference_mode: tensors a model caches here (rotary tables) must stay usable
    # when the same model trains next.
    with torch.no_grad(), autocast_for(precision):
        for batch in tqdm(loader, desc="Reference log-probs"):
            c, r = concatenated_logps(model, {k: v.to(device) for k, v in batch.items()})
            rows = index[done : done + len(c)]
            chosen[rows], rejected[rows] = c.float().cpu(), r.float().cpu()
            done += len(c)
    model.train(was_training)
    return chosen, rejected
