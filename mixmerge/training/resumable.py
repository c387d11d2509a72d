"""Batches whose order survives a restart: resuming mid-epoch continues with the next batch.

Lightning 2.6 restores the step counter from a checkpoint, but a plain DataLoader restarts its
epoch from the first batch of a fresh shuffle (it only warns), so a resumed run would see other
data than an uninterrupted one. Here the shuffle order is a function of (seed, epoch) and the
loader's position within the epoch is saved in every checkpoint (Lightning stores the
`state_dict` of any train loader that has one) and skipped on resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler
from transformers.trainer_pt_utils import get_length_grouped_indices

from mixmerge.data.datamodule import MixtureDataModule, row_lengths


class LengthGroupedSampler(DistributedSampler):
    """A DistributedSampler whose batches hold rows of similar length, so little of each batch is
    padding (DPO pairs; SFT when not packed).

    Rows are shuffled, sorted by length within mega-batches of 50 global batches (transformers'
    `get_length_grouped_indices`), cut into global batches (`batch_size` × replicas), and the
    batches are shuffled again (the one holding the longest row stays first, so a too-large batch
    fails at once). Each replica takes its share of every global batch. The order is a function of
    (seed, epoch), as DistributedSampler's is, so a resumed run sees the same batches.
    """

    def __init__(self, dataset: Any, lengths: list[int], batch_size: int, **kwargs: Any):
        super().__init__(dataset, shuffle=True, drop_last=False, **kwargs)
        self.lengths = lengths
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        world = self.batch_size * self.num_replicas
        order = get_length_grouped_indices(self.lengths, world, 50, generator)
        batches = [order[i : i + world] for i in range(0, len(order), world)]
        # Mega-batches are whole multiples of `world`: only the last batch can be short, and it
        # must stay last, or every later batch would straddle two groups.
        last = [batches.pop()] if len(batches) > 1 and len(batches[-1]) < world else []
        middle = [batches[k + 1] for k in torch.randperm(len(batches) - 1, generator=generator)]
        order = [i for b in [batches[0], *middle, *last] for i in b]
        while len(order) < self.total_size:  # every replica gets the same number of rows
            order += order[: self.total_size - len(order)]
        mine: list[int] = []
        for start in range(0, self.total_size, world):
            chunk = order[start : start + world]
            share = len(chunk) // self.num_replicas
            mine += chunk[self.rank * share : (self.rank + 1) * share]
        return iter(mine)


class ResumableDataLoader(DataLoader):
    """A DataLoader that remembers how many batches of which epoch it has served."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._epoch = 0
        self._served = 0
        self._resume_at: dict[str, int] | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # A generator: nothing runs until the first batch is requested, which Lightning does only
        # after it has called the sampler's set_epoch for the epoch being trained.
        epoch = int(getattr(self.sampler, "epoch", 0))
        skip = 0
        if self._resume_at is not None and self._resume_at["epoch"] == epoch:
            skip = min(self._resume_at["batches"], len(self))
        self._resume_at = None
        self._epoch, self._served = epoch, skip
        batches = super().__iter__()
        for _ in range(skip):  # already trained on before the restart: load, don't train
            next(batches)
        for batch in batches:
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._served}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume_at = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}


class ResumableDataModule(MixtureDataModule):
    """MixtureDataModule whose train loader shuffles by (seed, epoch) and resumes mid-epoch.

    The sampler is a DistributedSampler for every world size (one replica on a single device),
    so single- and multi-process runs share one code path and Lightning leaves it in place;
    with `group_by_length` it is the length-grouped one.
    """

    def __init__(self, *args: Any, group_by_length: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.group_by_length = group_by_length

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        replicas = {
            "num_replicas": trainer.world_size if trainer else 1,
            "rank": trainer.global_rank if trainer else 0,
            "seed": self.seed,
        }
        if self.group_by_length:
            sampler: DistributedSampler = LengthGroupedSampler(
                self.examples, row_lengths(self.examples), self.batch_size, **replicas
            )
        else:
            sampler = DistributedSampler(self.examples, shuffle=True, drop_last=False, **replicas)
        return ResumableDataLoader(
            self.examples,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            drop_last=False,
        )
