"""Tests of mtlat_edu.robustness.measure and mtlat_edu.core.modes: the package's one accuracy count
and its one eval-mode context, on a model whose answers are known by hand.

The model (:class:`Brightness`) calls an image class 1 when its mean pixel value exceeds 0.5, else
class 0. On images of one constant grey level the prediction, and the effect of an L-inf attack
(every pixel moves by the same amount towards the threshold), can be worked out on paper.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from mtlat_edu.core.modes import eval_mode
from mtlat_edu.data import ImageData
from mtlat_edu.robustness import measure as M

pytestmark = pytest.mark.usefixtures("one_thread")


class Brightness(nn.Module):
    """Logits ``10 * (m - 0.5) * [-1, 1]`` with ``m`` the image's mean: class 1 iff ``m > 0.5``.

    It records the mode it ran in (``seen``), holds a dropout (a submodule whose mode matters) and a
    ``frozen`` submodule a caller may keep in eval mode, and raises on demand (``fail``)."""

    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.0)
        self.frozen = nn.Identity()
        self.seen: list[bool] = []
        self.fail = False

    def forward(self, x):
        self.seen.append(self.training)
        if self.fail:
            raise RuntimeError("forward failed on purpose")
        m = self.drop(x).mean(dim=(1, 2, 3))
        return 10.0 * (m - 0.5)[:, None] * torch.tensor([-1.0, 1.0])


class Inverted(Brightness):
    """Class 1 iff the mean is below 0.5: wrong wherever :class:`Brightness` is right."""

    def forward(self, x):
        return super().forward(1 - x)


def grey(levels, size: int = 4) -> torch.Tensor:
    """uint8 NCHW images, image i filled with the grey level ``levels[i]`` (0..255)."""
    return torch.tensor(levels, dtype=torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, size, size).contiguous()


# five images: levels 26, 230, 179, 77, 153 (means 0.10, 0.90, 0.70, 0.30, 0.60) -> classes 0 1 1 0 1
LEVELS = [26, 230, 179, 77, 153]
LABELS = torch.tensor([0, 1, 0, 0, 1])  # the third is wrong: 4 of 5 correct


def test_count_correct_on_a_batch_known_by_hand():
    model = Brightness()
    x = grey(LEVELS).float() / 255
    count = M.count_correct(model, x, LABELS)
    assert count.dtype == torch.int64 and count.dim() == 0 and count.item() == 4
    assert M.count_correct(model, x, 1 - LABELS).item() == 1
    assert M.count_correct(model, x[:0], LABELS[:0]).item() == 0


def test_accuracy_of_tensors_and_image_sets_batched():
    model = Brightness()
    images = grey(LEVELS)
    for batch_size in (1, 2, 5, 64):  # uneven last batches too
        assert M.accuracy(model, images, LABELS, batch_size=batch_size) == pytest.approx(0.8)
        assert M.accuracy(model, images.float() / 255, LABELS, batch_size=batch_size) == pytest.approx(0.8)
        data = ImageData(images, LABELS, ["dark", "bright"], "grey")
        assert M.accuracy(model, data, batch_size=batch_size) == pytest.approx(0.8)
    # a perturbation applied to every batch before counting: inverting the images flips every prediction
    assert M.accuracy(model, images, LABELS, batch_size=2, perturb=lambda x, y: 1 - x) == pytest.approx(0.2)


def test_accuracy_validates_its_input():
    model = Brightness()
    images = grey(LEVELS)
    with pytest.raises(ValueError, match="batch_size: must be an integer >= 1"):
        M.accuracy(model, images, LABELS, batch_size=0)
    with pytest.raises(ValueError, match="labels: expected a 1-d int64"):
        M.accuracy(model, images, LABELS.float())
    with pytest.raises(ValueError, match="labels: expected 5 integer class indices"):
        M.accuracy(model, images, LABELS[:3])
    with pytest.raises(ValueError, match="data: expected a uint8"):
        M.accuracy(model, images[0], LABELS)
    with pytest.raises(ValueError, match="data: expected an ImageData"):
        M.accuracy(model, [1, 2, 3], LABELS)
    with pytest.raises(ValueError, match="labels: an ImageData .* carries its labels"):
        M.accuracy(model, ImageData(images, LABELS, ["a", "b"]), LABELS)
    with pytest.raises(ValueError, match="data: the set is empty"):
        M.accuracy(model, images[:0], LABELS[:0])


@pytest.mark.parametrize("count", [
    lambda m: M.count_correct(m, grey(LEVELS).float() / 255, LABELS),
    lambda m: M.accuracy(m, grey(LEVELS), LABELS, batch_size=2),
    lambda m: M.measure_cell(m, ImageData(grey(LEVELS), LABELS, ["a", "b"]), "clean", batch_size=2),
], ids=["count_correct", "accuracy", "measure_cell"])
def test_counts_run_in_eval_mode_and_restore_the_modes(count):
    model = Brightness()
    model.train()
    model.frozen.eval()  # a submodule the caller keeps in eval mode stays so
    count(model)
    assert model.seen and not any(model.seen)  # every forward pass ran in eval mode
    assert model.training and model.drop.training and not model.frozen.training
    model.eval()
    count(model)
    assert not model.training  # eval before, eval after
    model.train()
    model.frozen.eval()
    model.fail = True
    with pytest.raises(RuntimeError, match="on purpose"):
        count(model)
    assert model.training and model.drop.training and not model.frozen.training  # restored after an error too


def test_eval_mode_restores_each_submodule_and_survives_an_exception():
    model = Brightness()
    model.train()
    model.frozen.eval()
    with eval_mode(model) as inside:
        assert inside is model
        assert not model.training and not model.drop.training and not model.frozen.training
        assert torch.is_grad_enabled()  # the gradient mode is the caller's
    assert model.training and model.drop.training and not model.frozen.training
    with pytest.raises(KeyError):
        with eval_mode(model):
            raise KeyError("inside the block")
    assert model.training and model.drop.training and not model.frozen.training


# attacks on the brightness model: the input gradient has the same sign on every pixel, so PGD's
# final iterate moves every pixel by exactly eps = 0.04 towards the threshold (random start inside
# the ball, 10 steps of 0.01 projected back onto it). Levels 120 (0.471, class 0) and 130 (0.510,
# class 1) cross it; 140 (0.549, class 1) and 26, 230 do not.
ATTACKED_LEVELS = [120, 130, 140, 26, 230]
ATTACKED_LABELS = torch.tensor([0, 1, 1, 0, 1])


def test_attack_accuracy_and_the_benchmark_cell_known_by_hand():
    model = Brightness()
    images = grey(ATTACKED_LEVELS)
    assert M.accuracy(model, images, ATTACKED_LABELS) == 1.0
    g = torch.Generator().manual_seed(0)
    assert M.attack_accuracy("pgd", model, images, ATTACKED_LABELS, batch_size=2, generator=g) == pytest.approx(3 / 5)
    data = ImageData(images, ATTACKED_LABELS, ["dark", "bright"])
    assert M.measure_cell(model, data, "pgd", batch_size=2) == 3
    assert M.measure_cell(model, data, "clean", batch_size=2) == 5
    # several models on one cell: a second, inverted model gets every clean image wrong
    assert M.measure_models([model, Inverted()], data, "clean", batch_size=3) == [5, 0]


def test_benchmark_cell_validates_its_input():
    model = Brightness()
    data = ImageData(grey(ATTACKED_LEVELS), ATTACKED_LABELS, ["dark", "bright"])
    with pytest.raises(ValueError, match="perturbation: unknown name 'smog'; valid names: clean, gaussian_noise"):
        M.measure_cell(model, data, "smog")
    with pytest.raises(ValueError, match="surrogate: the black-box attack 'mi_fgsm_0.04'"):
        M.measure_cell(model, data, "mi_fgsm_0.04")
    with pytest.raises(ValueError, match="data: expected an ImageData"):
        M.measure_cell(model, grey(ATTACKED_LEVELS), "clean")
    with pytest.raises(ValueError, match="valid names"):
        M.attack_accuracy("fgsm", model, grey(ATTACKED_LEVELS), ATTACKED_LABELS)


class Recorder(nn.Module):
    """Records every batch it is shown (and calls everything class 0)."""

    def __init__(self):
        super().__init__()
        self.batches: list[torch.Tensor] = []

    def forward(self, x):
        self.batches.append(x.clone())
        return torch.zeros(x.shape[0], 2)


def test_benchmark_cell_corrupts_the_8bit_images_as_their_float_conversion():
    """A corruption cell hands the dataset's uint8 batches to the corruption as they are: the model
    sees, bit for bit, the corruption of the float batches (``float_images``) with the cell's
    per-batch generator, for the 8-bit corruptions (pixelate, JPEG) and the float ones alike."""
    from mtlat_edu.robustness import corruptions as C

    images = torch.randint(0, 256, (5, 3, 32, 32), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    data = ImageData(images, torch.tensor([0, 1, 0, 1, 1]), ["a", "b"])
    for name in ("pixelate", "jpeg_compression", "gaussian_noise", "fog"):
        model = Recorder()
        assert M.measure_cell(model, data, name, 3, seed=7, batch_size=2) == 2  # the two class-0 images
        assert len(model.batches) == 3
        for b, seen in enumerate(model.batches):
            g = torch.Generator().manual_seed(M._seed_of(7, name, 3, b))
            expected = C.corrupt(data.float_images(slice(2 * b, 2 * b + 2)), name, 3, generator=g)
            assert seen.dtype == torch.float32 and torch.equal(seen, expected), (name, b)
