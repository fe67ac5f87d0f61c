"""Several processes, one job: PyTorch DistributedDataParallel under ``torchrun`` (docs/design.md, "DDP").

``torchrun --nproc_per_node=N -m mtlat_edu train ...`` starts N copies of the command with the
variables ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set;
:func:`init` joins them into one process group (``env://``): NCCL when the processes use CUDA
devices, gloo on CPUs. Without those variables everything here is a no-op and the package runs
in one process as before.

How the work is split (the same rules in training and in evaluation):

* **The global batch stays ``batch_size``.** Every rank draws the same permutation of the
  training set (the data generator is seeded by the run seed, identically on every rank) and
  keeps its share of each global batch, :func:`local_positions`. For the adversarial methods the
  share is ``1/N`` of the clean half followed by ``1/N`` of the adversarial half, so the union of
  the ranks' clean (adversarial) images is exactly the clean (adversarial) half a single process
  would use; the loss is the mean over the local images and DDP averages the gradients over the
  ranks, which is the gradient of the mean over the global batch.
* **Per-rank random streams.** The per-step draws of Algorithm 1 (lambda, eps, target classes,
  Mixup permutations) come from a generator seeded by :func:`rank_seed`; rank 0 keeps the seed a
  single-process run uses.
* **Input gradients on the local replica.** :class:`ReplicaDDP` runs every forward whose input
  requires a gradient (the FGSM / PGD passes of the methods) and every forward without autograd
  on the local module: a backward to the input through DDP would leave DDP's reducer waiting for
  parameter gradients that never come (the next step fails, or the ranks hang in an all-reduce).
  The loss forward (inputs without gradient) goes through DDP, which all-reduces the weight
  gradients in the backward.
* **Evaluation** splits the images (or batches) of a set across ranks and sums the counts with
  :func:`all_reduce_sum`, so accuracies are identical to a single process on the same images.
"""
from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
import zlib

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
TIMEOUT = datetime.timedelta(minutes=30)  # a collective waits this long for a slow rank before failing
# Processes started by hand (RANK / WORLD_SIZE set without torchrun's agent) must all join within this
# time, so a lone or misnumbered rank fails in seconds instead of waiting for its partners forever.
JOIN_TIMEOUT = datetime.timedelta(seconds=10)


def env_int(name: str, default: int, low: int = 0, high: int | None = None) -> int:
    """The integer in the launcher variable ``name`` (``default`` when unset), checked to lie in
    [low, high]; anything else is a one-line error naming the variable."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        top = "" if high is None else f" and <= {high}"
        raise RuntimeError(f"{name}: must be an integer >= {low}{top}, got {raw!r} (a torchrun variable: start the "
                           f"command with torchrun, or unset {name} to run in one process)")
    return value


def launched() -> bool:
    """True when this process was started by ``torchrun`` (or another launcher) with WORLD_SIZE > 1."""
    return env_int("WORLD_SIZE", 1, low=1) > 1


def active() -> bool:
    """True inside an initialized process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the process that writes files and prints."""
    return rank() == 0


def local_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when ``device`` is an unindexed CUDA device under a
    launcher (one GPU per process), else ``device``."""
    if device.type == "cuda" and device.index is None and launched():
        device = torch.device("cuda", env_int("LOCAL_RANK", 0))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def init(device: torch.device) -> bool:
    """Join the launcher's process group (``env://``) once; NCCL for CUDA devices, gloo otherwise.

    Returns True when a group of several processes is active. Missing or malformed launcher
    variables with ``WORLD_SIZE > 1`` are an error naming them, a ``RANK`` outside
    ``[0, WORLD_SIZE)`` is refused at once, and processes started without torchrun's agent must all
    join within :data:`JOIN_TIMEOUT` (a lone rank fails in seconds, with a message).
    """
    if active() or not launched():
        return active()
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but {', '.join(missing)} "
                           "are not set: start the command with torchrun (torchrun --nproc_per_node=N -m mtlat_edu ...)")
    world = env_int("WORLD_SIZE", 1, low=1)
    rank_ = env_int("RANK", 0)
    env_int("LOCAL_RANK", 0)
    port = env_int("MASTER_PORT", 0, low=1, high=65535)
    if rank_ >= world:
        raise RuntimeError(f"RANK: {rank_} is outside [0, {world}) for WORLD_SIZE={world}; each of the {world} "
                           "processes needs its own rank from 0 to WORLD_SIZE - 1 (torchrun sets them)")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if os.environ.get("TORCHELASTIC_RUN_ID"):  # torchrun's agent has gathered every process already
        dist.init_process_group(backend, init_method="env://", timeout=TIMEOUT)
        return active()
    addr = os.environ["MASTER_ADDR"]
    try:
        if rank_ != 0:  # reach rank 0 first: torch's own retries log C++ tracebacks and take twice the timeout
            _wait_for_master(addr, port, JOIN_TIMEOUT.total_seconds())
        store = dist.TCPStore(addr, port, world, is_master=rank_ == 0, timeout=JOIN_TIMEOUT, wait_for_workers=True)
    except (RuntimeError, OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise RuntimeError(f"RANK={rank_} WORLD_SIZE={world}: the other processes did not join at {addr}:{port} "
                           f"within {JOIN_TIMEOUT.total_seconds():g} s ({first}); start all of them together "
                           f"(torchrun --nproc_per_node={world} -m mtlat_edu ...), or unset RANK and WORLD_SIZE "
                           "to run in one process") from None
    store.set_timeout(TIMEOUT)
    dist.init_process_group(backend, store=store, rank=rank_, world_size=world, timeout=TIMEOUT)
    return active()


def _wait_for_master(addr: str, port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((addr, port), timeout=1.0).close()
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing answers at {addr}:{port} ({exc.strerror or exc})") from None
            time.sleep(0.2)


def shutdown() -> None:
    """Leave the process group (the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_seed(seed: int, rank_: int) -> int:
    """The seed of rank ``rank_``'s per-step generator: ``seed + 1`` on rank 0 (a single-process
    run's), a stable 31-bit hash of ``(seed, rank)`` on the others."""
    if rank_ == 0:
        return seed + 1
    return zlib.crc32(f"mtlat-step|{seed}|{rank_}".encode()) & 0x7FFFFFFF


def check_batch_split(batch_size: int, world: int, halves: bool) -> None:
    """The global batch must split evenly: ``N`` shares, and for the adversarial methods ``N``
    shares of each half (each rank's local batch is then even too)."""
    unit = 2 * world if halves else world
    if batch_size % unit:
        what = (f"2 x {world} (each of the {world} processes takes an equal share of the clean and of the "
                "adversarial half)") if halves else f"{world} (one equal share per process)"
        raise ValueError(f"batch_size: the global batch {batch_size} must be a multiple of {what}")


def local_positions(batch_size: int, rank_: int, world: int, halves: bool) -> torch.Tensor:
    """Positions, within a global batch of ``batch_size``, of the images rank ``rank_`` trains on.

    ``halves=False``: the ``rank_``-th contiguous share. ``halves=True`` (adversarial methods):
    the ``rank_``-th share of the first half followed by the ``rank_``-th share of the second half,
    so the local batch keeps the clean-then-adversarial layout of :func:`methods.split_batch`.
    """
    check_batch_split(batch_size, world, halves)
    if not halves:
        b = batch_size // world
        return torch.arange(rank_ * b, (rank_ + 1) * b)
    h, q = batch_size // 2, batch_size // (2 * world)
    return torch.cat([torch.arange(rank_ * q, (rank_ + 1) * q), torch.arange(h + rank_ * q, h + (rank_ + 1) * q)])


def shard(n: int) -> range:
    """This rank's items of ``0..n-1`` when they are dealt out round robin (item ``i`` to rank ``i % N``)."""
    return range(rank(), n, world_size())


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum over the ranks of ``t`` (in place; ``t`` itself in a single process)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (a picklable object)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()


@torch.no_grad()
def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank before an evaluation:
    the forward passes of an attack run on the local replicas and update them rank by rank."""
    if active():
        for b in model.buffers():
            dist.broadcast(b, src=0)


class ReplicaDDP(DistributedDataParallel):
    """DistributedDataParallel whose input-gradient passes run on the local replica.

    A forward called with an input that requires a gradient (the attack passes of the methods:
    :func:`mtlat_edu.paper.adversarial.input_gradient` and the attacks of :mod:`mtlat_edu.robustness.attacks`) or
    with autograd off goes to ``self.module`` directly: no buffer broadcast, and nothing for DDP's
    reducer to wait for. Every other forward (the loss of the training step) is DDP's, whose
    backward all-reduces the weight gradients.
    """

    def __getattr__(self, name: str):
        """Attributes of the local model (e.g. a model's Manifold Mixup ``mix_points``) read through the wrapper."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("module"), name)

    def forward(self, *inputs, **kwargs):
        if not torch.is_grad_enabled() or any(isinstance(t, torch.Tensor) and t.requires_grad
                                              for t in (*inputs, *kwargs.values())):
            return self.module(*inputs, **kwargs)
        return super().forward(*inputs, **kwargs)


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` as a :class:`ReplicaDDP` in a group of several processes, unchanged otherwise."""
    if not active():
        return model
    return ReplicaDDP(model, device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def session(device: torch.device):
    """Join the launcher's process group for a command and leave it at the end."""
    started = not active() and launched()
    init(device)
    try:
        yield
    finally:
        if started:
            shutdown()
