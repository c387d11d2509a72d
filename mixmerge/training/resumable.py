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

from torch.utils.data import DataLoader, DistributedSampler

from mixmerge.data.datamodule import MixtureDataModule


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
    so single- and multi-process runs share one code path and Lightning leaves it in place.
    """

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        sampler = DistributedSampler(
            self.examples,
            num_replicas=trainer.world_size if trainer else 1,
            rank=trainer.global_rank if trainer else 0,
            shuffle=True,
            seed=self.seed,
            drop_last=False,
        )
        return ResumableDataLoader(
            self.examples,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            drop_last=False,
        )
