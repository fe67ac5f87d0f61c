"""Named run settings ("profiles") shared by the notebooks, the CLI and ``make reproduce``.

=========  ===================  ==========  =====================================================
profile    data                 model       budget
=========  ===================  ==========  =====================================================
smoke      generated (offline)  small_cnn   seconds on a CPU; for tests only, not real data
cpu        CIFAR-10, 10k train  small_cnn   tens of minutes on a laptop CPU
cifar10    CIFAR-10, full       resnet18    the GPU reproduction (flip+crop augmentation)
paper      ImageNet-100, 224px  resnet50    section 4.2's recipe: 90 epochs, batch 256 (days)
=========  ===================  ==========  =====================================================

:func:`train_profile` trains every method of Tables 1-3 plus the VGG surrogate of the black-box
attacks into ``<runs>/<profile>/<method>/`` and reuses the runs already finished there.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from .data import ImageData, load_dataset
from .methods import METHODS
from .train import TrainConfig, TrainResult, fit

TABLE_METHODS = ("standard", "mixup", "fgsm", "target_fgsm", "ls", "tlat", "iat", "mtlat")
SURROGATE = "vgg_surrogate"


@dataclass(frozen=True)
class Profile:
    name: str
    dataset: str
    model: str
    epochs: int
    batch_size: int
    data_root: str | None = None
    image_size: int | None = None
    train_limit: int | None = None
    test_limit: int | None = None        # clean test accuracy during training
    eval_limit: int | None = None        # images of the robustness benchmark (corruptions)
    attack_limit: int | None = None      # images attacked (white-box attacks are the slow part)
    augment: str = "none"
    surrogate_epochs: int | None = None  # defaults to ``epochs``
    surrogate_model: str = "vgg"
    methods: tuple[str, ...] = TABLE_METHODS
    description: str = ""

    def train_config(self, method: str, **overrides) -> TrainConfig:
        """The :class:`TrainConfig` of ``method`` under this profile."""
        if method not in METHODS:
            raise ValueError(f"method: unknown name {method!r}; valid names: {', '.join(METHODS)}")
        cfg = TrainConfig(method=method, model=self.model, dataset=self.dataset, data_root=self.data_root,
                          image_size=self.image_size, train_limit=self.train_limit, test_limit=self.test_limit,
                          epochs=self.epochs, batch_size=self.batch_size, augment=self.augment)
        return dataclasses.replace(cfg, **overrides)

    def surrogate_config(self, **overrides) -> TrainConfig:
        """The VGG surrogate of the black-box attacks: trained with ``standard`` on the same data."""
        return self.train_config("standard", model=self.surrogate_model,
                                 epochs=self.surrogate_epochs or self.epochs, **overrides)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", dataset="synthetic", model="small_cnn", epochs=1, batch_size=64, train_limit=768,
        test_limit=200, eval_limit=64, attack_limit=32,
        description="generated data, seconds on a CPU: checks that everything runs (not real data)"),
    "cpu": Profile(
        "cpu", dataset="cifar10", model="small_cnn", epochs=6, batch_size=128, train_limit=10000,
        eval_limit=1000, attack_limit=500, surrogate_model="vgg_small",
        description="CIFAR-10, 10k training images, a small CNN: a laptop CPU in under an hour"),
    "cifar10": Profile(
        "cifar10", dataset="cifar10", model="resnet18", epochs=18, batch_size=512, augment="flipcrop",
        surrogate_epochs=10, description="CIFAR-10, ResNet-18, all 60k images: the GPU reproduction"),
    "paper": Profile(
        "paper", dataset="imagenet100", model="resnet50", epochs=90, batch_size=256, image_size=224,
        description="ImageNet-100 at 224 px, ResNet-50, the paper's full recipe (section 4.2)"),
}


def get_profile(name: str, **overrides) -> Profile:
    """A registered profile, with optional field overrides (e.g. ``data_root=...``)."""
    if name not in PROFILES:
        raise ValueError(f"profile: unknown name {name!r}; valid names: {', '.join(PROFILES)}")
    return dataclasses.replace(PROFILES[name], **overrides)


def run_dir(profile: Profile, runs_root, method: str) -> Path:
    return Path(runs_root) / profile.name / method


def load_profile_data(profile: Profile, split: str, limit: int | None = None, seed: int = 0) -> ImageData:
    """The profile's ``split`` (optionally a class-balanced subset of ``limit`` images)."""
    return load_dataset(profile.dataset, split, profile.data_root, profile.image_size, limit, seed)


def train_profile(profile: Profile, runs_root="runs", methods=None, surrogate: bool = True,
                  device: str = "auto", progress: bool = True, **overrides) -> dict[str, TrainResult]:
    """Train ``methods`` (default: the profile's) and the VGG surrogate; finished runs are reused.

    Returns ``{method: TrainResult}`` (the surrogate under :data:`SURROGATE`).
    """
    methods = tuple(methods or profile.methods)
    first = profile.train_config(methods[0] if methods else "standard")
    train = load_dataset(first.dataset, "train", first.data_root, first.image_size, first.train_limit, first.seed)
    test = load_dataset(first.dataset, "test", first.data_root, first.image_size, first.test_limit, first.seed)
    jobs = [(m, profile.train_config(m, device=device, **overrides)) for m in methods]
    if surrogate:
        jobs.append((SURROGATE, profile.surrogate_config(device=device, **overrides)))
    return {name: fit(cfg, run_dir(profile, runs_root, name), train, test, progress=progress) for name, cfg in jobs}
