"""Hendrycks' released corruption files (CIFAR-10-C, ImageNet-C), read from generated miniatures."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mtlat_edu.benchmark.corruption_files import (CORRUPTIONS, corruption_file_accuracy, detect_layout,
                                                  write_corruption_files)

N = 5  # images per severity in the miniature


class Constant(nn.Module):
    """Always predicts ``cls`` (accuracy = the share of that class)."""

    def __init__(self, cls: int, n: int = 10):
        super().__init__()
        self.cls, self.n = cls, n
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot(torch.full((x.shape[0],), self.cls), self.n).float() + 0 * self.dummy


class PixelOracle(nn.Module):
    """Reads the class from the top-left red value (class k painted as 20 k / 255)."""

    def forward(self, x):
        k = (x[:, 0, 0, 0] * 255 / 20).round().long().clamp(0, 9)
        return nn.functional.one_hot(k, 10).float()


def make_cifar10c(root, labels=(3, 3, 1, 2, 7), corruptions=CORRUPTIONS):
    """Severity s paints the right class on its first s images and a wrong one on the rest, so the
    oracle's accuracy at severity s is s / 5 and its mean over the severities 3 / 5."""
    root.mkdir(parents=True, exist_ok=True)
    lab = np.array(labels * 5, dtype=np.int64)
    np.save(root / "labels.npy", lab)
    for c in corruptions:
        arr = np.full((5 * N, 32, 32, 3), 128, dtype=np.uint8)
        for s in range(1, 6):
            for i in range(N):
                k = labels[i] if i < s else (labels[i] + 1) % 10
                arr[(s - 1) * N + i, 0, 0, 0] = 20 * k
        np.save(root / f"{c}.npy", arr)
    return root


def make_imagenetc(root, corruptions=CORRUPTIONS[:2], counts={"n01": 3, "n02": 1, "n03": 2}):
    for c in corruptions:
        for s in range(1, 6):
            for wnid, k in counts.items():
                d = root / c / str(s) / wnid
                d.mkdir(parents=True)
                for i in range(k):
                    Image.new("RGB", (16, 16), (200, 10, 10)).save(d / f"ILSVRC_{i}.JPEG", quality=95)
    return root


def test_cifar10c_severities_are_read_in_order(tmp_path):
    root = make_cifar10c(tmp_path / "CIFAR-10-C")
    assert detect_layout(root) == "cifar10c"
    res = corruption_file_accuracy({"oracle": PixelOracle(), "always3": Constant(3)}, root, progress=False)
    assert res.complete and res.corruptions == CORRUPTIONS
    oracle = res.long[res.long.model == "oracle"]
    assert len(oracle) == 75 and set(oracle.n_images) == {N}
    for s in range(1, 6):
        assert np.allclose(oracle[oracle.severity == s].accuracy, s / N)
    assert res.mean["oracle"] == pytest.approx(0.6)      # (1 + 2 + 3 + 4 + 5) / 25
    assert res.mean["always3"] == pytest.approx(0.4)     # two images of class 3 out of five
    assert res.wide.loc["oracle", "mean"] == pytest.approx(60.0)
    assert res.wide.loc["oracle", "fog"] == pytest.approx(60.0)


def test_cifar10c_labels_of_one_severity_and_a_subset(tmp_path):
    root = make_cifar10c(tmp_path / "c")
    np.save(root / "labels.npy", np.array((3, 3, 1, 2, 7), dtype=np.int64))  # (N,) labels: the same per severity
    res = corruption_file_accuracy({"always3": Constant(3)}, root, severities=(2, 5), limit=4, progress=False)
    assert not res.complete and set(res.long.severity) == {2, 5} and set(res.long.n_images) == {4}
    # data.balanced_indices: no round covers all 10 classes, so the classes come in index order,
    # 1, 2, 3, 3 (7 left out): two of the four are 3s
    assert res.mean["always3"] == pytest.approx(0.5)


def test_imagenetc_folders_matched_to_the_model_classes(tmp_path):
    root = make_imagenetc(tmp_path / "ImageNet-C")
    assert detect_layout(root) == "imagenetc"
    with pytest.warns(UserWarning, match="lacks shot_noise|lacks impulse_noise"):
        res = corruption_file_accuracy({"c0": Constant(0, 3), "c1": Constant(1, 3)}, root, progress=False)
    assert res.corruptions == CORRUPTIONS[:2] and not res.complete
    assert res.mean["c0"] == pytest.approx(3 / 6) and res.mean["c1"] == pytest.approx(1 / 6)
    # a model of two classes, n03 and n02 (an ImageNet-100-like subset): folder n01 is left out
    with pytest.warns(UserWarning):
        res = corruption_file_accuracy({"c0": Constant(0, 2)}, root, classes=["n03", "n02"], image_size=8,
                                       progress=False)
    assert res.mean["c0"] == pytest.approx(2 / 3) and set(res.long.n_images) == {3}


def test_absent_or_malformed_files_say_where_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="zenodo.org/records/2535967.*zenodo.org/records/2235448"):
        detect_layout(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither CIFAR-10-C .* nor ImageNet-C"):
        corruption_file_accuracy({"m": Constant(0)}, tmp_path / "empty", progress=False)
    root = make_cifar10c(tmp_path / "bad", corruptions=("fog",))
    (root / "labels.npy").unlink()
    with pytest.raises(FileNotFoundError, match="no labels.npy.*2535967"):
        detect_layout(root)
    np.save(root / "labels.npy", np.zeros(25, dtype=np.int64))
    np.save(root / "fog.npy", np.zeros((24, 32, 32, 3), dtype=np.uint8))  # not 5 severities
    with pytest.raises(ValueError, match="fog.npy is not a released file .*5 N"), pytest.warns(UserWarning):
        corruption_file_accuracy({"m": Constant(0)}, root, progress=False)
    np.save(root / "fog.npy", np.array([{"a": 1}], dtype=object))  # pickled objects are refused, never loaded
    with pytest.raises(ValueError, match="fog.npy is not a released file"), pytest.warns(UserWarning):
        corruption_file_accuracy({"m": Constant(0)}, root, progress=False)
    imnet = make_imagenetc(tmp_path / "inc", corruptions=("fog",))
    for d in sorted((imnet / "fog" / "4").iterdir()):
        for f in d.iterdir():
            f.unlink()
        d.rmdir()
    (imnet / "fog" / "4").rmdir()
    with pytest.raises(FileNotFoundError, match="fog/4 is missing.*2235448"), pytest.warns(UserWarning):
        corruption_file_accuracy({"m": Constant(0, 3)}, imnet, progress=False)


def test_written_table_and_json(tmp_path):
    root = make_cifar10c(tmp_path / "c")
    res = {k: corruption_file_accuracy({"oracle": PixelOracle()}, root, progress=False) for k in (0, 1)}
    import pandas as pd
    ours = pd.DataFrame({"clean": [80.0], **{c: [0.5] for c in CORRUPTIONS}}, index=pd.Index(["oracle"], name="model"))
    files = write_corruption_files(res, tmp_path / "out", ours)
    blob = json.loads(files["files_json"].read_text())
    assert blob["complete"] and blob["layout"] == "cifar10c" and blob["training_seeds"] == [0, 1]
    row = blob["summary"]["oracle"]
    assert row["files_mean_acc"] == pytest.approx(60.0) and row["files_mean_acc_std"] == pytest.approx(0.0)
    assert row["files_R"] == pytest.approx(0.75) and row["ours_corruption_R"] == pytest.approx(0.5)
    assert "leaderboard figure" in files["files_md"].read_text()
    assert len(pd.read_csv(files["files_csv"])) == 2 * 75


def test_evaluate_command_with_corruption_files(tmp_path, capsys):
    from mtlat_edu.cli import main
    from mtlat_edu.training import TrainConfig, fit
    run = tmp_path / "run"
    fit(TrainConfig(method="standard", model="small_cnn", dataset="synthetic", epochs=1, batch_size=64,
                    train_limit=128, test_limit=64), run, progress=False)
    files = make_cifar10c(tmp_path / "CIFAR-10-C", corruptions=CORRUPTIONS)
    out = tmp_path / "out"
    assert main(["evaluate", str(run), "--parts", "clean", "--corruption-files", str(files), "--out", str(out),
                 "--eval-limit", "64", "--no-progress", "--device", "cpu"]) == 0
    blob = json.loads((out / "corruption_files.json").read_text())
    assert blob["complete"] and set(blob["summary"]) == {"standard"}
    assert 0 <= blob["summary"]["standard"]["files_mean_acc"] <= 100
    assert "Released corruption files" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--corruption-files", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert "--corruption-files: " in capsys.readouterr().err
