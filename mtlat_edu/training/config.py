"""One run's settings: :class:`TrainConfig` (the paper's recipe, section 4.2) and its schedule.

Recipe (defaults of :class:`TrainConfig`): Adam, lr 0.002, weight decay 1e-4, the learning
rate divided by 10 at the end of epochs 30, 60 and 80 of 90, batch 256, cross-entropy, Mixup
``alpha = 0.4`` (:data:`mtlat_edu.paper.mixup.DEFAULT_ALPHA`), training FGSM
``eps ~ U[0, 0.025]`` (:data:`mtlat_edu.paper.adversarial.EPS_MAX`). For shorter runs the three
drops keep their place as fractions of the run (30/90, 60/90 and 80/90 of all steps), applied per
step so that a 3-epoch run still sees them (:func:`lr_factor`).

Used by :mod:`mtlat_edu.training.loop` (``fit``), the profiles and the ``mtlat-edu train`` and
``train-profile`` options (:mod:`mtlat_edu.cli`, generated from the fields: :func:`setting`).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from mtlat_edu.core.checks import check_choice, check_int, check_positive, check_range, resolve_device
from mtlat_edu.data import AUGMENTATIONS, DATA_MODES, DATASETS
from mtlat_edu.models import MODELS, mix_layer_count
from mtlat_edu.paper.adversarial import TARGET_SELECTION
from mtlat_edu.paper.methods import ADVERSARIAL, METHODS, MethodConfig
from mtlat_edu.robustness.attacks import ATTACKS, paper_attacks
from mtlat_edu.robustness.corruptions import CORRUPTIONS

PAPER_EPOCHS = 90
PAPER_MILESTONES = (30, 60, 80)
FAST_PATH = ("auto", "on", "off")
TRACK_ATTACKS = tuple(n for n in ATTACKS.names(kind="white-box") if n in paper_attacks())  # pgd, pgd_ll, cw_l2
TRACK_SEVERITY = 3          # severity of the optional tracked corruption
_METHOD = MethodConfig()    # the methods' defaults (the paper's, section 4.2): the one source of them
# TrainConfig fields that are MethodConfig's (copied into it by ``method_config``; validated there, once)
METHOD_FIELDS = tuple(f.name for f in dataclasses.fields(MethodConfig) if f.name != "num_classes")


# fields that do not change the trained weights: a checkpoint resumes whatever their values
NOT_IDENTITY = ("device", "compile", "eval_batch_size", "fast_path", "data_mode", "workers",
                "track_robustness", "track_attacks", "track_corruption", "track_every")


def field_value(value):
    """A TrainConfig field's value as the dataclass holds it: a list (from argparse, or read back
    from ``config.json`` / a checkpoint) becomes a tuple; anything else is returned as is."""
    return tuple(value) if isinstance(value, list) else value


def setting(default, help: str = "", *, choices=None, metavar: str | None = None, flag: str | None = None,
            option: str | None = None):
    """A :class:`TrainConfig` field with what its command-line option needs, so that a setting is
    declared once, here: ``mtlat-edu train``, ``train-profile`` and ``reproduce`` generate their options
    from the fields (:func:`mtlat_edu.cli.add_setting_options`; type, ``nargs`` and flags from the
    annotation, the default from the field), and the notebooks take any of them in their ``settings``.

    ``help``: the option's help; ``choices``: the allowed names (a registry or a tuple); ``metavar``;
    ``flag``: the option string of a bool whose default is True (``--no-amp`` sets ``amp`` False);
    ``option``: set when the field has no generated option, saying where it comes from instead (the
    command's own option, or why it has none)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices, "metavar": metavar,
                                                        "flag": flag, "option": option})


def option_exceptions() -> dict[str, str]:
    """``{field: why}`` for the fields without a generated option of their own name (``setting(option=...)``,
    or a ``flag`` such as ``--no-amp``)."""
    out = {}
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if meta.get("option") or meta.get("flag"):
            out[f.name] = meta.get("option") or f"{meta['flag']} turns it off"
    return out


@dataclass
class TrainConfig:
    """Everything that defines a training run (defaults: the paper's recipe, section 4.2). Each field
    is declared once, with its option (:func:`setting`): the ``train`` and ``train-profile`` options,
    their defaults and checks follow from it."""

    method: str = setting("mtlat", option="--method takes several methods, one run each")
    model: str = setting("resnet18", choices=MODELS)
    dataset: str = setting("cifar10", choices=DATASETS)
    data_root: str | None = setting(None, "dataset folder (ImageFolder tree with train/ and test/, ...)")
    image_size: int | None = setting(None)
    train_limit: int | None = setting(None, "class-balanced subset of the training set")
    test_limit: int | None = setting(None)
    epochs: int = setting(90)
    batch_size: int = setting(256)
    lr: float = setting(0.002)
    weight_decay: float = setting(1e-4)
    # the methods' hyper-parameters: defaults from MethodConfig (one source, paper/methods.py)
    alpha: float = setting(_METHOD.alpha, "Mixup Beta(alpha, alpha), eq. (1)")
    eps_max: float = setting(_METHOD.eps_max, "training FGSM eps ~ U[0, eps_max]")
    per_batch: bool = setting(_METHOD.per_batch, "one lambda and one eps per batch instead of per couple")
    target: str = setting(_METHOD.target, "how the training attacks pick y_target: " + "; ".join(
        f"{e.name}: {e.description}" for e in TARGET_SELECTION.entries()), choices=TARGET_SELECTION)
    augment: str = setting("none", choices=AUGMENTATIONS)
    seed: int = setting(0, option="--seed, or --seeds for several runs")
    device: str = setting("auto", "cpu, cuda, cuda:1 ... (auto: CUDA when available)")
    amp: bool = setting(True, "bf16 autocast on the fast path", flag="--no-amp")
    channels_last: bool = setting(True, option="part of the fast path (--fast-path): the batches in channels-last "
                                  "order (the weights always are, build_model)")
    compile: bool = setting(False, "torch.compile the model (with the fast path)")
    eval_batch_size: int = setting(1000, option="the test-set batch: no effect on the results")
    fast_path: str = setting("auto", "bf16 autocast, channels_last, --compile: auto = on CUDA only; on = also on "
                             "the CPU", choices=FAST_PATH)
    sync_bn: bool = setting(False, "under torchrun: batch-norm statistics over the global batch (SyncBatchNorm)")
    data_mode: str = setting("auto", "memory: decode the dataset into RAM (cached); stream: DataLoader workers "
                             "decode each batch from the files; auto: stream above 4 GiB of decoded images",
                             choices=DATA_MODES)
    workers: int = setting(4, "decoding processes of --data-mode stream")
    track_robustness: int = setting(0, "after every epoch, record the PGD accuracy (eps 0.04, 10 it.) on N fixed "
                                    "test images", metavar="N")
    track_attacks: tuple[str, ...] = setting(("pgd",), "with --track-robustness: the white-box attacks tracked "
                                             "(default: pgd)", choices=TRACK_ATTACKS)
    track_corruption: str | None = setting(None, "with --track-robustness: also record the accuracy under this "
                                           "corruption (severity 3)", metavar="NAME")
    track_every: int = setting(1, "with --track-robustness: record epoch 1, every K-th epoch after it and the last "
                               "(default: every epoch)", metavar="K")
    # options of the methods beyond the paper (docs/future.md); the others ignore them
    pgd_steps: int = setting(_METHOD.pgd_steps, "mtlat_pgd: targeted PGD iterations k (1 without random start = mtlat)")
    pgd_step_factor: float = setting(_METHOD.pgd_step_factor, "mtlat_pgd: PGD step size = factor * eps / k "
                                     "(Madry et al.'s 2.5)")
    pgd_random_start: bool = setting(_METHOD.pgd_random_start, "mtlat_pgd: start the PGD from a uniform random "
                                     "point of the eps-ball")
    manifold_layers: tuple[int, ...] = setting(_METHOD.manifold_layers, "manifold_mtlat: the layers to mix at, one "
                                               "drawn per batch (0 = the input)", metavar="L")

    def validate(self) -> "TrainConfig":
        """Check every field once, at the entry (``fit`` calls it; the training steps do not re-check)."""
        check_choice(self.method, "method", METHODS)
        check_choice(self.model, "model", MODELS)
        check_choice(self.dataset, "dataset", DATASETS)
        check_choice(self.augment, "augment", AUGMENTATIONS)
        check_int(self.epochs, "epochs")
        check_int(self.batch_size, "batch_size")
        check_int(self.eval_batch_size, "eval_batch_size")
        check_int(self.seed, "seed", 0)
        check_int(self.image_size, "image_size", 1, optional=True, what="the dataset's own size")
        check_int(self.train_limit, "train_limit", 1, optional=True, what="all images")
        check_int(self.test_limit, "test_limit", 1, optional=True, what="all images")
        if self.data_root is not None and not isinstance(self.data_root, str):
            raise ValueError(f"data_root: expected a folder path (a str) or None, got {self.data_root!r}")
        resolve_device(self.device)
        if self.method in ADVERSARIAL and (self.batch_size < 2 or self.batch_size % 2):
            raise ValueError(f"batch_size: method {self.method!r} splits each batch into a clean and an "
                             f"adversarial half, so it must be even and >= 2, got {self.batch_size}")
        check_positive(self.lr, "lr")
        check_range(self.weight_decay, "weight_decay", 0.0, 1.0)
        self.method_config(10)  # validates alpha, eps_max, target and the other method options (once)
        check_choice(self.fast_path, "fast_path", FAST_PATH)
        check_choice(self.data_mode, "data_mode", DATA_MODES)
        check_int(self.workers, "workers", 0)
        check_int(self.track_robustness, "track_robustness", 0)
        check_int(self.track_every, "track_every", 1)
        self.track_attacks = tuple(self.track_attacks)
        if not self.track_attacks:
            raise ValueError(f"track_attacks: name at least one of {', '.join(TRACK_ATTACKS)}")
        for name in self.track_attacks:
            check_choice(name, "track_attacks", TRACK_ATTACKS)
        if self.track_corruption is not None:
            check_choice(self.track_corruption, "track_corruption", CORRUPTIONS)
            if not self.track_robustness:
                raise ValueError("track_corruption: needs track_robustness > 0 (the number of test images tracked)")
        if max(self.manifold_layers) >= mix_layer_count(self.model):
            raise ValueError(f"manifold_layers: model {self.model!r} mixes at layers 0 (the input) to "
                             f"{mix_layer_count(self.model) - 1}, got {list(self.manifold_layers)}")
        return self

    def method_config(self, num_classes: int) -> MethodConfig:
        """The :class:`MethodConfig` of this run (checks the method options; a list of
        ``manifold_layers`` becomes a tuple, so that the run's identity does not depend on it)."""
        mcfg = MethodConfig(num_classes=num_classes, **{name: getattr(self, name) for name in METHOD_FIELDS})
        self.manifold_layers = mcfg.manifold_layers
        return mcfg

    def tracks(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (1-based) ends with a robustness record: with ``track_robustness``,
        epoch 1, every ``track_every``-th epoch after it (1, 1 + k, 1 + 2k, ...) and the last."""
        return bool(self.track_robustness) and ((epoch - 1) % self.track_every == 0 or epoch == self.epochs)

    def resolved_device(self) -> torch.device:
        return resolve_device(self.device)

    def fast(self, device: torch.device) -> bool:
        """Whether the GPU fast path (bf16 autocast, channels_last, torch.compile) is on for ``device``."""
        return self.fast_path == "on" or (self.fast_path == "auto" and device.type == "cuda")

    def identity(self) -> dict:
        """The fields that must match for a checkpoint to be resumed: not the device and speed
        settings, and not the robustness tracking (it draws from its own generators, so the weights
        of a run with it are those of the run without it; tested), so a finished run is reused
        whether or not it was tracked."""
        d = dataclasses.asdict(self)
        for k in NOT_IDENTITY:
            d.pop(k)
        return d

    def differences(self, saved) -> dict:
        """``{field: (saved value, this value)}`` for the :meth:`identity` fields in which a saved run's
        config (a dict: ``config.json``, a checkpoint's ``config``) differs from this one; a field added
        after the run was saved counts with its default. Empty: the same run."""
        asked = self.identity()
        if not isinstance(saved, dict):
            return {"config": (saved, "a dict of training settings")}
        defaults = TrainConfig().identity()
        values = {k: field_value(saved.get(k, defaults.get(k))) for k in asked}
        return {k: (v, asked[k]) for k, v in values.items() if v != asked[k]}


def lr_factor(step: int, total_steps: int, epochs_ref: int = PAPER_EPOCHS,
              milestones=PAPER_MILESTONES) -> float:
    """The paper's step schedule as a function of progress: /10 after each milestone fraction."""
    passed = sum(step >= round(m / epochs_ref * total_steps) for m in milestones)
    return 0.1 ** passed
