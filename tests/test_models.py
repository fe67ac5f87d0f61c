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


def test_models_are_channels_last_and_compute_what_nchw_computes():
    """build_model returns convolution weights in channels-last order (issue 23: the CPU kernels are
    faster); the order survives a state-dict round trip and the function is the NCHW one's."""
    from mtlat_edu.benchmark.suite import weights_identity

    torch.manual_seed(0)
    model = build_model("small_cnn").eval()
    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() for w in convs)
    nchw = build_model("small_cnn").to(memory_format=torch.contiguous_format).eval()
    nchw.load_state_dict(model.state_dict())
    assert all(m.weight.is_contiguous() for m in nchw.modules() if isinstance(m, torch.nn.Conv2d))
    again = build_model("small_cnn").eval()
    again.load_state_dict(nchw.state_dict())  # an NCHW checkpoint loads into channels-last weights
    assert all(m.weight.is_contiguous(memory_format=torch.channels_last)
               for m in again.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        a, b = model(x), nchw(x)
    assert a.shape == (8, 10) and torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    # the benchmark cache's model key reads values, not memory layout
    assert weights_identity(model) == weights_identity(nchw) == weights_identity(again)
