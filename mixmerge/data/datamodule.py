"""The LightningDataModule: tokenised mixture → padded (optionally packed) batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import datasets
import lightning as L
import torch
from torch.utils.data import DataLoader

from mixmerge.data.formatting import IGNORE_INDEX, encode_example


def encode_records(
    records: list[dict[str, Any]], tokenizer: Any, objective: str, max_length: int
) -> tuple[datasets.Dataset, int]:
    """Tokenise a mixture with `datasets.map`; returns the dataset and how many examples were too long."""
    table = datasets.Dataset.from_list(records)

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        encoded = encode_example(tokenizer, row, objective, max_length)
        keys = (
            ("input_ids", "labels")
            if objective == "sft"
            else ("prompt_ids", "chosen_ids", "rejected_ids")
        )
        return {"keep": encoded is not None, **{k: (encoded or {}).get(k, []) for k in keys}}

    encoded = table.map(encode, remove_columns=table.column_names, desc="Tokenizing")
    kept = encoded.filter(lambda row: row["keep"]).remove_columns("keep")
    return kept, len(encoded) - len(kept)


def pack(examples: datasets.Dataset, max_length: int) -> list[dict[str, list[int]]]:
    """Greedy packing of whole SFT examples into rows of at most `max_length` tokens.

    Each packed row carries `position_ids` restarting at every example. Attention is not
    block-diagonal with SDPA/eager attention (only flash-attention uses the restarts), so examples
    in one row can attend to earlier ones: the usual trade of packing for throughput.
    """
    rows: list[dict[str, list[int]]] = []
    current: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for ex in examples:
        if current["input_ids"] and len(current["input_ids"]) + len(ex["input_ids"]) > max_length:
            rows.append(current)
            current = {"input_ids": [], "labels": [], "position_ids": []}
        current["input_ids"] += ex["input_ids"]
        current["labels"] += ex["labels"]
        current["position_ids"] += list(range(len(ex["input_ids"])))
    if current["input_ids"]:
        rows.append(current)
    return rows


def pad(sequences: Sequence[Sequence[int]], value: int, left: bool = False) -> torch.Tensor:
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for i, seq in enumerate(sequences):
        if seq:
            if left:
                out[i, width - len(seq) :] = torch.tensor(seq)
            else:
                out[i, : len(seq)] = torch.tensor(seq)
    return out


class SFTCollator:
    """Right-pads `input_ids`/`labels` (and `position_ids` for packed rows)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        ids = [f["input_ids"] for f in features]
        batch = {
            "input_ids": pad(ids, self.pad_token_id),
            "labels": pad([f["labels"] for f in features], IGNORE_INDEX),
            "attention_mask": pad([[1] * len(s) for s in ids], 0),
        }
        if "position_ids" in features[0]:
            batch["position_ids"] = pad([f["position_ids"] for f in features], 0)
        return batch


class MixtureDataModule(L.LightningDataModule):
    """Serves an already tokenised mixture; shuffling is seeded so a run is reproducible."""

    def __init__(
        self, examples: Any, collate_fn: Any, batch_size: int, seed: int, num_workers: int = 0
    ):
        super().__init__()
        self.examples = examples
        self.collate_fn = collate_fn
        self.batch_size = batch_size
        self.seed = seed
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.examples,
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            drop_last=False,
        )
