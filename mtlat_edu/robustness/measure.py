"""Measuring accuracy: the one place where the package counts correct predictions.

The robustness score of the paper (section 5.1, eq. 7) divides the accuracy on perturbed images
by the clean accuracy; every accuracy the package reports is counted here:

* :func:`count_correct`, the primitive: how many images of one batch the model classifies
  correctly, in eval mode (:func:`mtlat_edu.core.modes.eval_mode`, the modes restored afterwards),
  without gradients, in float32 or (``amp``) under bf16 autocast.
* :func:`accuracy`, a whole set (an :class:`~mtlat_edu.data.ImageData`, a streamed
  :class:`~mtlat_edu.data.FileImageData`, or image and label tensors), batched; the clean test
  accuracy of training (:func:`mtlat_edu.training.loop.epoch_accuracy`) and the course's figures.
* :func:`attack_accuracy`, the accuracy under one attack of section 4.1 (Table 1c).
* :func:`measure_models` / :func:`measure_cell`, one cell of the benchmark (clean, a corruption at
  a severity, or an attack) for several models on shared perturbed batches, with per-batch seeded
  randomness; the suite of :mod:`mtlat_edu.benchmark.suite`, the robustness tracked during
  training and the corruption files all measure through it.

Under ``torchrun`` every function that takes a whole set splits it over the processes and sums
the counts (:mod:`mtlat_edu.core.distributed`), so each returns what one process would:
:func:`accuracy` gives each rank a contiguous share of the images, :func:`measure_models` deals
batch ``b`` to rank ``b % N`` (a batch's random draws depend only on ``b``).

Imports: this module sits above :mod:`~mtlat_edu.robustness.attacks` and
:mod:`~mtlat_edu.robustness.corruptions` (it applies them); training and the benchmark import it.
"""
from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Callable, Sequence

import torch

from mtlat_edu.core import distributed as D
from mtlat_edu.core.checks import check_choice, check_int, check_labels, check_nchw, model_channels, resolve_device
from mtlat_edu.core.modes import eval_mode
from mtlat_edu.data import FileImageData, ImageData, batches as make_batches
from mtlat_edu.robustness import attacks as A
from mtlat_edu.robustness import corruptions as C

CLEAN = "clean"  # the unperturbed cell of the benchmark


# ---------------------------------------------------------------------------------------------
# the primitive


def count_correct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, amp: bool = False) -> torch.Tensor:
    """How many images of the batch ``x`` ``model`` classifies as ``y``: a 0-d int64 tensor on the
    images' device (no host synchronisation, so counts can be summed on a GPU).

    The model runs in eval mode (each submodule's mode is restored afterwards, also on an error),
    without gradients, and with ``amp`` under bf16 autocast. The inputs are not validated here:
    the functions below (and every caller) check them once at their entry.
    """
    with eval_mode(model), torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        return (model(x).argmax(1) == y).sum()


def model_device(model: torch.nn.Module, default=None) -> torch.device:
    """The device of ``model``'s parameters (``default``, else the CPU, for a model without any)."""
    param = next(iter(model.parameters()), None)
    if param is not None:
        return param.device
    return torch.device(default) if default is not None else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# a whole set


def _share(data, lo: int, hi: int):
    """Images ``lo:hi`` of an :class:`ImageData`, a :class:`FileImageData` or ``(images, labels)``."""
    if lo == 0 and hi == len(data):
        return data
    if isinstance(data, FileImageData):
        return dataclasses.replace(data, samples=data.samples[lo:hi])
    if isinstance(data, ImageData):
        return ImageData(data.images[lo:hi], data.labels[lo:hi], data.classes, data.name)
    return data[0][lo:hi], data[1][lo:hi]


def _check_image_tensor(images, labels, model, name: str) -> None:
    """A uint8 or float NCHW image tensor with the model's channels and one int64 label per image."""
    if not (isinstance(images, torch.Tensor) and images.dim() == 4
            and (images.dtype == torch.uint8 or images.is_floating_point())):
        raise ValueError(f"{name}: expected a uint8 (0..255) or float ([0, 1]) NCHW image tensor, got "
                         f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
    check_nchw(images, name, model_channels(model))
    check_labels(labels, None, images.shape[0], "labels")  # float labels refused, not truncated
    if images.shape[0] == 0:
        raise ValueError(f"{name}: the set is empty")


def _tensor_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device):
    """Float [0, 1] batches of uint8 (0..255) or float images, with their labels, on ``device``."""
    for start in range(0, images.shape[0], batch_size):
        x = images[start:start + batch_size].to(device)
        if x.dtype == torch.uint8:
            x = x.float().div_(255)
        yield x, labels[start:start + batch_size].to(device)


def accuracy(model: torch.nn.Module, data, labels: torch.Tensor | None = None, *, batch_size: int = 256,
             device=None, amp: bool = False, workers: int = 4,
             perturb: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> float:
    """The fraction of ``data`` that ``model`` classifies correctly (in eval mode), counted in batches.

    Args:
        data: an :class:`~mtlat_edu.data.ImageData`, a :class:`~mtlat_edu.data.FileImageData`
            (decoded by ``workers`` processes), or an NCHW image tensor, uint8 (0..255) or float
            in [0, 1], with its ``labels``.
        batch_size: images per batch.
        device: where to count (default: the device of ``model``'s parameters).
        amp: count under bf16 autocast (the training's fast path on a GPU).
        perturb: ``perturb(x, y) -> x'`` applied to every float batch before counting (an attack,
            see :func:`attack_accuracy`).

    Under torchrun each rank counts a contiguous share of the images and the counts are summed,
    so the accuracy is the single-process one.
    """
    check_int(batch_size, "batch_size")
    check_int(workers, "workers", 0)
    if isinstance(data, (ImageData, FileImageData)):
        if labels is not None:
            raise ValueError("labels: an ImageData or FileImageData carries its labels; pass labels only "
                             "with an image tensor")
        if isinstance(data, ImageData):
            check_nchw(data.images, "data.images", model_channels(model))
        source = data
    elif isinstance(data, torch.Tensor):
        _check_image_tensor(data, labels, model, "data")
        source = (data, labels)
    else:
        raise ValueError(f"data: expected an ImageData, a FileImageData (data.load_dataset) or an image tensor "
                         f"with labels, got {type(data).__name__}")
    n = len(data)
    if n == 0:
        raise ValueError("data: the set is empty")
    device = torch.device(device) if device is not None else model_device(model, getattr(data, "device", None))
    r, w = D.rank(), D.world_size()
    share = _share(source, n * r // w, n * (r + 1) // w)
    if isinstance(share, tuple):
        batches = _tensor_batches(*share, batch_size, device)
    else:
        batches = make_batches(share, batch_size, device, workers=workers)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for x, y in batches:
        if perturb is not None:
            x = perturb(x, y)
        correct += count_correct(model, x, y, amp=amp)
    return D.all_reduce_sum(correct).item() / n


def attack_accuracy(name: str, model, images: torch.Tensor, labels: torch.Tensor, surrogate=None,
                    batch_size: int = 256, device=None, generator: torch.Generator | None = None) -> float:
    """Accuracy of ``model`` on the images attacked with ``name`` (section 4.1), computed in batches.

    ``images`` are uint8 NCHW (0..255) or float NCHW in [0, 1]; each batch is converted and moved to
    ``device`` (default: the device of ``model``'s parameters) and attacked with
    :func:`mtlat_edu.robustness.attacks.run_attack` (black-box attacks crafted on ``surrogate``),
    the random starts drawn from ``generator`` batch after batch (under torchrun each rank attacks
    its contiguous share, see :func:`accuracy`). The robustness score of the paper (section 5.1) is
    this accuracy divided by the clean accuracy.
    """
    A.get_attack(name)
    _check_image_tensor(images, labels, model, "images")

    def attack(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return A.run_attack(name, model, x, y, surrogate=surrogate, generator=generator)

    return accuracy(model, images, labels, batch_size=batch_size, device=device, perturb=attack)


# ---------------------------------------------------------------------------------------------
# one benchmark cell


def _seed_of(*parts) -> int:
    """A stable 31-bit seed from the parts (the same in every process, unlike ``hash``)."""
    return zlib.crc32("|".join(map(str, parts)).encode()) & 0x7FFFFFFF


def perturbation_names() -> tuple[str, ...]:
    """Every cell :func:`measure_models` knows: clean, the corruptions, the attacks."""
    return (CLEAN, *C.CORRUPTIONS, *A.ATTACKS)


def measure_models(models: Sequence[torch.nn.Module], data: ImageData, perturbation: str = CLEAN,
                   severity: int = 0, *, seed: int = 0, batch_size: int = 256, device=None,
                   surrogate: torch.nn.Module | None = None) -> list[int]:
    """How many images of ``data`` each of ``models`` classifies correctly under one benchmark cell:
    ``perturbation`` "clean", a corruption at ``severity`` (1..5), or an attack (black-box ones are
    crafted on ``surrogate``, the paper's VGG), in float32 and eval mode.

    The perturbed batches are shared by every model, as the paper evaluates every model on one
    corrupted test set: a corruption and a black-box attack are computed once per batch, a
    white-box attack once per model, each batch ``b`` drawing its randomness (a random
    corruption's noise, PGD's random start) from a generator seeded by ``(seed, perturbation,
    severity, b)``. So a batch's result does not depend on which process measures it: under
    torchrun this rank measures the batches :func:`mtlat_edu.core.distributed.shard` deals it and
    the counts are summed over the ranks.
    """
    check_choice(perturbation, "perturbation", perturbation_names())
    if perturbation in A.ATTACKS and not A.ATTACKS[perturbation].black_box:
        return measure_attack_columns(models, data, (perturbation,), seed=seed, batch_size=batch_size,
                                      device=device)[perturbation]
    if not isinstance(data, ImageData):
        raise ValueError(f"data: expected an ImageData, got {type(data).__name__}")
    check_int(batch_size, "batch_size")
    check_int(seed, "seed", 0)
    black_box = perturbation in A.ATTACKS
    if black_box and surrogate is None:
        raise ValueError(f"surrogate: the black-box attack {perturbation!r} is crafted on a surrogate model "
                         "(the paper: a VGG trained on the same training set); pass surrogate=...")
    device = resolve_device(device)
    correct = torch.zeros(len(models), dtype=torch.int64, device=device)
    n = len(data)
    for b in D.shard(math.ceil(n / batch_size)):
        idx = slice(b * batch_size, (b + 1) * batch_size)
        y = data.labels[idx].to(device)
        batch_seed = _seed_of(seed, perturbation, severity, b)
        if perturbation in C.CORRUPTIONS:  # the 8-bit images straight in: the output of their float
            # conversion bit for bit, without that conversion for pixelate and JPEG (8-bit corruptions)
            x = C.corrupt(data.images[idx].to(device, non_blocking=True), perturbation, severity,
                          generator=torch.Generator().manual_seed(batch_seed))
        else:
            x = data.float_images(idx, device)
            if black_box:
                x = A.run_attack(perturbation, surrogate, x, y, surrogate=surrogate,
                                 generator=torch.Generator().manual_seed(batch_seed))
        for i, model in enumerate(models):
            correct[i] += count_correct(model, x, y)
    D.all_reduce_sum(correct)
    return [int(c) for c in correct.tolist()]


def measure_attack_columns(models: Sequence[torch.nn.Module], data: ImageData, names: Sequence[str], *,
                           seed: int = 0, batch_size: int = 256, device=None) -> dict[str, list[int]]:
    """``{column: correct counts per model}`` for white-box attack columns of one attack's run
    (:func:`mtlat_edu.robustness.attacks.family`: an attack and its readings, e.g. ``cw_l2`` and
    ``cw_l2_kappa50``): the attack runs ONCE per model and batch, and each column counts the images
    its success rule returns (:func:`mtlat_edu.robustness.attacks.run_attacks`). Batch ``b`` draws
    its randomness from a generator seeded by ``(seed, attack, 0, b)`` (:func:`measure_models`)."""
    names = tuple(names)
    for name in names:
        check_choice(name, "perturbation", A.ATTACKS.names(kind="white-box"))
    if not isinstance(data, ImageData):
        raise ValueError(f"data: expected an ImageData, got {type(data).__name__}")
    check_int(batch_size, "batch_size")
    check_int(seed, "seed", 0)
    base = A.family(names[0]) if names else None
    device = resolve_device(device)
    correct = torch.zeros(len(names), len(models), dtype=torch.int64, device=device)
    n = len(data)
    for b in D.shard(math.ceil(n / batch_size)):
        x = data.float_images(slice(b * batch_size, (b + 1) * batch_size), device)
        y = data.labels[b * batch_size:(b + 1) * batch_size].to(device)
        batch_seed = _seed_of(seed, base, 0, b)
        for i, model in enumerate(models):
            images = A.run_attacks(names, model, x, y, generator=torch.Generator().manual_seed(batch_seed))
            for j, name in enumerate(names):
                correct[j, i] += count_correct(model, images[name], y)
    D.all_reduce_sum(correct)
    return {name: [int(c) for c in row] for name, row in zip(names, correct.tolist())}


def logit_gap(model: torch.nn.Module, data: ImageData, *, batch_size: int = 256, device=None) -> float:
    """The model's "logit scale": the mean over ``data`` of the gap between its top-1 and top-2
    logits on the clean images (eval mode, float32). C&W's success rule asks the best other class
    to beat the true one by ``kappa = 50`` logits (docs/attacks.md): this says how far that is."""
    if not isinstance(data, ImageData):
        raise ValueError(f"data: expected an ImageData, got {type(data).__name__}")
    check_int(batch_size, "batch_size")
    device = resolve_device(device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    n = len(data)
    for b in D.shard(math.ceil(n / batch_size)):
        x = data.float_images(slice(b * batch_size, (b + 1) * batch_size), device)
        with eval_mode(model), torch.no_grad():
            top = model(x).float().topk(2, dim=1).values
        total += (top[:, 0] - top[:, 1]).double().sum()
    return float(D.all_reduce_sum(total).item()) / n


def measure_cell(model: torch.nn.Module, data: ImageData, perturbation: str = CLEAN, severity: int = 0, *,
                 seed: int = 0, batch_size: int = 256, device=None,
                 surrogate: torch.nn.Module | None = None) -> int:
    """How many images of ``data`` ``model`` classifies correctly under one benchmark cell
    (:func:`measure_models` for one model): the very code and random draws of the benchmark's
    cell with the same ``seed`` and ``batch_size`` (sharded under torchrun)."""
    return measure_models([model], data, perturbation, severity, seed=seed, batch_size=batch_size, device=device,
                          surrogate=surrogate)[0]
