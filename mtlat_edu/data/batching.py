"""Batching: float [0, 1] batches cut on the device from an in-memory set, or decoded from files.

:class:`DeviceBatches` keeps a whole :class:`~mtlat_edu.data.sources.ImageData` on the device and
cuts batches there, with no DataLoader workers (airbench's approach). :class:`StreamBatches` gives
the same batches, in the same order, for a :class:`~mtlat_edu.data.sources.FileImageData` left on
disk: DataLoader workers decode each batch with the in-memory path's decoder
(:func:`~mtlat_edu.data.files.decode_image`). :func:`batches` picks the one that fits the data.
"""
from __future__ import annotations

import math

import torch

from mtlat_edu.core.checks import check_int
from mtlat_edu.data.files import ImageFileError, decode_image
from mtlat_edu.data.sources import FileImageData, ImageData


class DeviceBatches:
    """Iterate over an :class:`ImageData` in float [0, 1] batches cut on ``device``.

    The uint8 images are moved to the device once; each epoch draws a permutation from
    ``generator`` (a CPU generator, so runs repeat on any device). ``drop_last`` keeps every
    batch the same size (the adversarial methods need an even one). ``positions`` keeps only
    those positions of every batch (a rank's share under DDP, :func:`distributed.local_positions`).
    """

    def __init__(self, data: ImageData, batch_size: int, device="cpu", shuffle: bool = False,
                 drop_last: bool = False, generator: torch.Generator | None = None,
                 positions: torch.Tensor | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size, self.device = batch_size, torch.device(device)
        self.shuffle, self.drop_last, self.generator = shuffle, drop_last, generator
        self.positions = positions.to(self.device) if positions is not None else None

    def __len__(self) -> int:
        n = self.labels.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = self.labels.shape[0]
        if self.shuffle:
            order = torch.randperm(n, generator=self.generator).to(self.device)
        else:
            order = torch.arange(n, device=self.device)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            if self.positions is not None:  # this rank's share of the global batch (distributed.local_positions)
                idx = idx[self.positions]
            yield self.images[idx].float().div_(255), self.labels[idx]


class FileListDataset(torch.utils.data.Dataset):
    """A (path, label) list decoded lazily, for DataLoader streaming of large sets (ImageNet-100)."""

    def __init__(self, samples: list[tuple[str, int]], image_size: int | None = 224):
        self.samples, self.image_size = samples, image_size

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        try:
            return decode_image(path, self.image_size), label
        except ImageFileError as exc:  # handed to the main process as one line (see StreamBatches)
            return str(exc), label


def _stack(batch):
    """A batch of decoded images, or ``(message, None)`` for a file that could not be used: an
    exception raised in a DataLoader worker reaches the main process wrapped in a traceback, a
    message travels as data and is raised there in one line."""
    imgs, labels = zip(*batch)
    bad = next((i for i in imgs if isinstance(i, str)), None)
    if bad is not None:
        return bad, None
    shapes = {tuple(i.shape) for i in imgs}
    if len(shapes) != 1:
        return f"images of different sizes {sorted(shapes)[:3]}...: pass image_size to resize them", None
    return torch.stack(imgs), torch.tensor(labels, dtype=torch.int64)


class StreamBatches:
    """:class:`DeviceBatches` for a :class:`FileImageData`: the same batches, decoded by ``workers``
    DataLoader processes (uint8, pinned when the device is CUDA) and converted to float [0, 1] on
    ``device`` after a non-blocking copy.

    The order is drawn exactly as :class:`DeviceBatches` draws it (one ``randperm`` per epoch from
    ``generator``), and ``positions`` selects the same share of each global batch, so a run sees
    the same images in the same order whichever path holds the data.
    """

    def __init__(self, data: FileImageData, batch_size: int, device="cpu", shuffle: bool = False,
                 drop_last: bool = False, generator: torch.Generator | None = None,
                 positions: torch.Tensor | None = None, workers: int = 4):
        check_int(batch_size, "batch_size")
        check_int(workers, "workers", 0)
        self.data, self.batch_size, self.device = data, batch_size, torch.device(device)
        self.shuffle, self.drop_last, self.generator = shuffle, drop_last, generator
        self.positions, self.workers = positions, workers

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def index_batches(self) -> list[list[int]]:
        """This epoch's batches as dataset indices (draws the epoch's permutation)."""
        n = len(self.data)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        out = []
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            out.append((idx[self.positions] if self.positions is not None else idx).tolist())
        return out

    def __iter__(self):
        loader = torch.utils.data.DataLoader(
            FileListDataset(self.data.samples, self.data.size), batch_sampler=self.index_batches(),
            num_workers=self.workers, collate_fn=_stack, pin_memory=self.device.type == "cuda")
        for x, y in loader:
            if isinstance(x, str):
                raise ImageFileError(x)
            yield (x.to(self.device, non_blocking=True).float().div_(255),
                   y.to(self.device, non_blocking=True))


def batches(data, batch_size: int, device="cpu", shuffle: bool = False, drop_last: bool = False,
            generator: torch.Generator | None = None, positions: torch.Tensor | None = None, workers: int = 4):
    """:class:`DeviceBatches` for an :class:`ImageData`, :class:`StreamBatches` for a :class:`FileImageData`."""
    if isinstance(data, FileImageData):
        return StreamBatches(data, batch_size, device, shuffle, drop_last, generator, positions, workers)
    return DeviceBatches(data, batch_size, device, shuffle, drop_last, generator, positions)
