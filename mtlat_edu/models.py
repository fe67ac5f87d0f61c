"""Models, each taking float NCHW images in [0, 1].

Input normalization lives *inside* every model (a :class:`Normalize` first layer), so every
algorithm of the paper (Mixup eq. 1, FGSM eq. 2-5, the attacks of section 4.1) works in pixel
space, where the paper states its epsilons ("The range of pixel values of images in our
experiments is [0,1]", section 4.2).

Registry ``MODELS`` (name -> constructor ``fn(num_classes) -> nn.Module``):

* ``resnet18``        CIFAR-style ResNet-18 (torchvision's, with a 3x3 stride-1 stem, no max-pool)
* ``preact_resnet18`` Pre-activation ResNet-18 (He et al. 2016), CIFAR-style
* ``resnet50``        torchvision ResNet-50, the paper's model for 224 px inputs (section 4.2)
* ``resnext50``       torchvision ResNeXt-50 32x4d, the paper's second model (section 4.2)
* ``vgg``             a VGG-11-style network with batch norm: the black-box surrogate (section 4.1)
* ``vgg_small``       the same VGG-11 layout at a quarter of the width, the surrogate of CPU runs
* ``small_cnn``       a small, fast CNN for laptop-CPU runs

Manifold Mixup (Verma et al., ICML 2019; used by the ``manifold_mtlat`` method): every model built
by :func:`build_model` carries ``mix_points``, the submodules after which hidden representations
may be mixed, and :func:`mtlat_edu.paper.mixup.manifold_forward` runs "up to layer ``l``, mix the couples, continue"
(layer 0 is the input, as in the reference code's ``layer_mix = randint(0, 2)``).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision import models as tvm

from mtlat_edu.core.checks import ImageTypeError, check_int, check_nchw
from mtlat_edu.core.registry import Registry

# Per-channel statistics used for the in-model normalization. ImageNet's are the usual choice
# for both CIFAR and ImageNet data; any fixed affine map is equivalent up to the first layer.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel, as the first layer of a model (inputs stay in [0, 1])."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_nchw(x, "x", self.mean.shape[1])  # shape only: a 1-channel batch must not broadcast silently
        if not x.is_floating_point():  # dtype only (no value read, no GPU synchronisation)
            raise ImageTypeError(f"x: expected float images in [0, 1], got dtype {x.dtype}"
                                 + (" (uint8 images: use x.float() / 255)" if x.dtype == torch.uint8 else ""))
        return (x - self.mean) / self.std


class NormalizedModel(nn.Sequential):
    """``Normalize`` followed by a classifier; ``.net`` is the bare classifier."""

    def __init__(self, net: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.net = net


def _cifar_resnet18(num_classes: int) -> nn.Module:
    net = tvm.resnet18(num_classes=num_classes)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


class PreActBlock(nn.Module):
    """BN-ReLU-conv pre-activation basic block (He et al., Identity Mappings, 2016)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = torch.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + skip


class PreActResNet18(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        layers, cin = [], 64
        for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [PreActBlock(cin, cout, stride), PreActBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(512)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.layers(self.stem(x))
        x = self.pool(torch.relu(self.bn(x)))
        return self.fc(torch.flatten(x, 1))


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGG(nn.Module):
    """VGG-11 layout with batch norm (Simonyan and Zisserman's config "A").

    The spatial size is reduced by an adaptive average pool before the classifier, so the same
    network serves 32 px (CIFAR) and 224 px (ImageNet-100) inputs. ``width`` is the number of
    channels of the first stage (64 in VGG-11; every stage scales with it).
    """

    CONFIG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")

    def __init__(self, num_classes: int = 10, width: int = 64):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in self.CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                cout = v * width // 64
                layers += _conv_bn_relu(cin, cout)
                cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU stages (32-64-128-256 channels) and a linear head: trains in seconds on a CPU."""

    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_conv_bn_relu(3, w), nn.MaxPool2d(2),
            *_conv_bn_relu(w, 2 * w), nn.MaxPool2d(2),
            *_conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2),
            *_conv_bn_relu(4 * w, 8 * w),
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.classifier = nn.Linear(8 * w, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


# Manifold Mixup's hidden mixing points of each model (the fact "mix_points": submodule names inside
# ``.net``): the end of the first and of the second stage, as Verma et al. mix a PreAct ResNet after
# its first and second residual stages (layers 1 and 2; layer 0, the input, is always allowed).
_VGG_POINTS = {"mix_points": ("features.3", "features.7")}       # after the first and second max-pool
_RESNET_POINTS = {"mix_points": ("layer1", "layer2")}

# kind: the inputs a model is designed for: "cifar" (32 px: a stride-1 stem, no max-pool), "imagenet"
# (224 px: torchvision's stems, the paper's models of section 4.2), "any" (an adaptive pool before the head).
MODELS = Registry("model", kinds=("cifar", "imagenet", "any"))
MODELS.add("resnet18", _cifar_resnet18, label="ResNet-18", kind="cifar", facts=_RESNET_POINTS,
           description="CIFAR-style ResNet-18 (torchvision's, with a 3x3 stride-1 stem, no max-pool)")
MODELS.add("preact_resnet18", PreActResNet18, label="PreAct ResNet-18", kind="cifar",
           facts={"mix_points": ("layers.1", "layers.3")},
           description="Pre-activation ResNet-18 (He et al. 2016), CIFAR-style")
MODELS.add("resnet50", lambda n: tvm.resnet50(num_classes=n), label="ResNet-50", kind="imagenet",
           facts=_RESNET_POINTS,
           description="torchvision ResNet-50, the paper's model for 224 px inputs (section 4.2)")
MODELS.add("resnext50", lambda n: tvm.resnext50_32x4d(num_classes=n), label="ResNeXt-50", kind="imagenet",
           facts=_RESNET_POINTS,
           description="torchvision ResNeXt-50 32x4d, the paper's second model (section 4.2)")
MODELS.add("vgg", VGG, label="VGG-11", kind="any", facts=_VGG_POINTS,
           description="a VGG-11-style network with batch norm: the black-box surrogate (section 4.1)")
MODELS.add("vgg_small", lambda n: VGG(n, width=16), label="VGG-11/4", kind="any", facts=_VGG_POINTS,
           description="the same VGG-11 layout at a quarter of the width, the surrogate of CPU runs")
MODELS.add("small_cnn", SmallCNN, label="small CNN", kind="any", facts=_VGG_POINTS,
           description="a small, fast CNN for laptop-CPU runs")
MODELS.add("small_cnn_wide", lambda n: SmallCNN(n, width=64), label="small CNN x2", kind="any", facts=_VGG_POINTS,
           description="the small CNN at twice the width (4x the parameters): the larger point of docs/claims.md")

# A view of the entries' mixing points, ``{name: submodule names}`` (a model registered without them
# mixes at the input only).
MIX_POINTS: dict[str, tuple[str, ...]] = {n: MODELS.fact(n, "mix_points") for n in MODELS.names()
                                          if MODELS.fact(n, "mix_points", None)}


def mix_points(name: str) -> tuple[str, ...]:
    """The hidden mixing points of model ``name`` (submodule names inside ``.net``), () for none."""
    return MODELS.fact(name, "mix_points", ())


def mix_layer_count(name: str) -> int:
    """The mixing layers of model ``name``: 0 (the input) to ``mix_layer_count(name) - 1``."""
    return 1 + len(mix_points(name))


def build_model(name: str, num_classes: int = 10) -> NormalizedModel:
    """Build a registered model that takes [0, 1] images (normalization is its first layer)."""
    build = MODELS.lookup(name)
    check_int(num_classes, "num_classes", 2)
    model = NormalizedModel(build(num_classes))
    model.mix_points = tuple(model.net.get_submodule(p) for p in mix_points(name))
    # Convolution weights in channels-last order (NHWC): the CPU's oneDNN kernels run the small CNN's
    # training step 1.44-1.48x and its evaluation 1.70x faster than in NCHW (issue 23,
    # ``python -m benchmarks.memory_format``), and cuDNN prefers it too. Inputs stay NCHW; every
    # convolution reads them as they come, and ``.to(device)`` and ``load_state_dict`` keep the order.
    return model.to(memory_format=torch.channels_last)
