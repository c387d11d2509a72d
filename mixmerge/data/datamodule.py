"""The LightningDataModule: tokenised mixture → padded (optionally packed) batches."""

from __future__ import annotations

import bisect
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


def best_fit_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group items into rows of at most `capacity` tokens, best-fit decreasing: each item, longest
    first, goes into the fullest row it still fits. Returns each row's item indices.

    It fills rows to ~99% on typical length mixes where packing in data order (next-fit) leaves a
    quarter of each row empty; items over half a row can never share one.
    """
    members: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row), sorted: the tightest row that fits
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        k = bisect.bisect_left(free, (lengths[i], -1))
        if k < len(free):
            room, row = free.pop(k)
            members[row].append(i)
        else:
            room, row = capacity, len(members)
            members.append([i])
        if room - lengths[i] > 0:
            bisect.insort(free, (room - lengths[i], row))
    return members


def packed_row(
    ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], items: list[int]
) -> dict[str, list[int]]:
    """One packed row: the items' tokens end to end, `position_ids` restarting at each item, and
    `sequence_index` naming the item each token belongs to.

    The model is then called without an attention mask, and transformers derives a block-diagonal
    causal mask from the restarts (SDPA, eager and flash attention alike), so an item never attends
    to its row-mates and its log-probs are the ones it would have alone.
    """
    return {
        "input_ids": [t for i in items for t in ids[i]],
        "labels": [t for i in items for t in labels[i]],
        "position_ids": [p for i in items for p in range(len(ids[i]))],
        "sequence_index": [i for i in items for _ in ids[i]],
    }


def pack(examples: datasets.Dataset, max_length: int) -> list[dict[str, list[int]]]:
    """Pack whole SFT examples into rows of at most `max_length` tokens (see `best_fit_rows` and
    `packed_row`); the examples' indices are not needed after packing and are dropped."""
    ids, labels = list(examples["input_ids"]), list(examples["labels"])
    rows = [
        packed_row(ids, labels, items) for items in best_fit_rows([len(x) for x in ids], max_length)
    ]
    for row in rows:
        del row["sequence_index"]
    return rows


def row_lengths(examples: datasets.Dataset | list[dict[str, list[int]]]) -> list[int]:
    """Tokens per training row (a DPO pair counts its longer side), for length-grouped batches."""

    def column(name: str) -> list[int]:
        values = (
            examples[name]
            if isinstance(examples, datasets.Dataset)
            else (e[name] for e in examples)
        )
        return [len(v) for v in values]

    first = examples[0]
    if "input_ids" in first:
        return column("input_ids")
    prompt, chosen, rejected = column("prompt_ids"), column("chosen_ids"), column("rejected_ids")
    return [p + max(c, r) for p, c, r in zip(prompt, chosen, rejected, strict=True)]


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
    """Right-pads `input_ids`/`labels` (and `position_ids` for packed rows).

    The attention mask marks the real tokens (what the benchmark counts); for packed rows the model
    is called without it (mixmerge.training.logprobs), since the packing mask comes from `position_ids`.
    """

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
