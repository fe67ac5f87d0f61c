"""Datasets: the generated set, ImageFolder trees, ImageNet-100's protocol, the cache, batching."""
import pytest
import torch
from PIL import Image

from mtlat_edu import data as mdata
from mtlat_edu.data import DeviceBatches, flip_crop, imagenet100_split, load_dataset, make_synthetic


def test_synthetic_is_deterministic_and_balanced():
    a, b = make_synthetic(200, seed=1), make_synthetic(200, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert a.images.dtype == torch.uint8 and a.images.shape == (200, 3, 32, 32)
    assert torch.bincount(a.labels).tolist() == [20] * 10
    assert not torch.equal(make_synthetic(200, seed=2).images, a.images)


def test_train_and_test_splits_differ():
    tr, te = load_dataset("synthetic", "train", limit=100), load_dataset("synthetic", "test", limit=100)
    assert not torch.equal(tr.images[:10], te.images[:10])


def test_subset_is_class_balanced():
    d = load_dataset("synthetic", "train").subset(100, seed=0)
    assert len(d) == 100 and torch.bincount(d.labels).tolist() == [10] * 10


def _write_tree(root, classes, per_class, size=8):
    g = torch.Generator().manual_seed(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8, generator=g).numpy()
            Image.fromarray(arr).save(root / c / f"{i}.png")


def test_imagefolder_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLAT_CACHE", str(tmp_path / "cache"))
    for split in ("train", "test"):
        _write_tree(tmp_path / "tree" / split, ["b_cls", "a_cls"], 3)
    d = load_dataset("imagefolder", "test", tmp_path / "tree")
    assert d.classes == ["a_cls", "b_cls"] and len(d) == 6 and d.images.shape[1:] == (3, 8, 8)
    # PNG is lossless: the tensor equals what was written
    import numpy as np
    png = torch.from_numpy(np.asarray(Image.open(tmp_path / "tree/test/a_cls/0.png"))).permute(2, 0, 1)
    assert torch.equal(d.images[0], png)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    # the second load comes from the cache: decoding is not called again
    monkeypatch.setattr(mdata.sources, "decode_files", lambda *a, **k: pytest.fail("decoded again"))
    d2 = load_dataset("imagefolder", "test", tmp_path / "tree")
    assert torch.equal(d.images, d2.images)


def test_imagefolder_resize(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLAT_CACHE", str(tmp_path / "cache"))
    for split in ("train", "test"):
        _write_tree(tmp_path / "tree" / split, ["a"], 2, size=10)
    assert load_dataset("imagefolder", "train", tmp_path / "tree", image_size=6).images.shape == (2, 3, 6, 6)


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train/ and test/"):
        load_dataset("imagefolder", "train", tmp_path)
    with pytest.raises(ValueError, match="data_root"):
        load_dataset("imagefolder", "train", None)
    with pytest.raises(ValueError, match="split"):
        load_dataset("synthetic", "val")
    with pytest.raises(ValueError, match="dataset: unknown name"):
        load_dataset("mnist", "train")


def test_cifar10_offline_error_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="data_root=<folder with train/ and test/"):
        mdata.load_cifar10("train", tmp_path, download=False)


def test_imagenet100_protocol(tmp_path):
    classes = [f"n{i:08d}" for i in range(120)]
    for c in classes:
        (tmp_path / c).mkdir()
        for i in range(20):
            (tmp_path / c / f"{c}_{i}.JPEG").write_bytes(b"")
    a = imagenet100_split(tmp_path, seed=0)
    assert len(a["classes"]) == 100 and set(a["classes"]) <= set(classes)
    assert len(a["test"]) == 100 * 2 and len(a["train"]) == 100 * 18       # 10 % of each class held out
    assert not {p for p, _ in a["test"]} & {p for p, _ in a["train"]}
    assert a == imagenet100_split(tmp_path, seed=0)                          # fixed seed, same split
    assert a["classes"] != imagenet100_split(tmp_path, seed=1)["classes"]
    with pytest.raises(ValueError, match="num_classes"):
        imagenet100_split(tmp_path, num_classes=200)


def test_device_batches():
    d = load_dataset("synthetic", "train", limit=100)
    b = list(DeviceBatches(d, 32, drop_last=True, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert len(b) == 3 and all(x.shape == (32, 3, 32, 32) and x.dtype == torch.float32 for x, _ in b)
    assert all(x.min() >= 0 and x.max() <= 1 for x, _ in b)
    ordered = list(DeviceBatches(d, 32))
    assert len(ordered) == 4 and torch.equal(ordered[0][1], d.labels[:32])
    assert torch.allclose(ordered[0][0], d.images[:32].float() / 255)


def test_flip_crop_per_sample():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).view(2, 1, 4, 4) / 31
    g = torch.Generator().manual_seed(0)
    out = flip_crop(x, pad=0, generator=g)
    for i in range(2):                        # without padding each image is itself or its mirror
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    out = flip_crop(x[:1].expand(64, 1, 4, 4), pad=1, generator=g)
    assert out.shape == (64, 1, 4, 4) and len({tuple(o.flatten().tolist()) for o in out}) > 4


def test_real_cifar10_copy(cifar_root):
    test = load_dataset("cifar10", "test", cifar_root)
    assert len(test) == 10000 and test.classes == mdata.CIFAR10_CLASSES
    assert test.images.shape[1:] == (3, 32, 32)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
