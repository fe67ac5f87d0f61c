"""Models: every registered network takes [0, 1] images; normalization lives inside."""
import pytest
import torch

from mtlat_edu.models import IMAGENET_MEAN, IMAGENET_STD, MODELS, build_model


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_classifies_unit_range_images(name):
    model = build_model(name, num_classes=7).eval()
    size = 64 if name in ("resnet50", "resnext50") else 32
    with torch.no_grad():
        out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_normalization_is_inside_the_model():
    model = build_model("small_cnn").eval()
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), model.net((x - mean) / std))


def test_cifar_resnet18_keeps_resolution_in_the_stem():
    net = build_model("resnet18").net
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="model: unknown name 'vit'; valid names: resnet18"):
        build_model("vit")
    with pytest.raises(ValueError, match="num_classes"):
        build_model("small_cnn", 1)
