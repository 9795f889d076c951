"""Device-resident batches without a DataLoader: the whole (small) split lives on the device."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from lightning_reg.errors import check_int

__all__ = ["DeviceResidentLoader"]


class DeviceResidentLoader:
    """Iterate ``(x, y)`` batches drawn by index from tensors already on the training device.

    Shuffling uses a ``torch.Generator`` seeded by ``seed`` and the epoch (from ``epoch_fn``, normally the
    trainer's ``current_epoch``), so it is reproducible and resumable. With ``world_size > 1`` every rank
    takes its own strided shard of the same permutation, trimmed to equal length so no rank waits.

    Example:
        >>> loader = DeviceResidentLoader(torch.arange(10.0).view(10, 1), torch.arange(10), batch_size=4)
        >>> [len(b[0]) for b in loader]
        [4, 4, 2]
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epoch_fn: Callable[[], int] | None = None,
    ) -> None:
        check_int("batch_size", batch_size, low=1)
        self.x, self.y = x, y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch_fn = epoch_fn
        self._calls = 0

    def _indices(self) -> torch.Tensor:
        n = self.x.shape[0]
        if self.shuffle:
            epoch = self.epoch_fn() if self.epoch_fn is not None else self._calls
            gen = torch.Generator().manual_seed(self.seed * 10_007 + epoch)
            idx = torch.randperm(n, generator=gen)
        else:
            idx = torch.arange(n)
        per_rank = n // self.world_size
        return idx[self.rank :: self.world_size][:per_rank].to(self.x.device)

    def __len__(self) -> int:
        per_rank = self.x.shape[0] // self.world_size
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self._indices()
        self._calls += 1
        for b in range(len(self)):
            sel = idx[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.x[sel], self.y[sel]
