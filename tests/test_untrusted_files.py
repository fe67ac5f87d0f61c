"""Issue 22: nothing trusted that a file or folder says.

* locks and temporary files: a ``.lock`` symlink is refused (the victim untouched and never
  printed), only the package's own ``.mtlat-*.tmp`` files are cleaned, the default cache of an
  installed copy lives in the user's cache folder and an offline CIFAR-10 attempt creates nothing;
* image folders: a symlink loop, a link out of the data root, different train/test classes,
  decompression bombs, oversized, empty, truncated, garbage and mislabelled (EPS as .png) files each
  get one line naming the file, in the in-memory, streaming and ImageNet-C readers; the decoded
  cache follows the files' content, not their modification times;
* runs: divergence stops with the epoch and ``--lr`` and writes no model; JSON is strict;
  ``--no-resume`` keeps the finished run until the new one has finished; a read-only finished run
  is reused; a model.pt of another architecture or with a huge ``num_classes`` is refused cheaply;
* evaluate: a second evaluate into a busy ``--out`` is refused, a forged cache entry recomputed;
* torchrun variables: malformed or out-of-range values refused at once, a lone rank in seconds;
* API inputs: class ranges in FGSM, PGD_LL and the widgets, integer images, empty batches.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mtlat_edu import data as D
from mtlat_edu.cli import main as cli_main
from mtlat_edu.core import distributed as dist_env
from mtlat_edu.core import io as mio
from mtlat_edu.models import NormalizedModel
from mtlat_edu.paper.adversarial import fgsm, targeted_fgsm, targeted_pgd
from mtlat_edu.paper.methods import METHODS, MethodConfig
from mtlat_edu.robustness.attacks import pgd_ll
from mtlat_edu.training import TrainConfig, fit, load_checkpoint
from mtlat_edu.training import loop as train_loop

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(method="standard", model="small_cnn", dataset="synthetic", epochs=1, batch_size=32, train_limit=64,
            test_limit=20, device="cpu")
TRAIN_CLI = ["train", "--method", "standard", "--model", "small_cnn", "--dataset", "synthetic", "--epochs", "1",
             "--batch-size", "32", "--train-limit", "64", "--test-limit", "20", "--device", "cpu"]


def error_line(capsys) -> str:
    """The one message line of the command (the progress bars also write to stderr), and no traceback."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mtlat-edu")]
    assert len(lines) == 1 and "Traceback" not in err, f"expected one message line, got {err!r}"
    return lines[0]


def image_tree(root: Path, classes=("cat", "dog"), test_classes=None, n: int = 3, size: int = 8) -> Path:
    """``root/{train,test}/<class>/<i>.png``: image i of class c is filled with the value 40 c + 10 i."""
    for split, names in (("train", classes), ("test", test_classes or classes)):
        for c, name in enumerate(names):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(np.full((size, size, 3), 40 * c + 10 * i, np.uint8)).save(root / split / name / f"{i}.png")
    return root


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels (the pixel data is a few bytes)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_bytes(size: int = 16) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MTLAT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# ------------------------------------------------------------------------------------------------
# locks and temporary files


def test_a_lock_symlink_is_refused_and_its_target_untouched(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("SECRET-CONTENT\n")
    run = tmp_path / "runs" / "synthetic-small_cnn" / "standard"
    run.mkdir(parents=True)
    (run / mio.LOCK_NAME).symlink_to(victim)
    assert cli_main([*TRAIN_CLI, "--runs", str(tmp_path / "runs")]) == 2
    line = error_line(capsys)
    assert f"{run / mio.LOCK_NAME} is not a lock file of mtlat-edu" in line and "SECRET" not in line
    assert victim.read_text() == "SECRET-CONTENT\n"
    assert (run / mio.LOCK_NAME).is_symlink() and not (run / "model.pt").exists()


def test_a_stale_lock_holding_text_is_taken_over_without_showing_it(tmp_path, capsys):
    (tmp_path / mio.LOCK_NAME).write_text("not a pid: SECRET")
    with mio.folder_lock(tmp_path):
        assert (tmp_path / mio.LOCK_NAME).read_text().strip() == str(os.getpid())
    out = capsys.readouterr().out
    assert "taking over the lock left by pid ?" in out and "SECRET" not in out


def test_only_the_packages_own_temporary_files_are_cleaned(tmp_path):
    dead = 2**22 + 7                                     # beyond the default pid_max: no such process
    ours = tmp_path / f"{mio.TMP_PREFIX}cache.pt.{dead}.ab12.tmp"
    foreign = [tmp_path / f".other.pt.{dead}.ab12.tmp", tmp_path / ".editor.tmp"]
    for p in [ours, *foreign]:
        p.write_bytes(b"x")
    assert mio.clean_tmp(tmp_path) == [ours]
    assert mio.clean_tmp(tmp_path, every=True) == []
    assert all(p.exists() for p in foreign)
    written = mio.write_json(tmp_path / "a.json", [1])   # the atomic writes use the prefix
    assert written.exists() and not list(tmp_path.glob(f"{mio.TMP_PREFIX}*"))


def test_an_installed_copy_caches_in_the_user_cache_and_creates_nothing_offline(tmp_path, monkeypatch):
    site = tmp_path / "venv" / "lib" / "site-packages"
    monkeypatch.setattr(D.sources, "REPO_DATA", site / "data")
    monkeypatch.setattr(D.sources, "SHARED_CIFAR", tmp_path / "nowhere")
    monkeypatch.delenv("MTLAT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert not D.source_checkout()
    assert D.cache_dir() == tmp_path / "xdg" / "mtlat-edu" / "cache"
    monkeypatch.setenv("MTLAT_CACHE", str(tmp_path / "mine"))
    assert D.cache_dir() == tmp_path / "mine"
    with socket.socket() as s:                           # a proxy port that refuses every connection
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, f"http://127.0.0.1:{port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(RuntimeError, match="could not load or download CIFAR-10"):
        D.load_cifar10("test", timeout=5)
    assert not (site / "data").exists() and not (tmp_path / "xdg").exists()


def test_a_source_checkout_keeps_data_cache():
    assert D.source_checkout() and D.data_home() == D.sources.REPO_DATA


# ------------------------------------------------------------------------------------------------
# image folders and files


def test_a_symlink_loop_in_the_data_root_is_refused(tmp_path, private_cache, capsys):
    root = image_tree(tmp_path / "set")
    (root / "train" / "cat" / "loop").symlink_to("..")
    with pytest.raises(D.ImageFileError, match=r"already read \(a symlink loop or a second link"):
        D.load_imagefolder("train", root)
    assert cli_main([*TRAIN_CLI[:6], "imagefolder", "--data-root", str(root), *TRAIN_CLI[7:],
                     "--runs", str(tmp_path / "runs")]) == 2
    assert error_line(capsys).startswith(f"mtlat-edu: error: --data-root: {root / 'train' / 'cat' / 'loop'}")
    (root / "train" / "cat" / "loop").unlink()
    data = D.load_imagefolder("train", root)             # the tree without the link: 2 x 3 images
    assert data.labels.tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("link, message", [
    ("self", r"0.png is a symlink loop; remove it"),
    ("outside", r"0.png is a symlink to .*outside.txt, outside the data root"),
    ("other_class", r"leads to .*dog, which was already read"),
])
def test_symlinks_stay_inside_the_data_root(link, message, tmp_path):
    root = image_tree(tmp_path / "set")
    target = root / "train" / "cat" / "0.png"
    target.unlink()
    if link == "self":
        target.symlink_to("0.png")
    elif link == "outside":
        (tmp_path / "outside.txt").write_text("private")
        target.symlink_to(tmp_path / "outside.txt")
    else:
        target.unlink(missing_ok=True)
        (root / "train" / "cat" / "more").symlink_to(root / "train" / "dog")
    with pytest.raises(D.ImageFileError, match=message):
        D.folder_samples(root, "train")


def test_a_link_inside_the_data_root_is_followed(tmp_path):
    root = image_tree(tmp_path / "set")
    shutil.move(root / "train" / "dog", tmp_path / "set" / "dog_files")
    (root / "train" / "dog").symlink_to(root / "dog_files")
    classes, samples = D.folder_samples(root, "train")
    assert classes == ["cat", "dog"] and [c for _, c in samples] == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("test_classes", [("cat", "zebra"), ("cat", "dog", "emu")])
def test_train_and_test_classes_must_match(test_classes, tmp_path, private_cache):
    root = image_tree(tmp_path / "set", test_classes=test_classes)
    listed = ", ".join(test_classes)
    with pytest.raises(D.ImageFileError, match=rf"train \({{cat, dog}}\) and of .*test \({{{listed}}}\) differ"):
        D.load_imagefolder("test", root)
    with pytest.raises(D.ImageFileError, match="differ"):
        D.load_dataset("imagefolder", "train", root, mode="stream")


def test_fit_refuses_test_data_of_other_classes():
    train = D.load_dataset("synthetic", "train", limit=64)
    test = D.load_dataset("synthetic", "test", limit=20)
    test.classes = list(reversed(test.classes))
    with pytest.raises(ValueError, match=r"test_data: its classes \{grating_9, .*differ from the training classes"):
        fit(TrainConfig(**TINY), train_data=train, test_data=test, progress=False)


BAD_FILES = {
    "empty": (b"", r"0.png: an empty file; remove or replace it"),
    "garbage": (b"not an image at all" * 10, r"0.png: not a JPEG or PNG image \(by its content\)"),
    "eps named png": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
                      r"0.png: not a JPEG or PNG image \(by its content\)"),
    "truncated jpeg": (jpeg_bytes()[:200], r"0.png: a truncated or corrupt image"),
    "bomb 30000^2": (png_header(30000, 30000), r"0.png: image of more than 50,000,000 pixels"),
    "10000^2": (png_header(10000, 10000), r"0.png: image of 10000 x 10000 pixels, more than the limit of 50,000,000"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_image_files_are_named_in_one_line(kind, tmp_path, private_cache, capsys):
    content, message = BAD_FILES[kind]
    root = image_tree(tmp_path / "set")
    (root / "train" / "dog" / "0.png").write_bytes(content)
    with pytest.raises(D.ImageFileError, match=message):
        D.load_imagefolder("train", root)
    stream = D.load_dataset("imagefolder", "train", root, mode="stream")
    with pytest.raises(D.ImageFileError, match=message):      # decoded in a DataLoader worker process
        list(D.batches(stream, 6, workers=1))
    assert cli_main([*TRAIN_CLI[:6], "imagefolder", "--data-root", str(root), "--epochs", "1", "--batch-size", "2",
                     "--device", "cpu", "--runs", str(tmp_path / "runs")]) == 2
    line = error_line(capsys)
    assert line.startswith(f"mtlat-edu: error: {root / 'train' / 'dog' / '0.png'}: ")


def test_imagenet_c_trees_use_the_same_safe_reader(tmp_path):
    from mtlat_edu.benchmark.corruption_files import imagenetc_sets
    sdir = tmp_path / "inc" / "fog" / "1"
    for c in ("n01", "n02"):
        (sdir / c).mkdir(parents=True)
        (sdir / c / "a.JPEG").write_bytes(jpeg_bytes())
    (sdir / "n02" / "b.JPEG").write_bytes(jpeg_bytes()[:150])
    with pytest.raises(D.ImageFileError, match=r"n02/b.JPEG: a truncated or corrupt image"):
        list(imagenetc_sets(tmp_path / "inc", "fog", severities=(1,)))
    (sdir / "n02" / "b.JPEG").unlink()
    (sdir / "n02" / "up").symlink_to(tmp_path)
    with pytest.raises(D.ImageFileError, match="outside the data root"):
        list(imagenetc_sets(tmp_path / "inc", "fog", severities=(1,)))
    (sdir / "n02" / "up").unlink()
    (_, data), = imagenetc_sets(tmp_path / "inc", "fog", severities=(1,))
    assert data.labels.tolist() == [0, 1] and data.classes == ["n01", "n02"]


def test_the_decoded_cache_follows_the_content_not_the_mtime(tmp_path, private_cache):
    root = image_tree(tmp_path / "set")
    first = D.load_imagefolder("train", root)
    assert int(first.images[3, 0, 0, 0]) == 40            # dog image 0: 40 * 1 + 10 * 0
    path = root / "train" / "dog" / "0.png"
    stat = path.stat()
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the replaced file keeps the old mtime
    again = D.load_imagefolder("train", root)
    assert int(again.images[3, 0, 0, 0]) == 200
    assert len(list(private_cache.glob("*.pt"))) == 2


# ------------------------------------------------------------------------------------------------
# runs


def test_divergence_stops_with_the_epoch_and_the_setting_and_writes_no_model(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli_main([*TRAIN_CLI, "--lr", "1e30", "--runs", str(runs)]) == 2
    line = error_line(capsys)
    assert line.startswith("mtlat-edu: error: --lr: training diverged in epoch 1 of 1 (standard): the mean "
                           "training loss is nan; lower the learning rate (--lr, now 1e+30)")
    run = runs / "synthetic-small_cnn" / "standard"
    assert not (run / "model.pt").exists() and not (run / "checkpoint.pt").exists()
    assert json.loads((run / "history.json").read_text()) == []


def test_json_is_strict(tmp_path):
    path = mio.write_json(tmp_path / "h.json", [{"loss": float("nan"), "acc": float("inf"), "n": np.float32(0.5)}])
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard token {c}")) == [
        {"loss": None, "acc": None, "n": 0.5}]


@pytest.fixture
def finished(tmp_path):
    folder = tmp_path / "run"
    fit(TrainConfig(**TINY), folder, progress=False)
    return folder


def test_no_resume_keeps_the_finished_run_until_the_new_one_finishes(finished, capsys):
    before = {n: (finished / n).read_bytes() for n in train_loop.RUN_FILES}
    with pytest.raises(train_loop.TrainingDivergedError):
        fit(TrainConfig(**{**TINY, "lr": 1e30}), finished, resume=False, progress=False)
    assert {n: (finished / n).read_bytes() for n in train_loop.RUN_FILES} == before
    assert not list(finished.parent.glob(f"{mio.TMP_PREFIX}*"))
    res = fit(TrainConfig(**{**TINY, "seed": 3}), finished, resume=False, progress=False)
    assert "the previous run is replaced once the new one has finished" in capsys.readouterr().out
    model, info = load_checkpoint(finished)
    assert info["config"]["seed"] == 3 and info["history"] == res.history
    assert mio.load_torch(finished / "checkpoint.pt")["config"]["seed"] == 3
    assert json.loads((finished / "history.json").read_text()) == json.loads(json.dumps(res.history))
    assert not list(finished.parent.glob(f"{mio.TMP_PREFIX}*"))


def test_a_read_only_finished_run_is_reused_without_a_lock(finished, monkeypatch, capsys):
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if Path(p) == finished else real_access(p, mode, **k))
    monkeypatch.setattr(mio, "folder_lock", lambda *a, **k: pytest.fail("a read-only folder cannot be locked"))
    before = {p.name: p.stat().st_mtime_ns for p in finished.iterdir()}
    res = fit(TrainConfig(**TINY), finished, progress=False)
    assert "already finished (1 epochs), reusing it" in capsys.readouterr().out and len(res.history) == 1
    assert {p.name: p.stat().st_mtime_ns for p in finished.iterdir()} == before


@pytest.mark.parametrize("where", ["runs is a file", "runs below a file"])
def test_runs_naming_a_file_is_one_line(where, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    runs = tmp_path / "f" if where == "runs is a file" else tmp_path / "f" / "below"
    assert cli_main([*TRAIN_CLI, "--runs", str(runs)]) == 2
    assert "is a file, not a folder; give a folder path" in error_line(capsys)
    assert (tmp_path / "f").read_text() == "x"


def test_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = mio.save_torch(tmp_path / "c.pt", {"a": 1})

    def full(obj, f, *a, **k):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(mio.WriteError, match=r"c.pt: could not be written \(no space left on the device\); the "
                                             r"previous version, if any, is intact"):
        mio.save_torch(path, {"a": 2})
    assert mio.load_torch(path) == {"a": 1} and not list(tmp_path.glob(f"{mio.TMP_PREFIX}*"))


def _forged(finished: Path, change: dict) -> Path:
    state = mio.load_torch(finished / "model.pt")
    for k, v in change.items():
        if k == "model_name":
            state["config"]["model"] = v
        else:
            state[k] = v
    torch.save(state, finished / "forged.pt")
    return finished / "forged.pt"


@pytest.mark.parametrize("change, message", [
    ({"history": [{"epoch": 1}]}, r"its 'history' is not a list of per-epoch records"),
    ({"history": "abc"}, r"its 'history' is not a list of per-epoch records"),
    ({"model_name": "vgg_small"}, r"its weights do not fit a vgg_small with 10 classes \(\d+ tensors of other shapes"),
    # resnet50's head for 2,000,000 classes would be 16 GB: refused on the meta device, nothing allocated
    ({"model_name": "resnet50", "num_classes": 2_000_000}, r"do not fit a resnet50 with 2000000 classes"),
    ({"classes": ["a"]}, r"its 'classes' is not a list of 10 class names"),
])
def test_a_model_file_is_believed_only_once_its_weights_agree(change, message, finished):
    with pytest.raises(mio.CorruptFileError, match=message) as err:
        load_checkpoint(_forged(finished, change))
    assert "\n" not in str(err.value)


def test_ctrl_c_is_one_line(monkeypatch, tmp_path, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr("mtlat_edu.cli.fit", interrupted)
    assert cli_main([*TRAIN_CLI, "--runs", str(tmp_path)]) == 130
    assert error_line(capsys).startswith("mtlat-edu: interrupted (Ctrl-C)")


# ------------------------------------------------------------------------------------------------
# evaluate


def _evaluate_cli(run: Path, out: Path) -> list[str]:
    return ["evaluate", str(run), "--parts", "clean", "--eval-limit", "20", "--out", str(out), "--no-progress",
            "--device", "cpu"]


def test_two_evaluates_into_one_out_are_refused(finished, tmp_path, capsys):
    out = tmp_path / "bench"
    with mio.folder_lock(out, "out"):                    # an evaluate in progress holds --out
        assert cli_main(_evaluate_cli(finished, out)) == 2
        assert f"--out: {out} is in use by another run (pid {os.getpid()}" in error_line(capsys)
    assert not (out / "cache.json").exists()
    assert cli_main(_evaluate_cli(finished, out)) == 0


def test_a_forged_cache_entry_is_recomputed(finished, tmp_path, capsys):
    out = tmp_path / "bench"
    assert cli_main(_evaluate_cli(finished, out)) == 0
    blob = json.loads((out / "cache.json").read_text())
    truth = {k: dict(e) for k, e in blob["entries"].items()}
    key = next(iter(blob["entries"]))
    assert truth[key]["correct"] < 20
    blob["entries"][key].update(accuracy=1.0)             # forged: 100 %
    (out / "cache.json").write_text(json.dumps(blob))
    capsys.readouterr()
    assert cli_main(_evaluate_cli(finished, out)) == 0
    captured = capsys.readouterr()
    assert "1 entries of" in captured.err and "could not be verified" in captured.err
    assert "1 cells computed, 1 reused" in captured.out
    again = json.loads((out / "cache.json").read_text())["entries"]
    assert {k: {f: v for f, v in e.items() if f != "seconds_for_all_models"} for k, e in again.items()} == \
        {k: {f: v for f, v in e.items() if f != "seconds_for_all_models"} for k, e in truth.items()}


# ------------------------------------------------------------------------------------------------
# torchrun variables


@pytest.mark.parametrize("env, message", [
    ({"RANK": "5", "WORLD_SIZE": "2"}, r"RANK: 5 is outside \[0, 2\) for WORLD_SIZE=2"),
    ({"RANK": "0", "WORLD_SIZE": "abc"}, r"WORLD_SIZE: must be an integer >= 1, got 'abc'"),
    ({"RANK": "-1", "WORLD_SIZE": "2"}, r"RANK: must be an integer >= 0, got '-1'"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "99999"}, r"MASTER_PORT: must be an integer >= 1 and <= 65535"),
])
def test_torchrun_variables_are_checked_at_once(env, message, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29599", "LOCAL_RANK": "0", **env}.items():
        monkeypatch.setenv(k, v)
    t0 = time.monotonic()
    assert cli_main([*TRAIN_CLI, "--runs", str(tmp_path)]) == 2
    assert time.monotonic() - t0 < 5 or pytest.fail("not refused at once")
    import re
    assert re.search(message, error_line(capsys))


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_lone_rank_fails_within_seconds(rank, monkeypatch, tmp_path, capsys):
    import datetime
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    monkeypatch.setattr(dist_env, "JOIN_TIMEOUT", datetime.timedelta(seconds=2))
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "LOCAL_RANK": rank, "RANK": rank,
                 "WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    assert cli_main([*TRAIN_CLI, "--runs", str(tmp_path)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"mtlat-edu: error: RANK={rank} WORLD_SIZE=2: the other processes did not join at "
                           f"127.0.0.1:{port} within 2 s")
    assert not dist_env.active()


# ------------------------------------------------------------------------------------------------
# API inputs

M = NormalizedModel(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)))
X = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
OUT = r"y: class indices must lie in \[0, 9\]"

API_CASES = {
    "fgsm label 10": (lambda: fgsm(M, X, torch.tensor([0, 1, 2, 10]), 0.01), OUT),
    "fgsm label -100 (cross-entropy's ignore_index)": (lambda: fgsm(M, X, torch.tensor([0, 1, 2, -100]), 0.01), OUT),
    "targeted_fgsm target 12": (lambda: targeted_fgsm(M, X, torch.tensor([12, 1, 2, 3]), 0.01), OUT),
    "targeted_pgd target -1": (lambda: targeted_pgd(M, X, torch.tensor([0, 1, 2, -1]), 0.01), OUT),
    "pgd_ll label 10": (lambda: pgd_ll(M, X, torch.tensor([0, 1, 2, 10])), OUT),
    "pgd_ll label -100": (lambda: pgd_ll(M, X, torch.tensor([-100, 1, 2, 3])), OUT),
    "model on uint8 images": (lambda: M((X * 255).to(torch.uint8)), r"x: expected float images in \[0, 1\], got "
                                                                      r"dtype torch.uint8 \(uint8 images: use"),
    "model on int64 images": (lambda: M(X.long()), r"x: expected float images in \[0, 1\], got dtype torch.int64"),
    "standard on an empty batch": (lambda: METHODS["standard"](M, X[:0], torch.zeros(0, dtype=torch.long),
                                                               MethodConfig(num_classes=10)), r"x: an empty batch"),
    "mtlat on an empty batch": (lambda: METHODS["mtlat"](M, X[:0], torch.zeros(0, dtype=torch.long),
                                                         MethodConfig(num_classes=10)), r"x: an empty batch"),
}


@pytest.mark.parametrize("case", list(API_CASES))
def test_api_inputs_are_refused(case):
    call, message = API_CASES[case]
    with pytest.raises(ValueError, match=message):
        call()


def test_in_range_labels_still_attack():
    y = torch.tensor([0, 1, 2, 9])
    x_adv = fgsm(M, X, y, 0.01)
    assert ((x_adv - X).abs() <= 0.01 + 1e-6).all() and x_adv.shape == X.shape


WIDGET_CASES = {
    "mixup_panel y2 out of range": ("mixup_panel", dict(y1=0, y2=10), r"y2: must be a class index, an integer in \[0, 9\], got 10"),
    "mixup_panel float label": ("mixup_panel", dict(y1=2.7, y2=1), r"y1: must be a class index, .* got 2.7"),
    "fgsm_panel target -1": ("fgsm_panel", dict(y=0, target=-1), r"target: must be a class index, .* got -1"),
    "fgsm_panel y 10": ("fgsm_panel", dict(y=10), r"y: must be a class index"),
    "tlat_panel target 10": ("tlat_panel", dict(y=0, target=10), r"target: must be a class index"),
    "mtlat_panel y3 -1": ("mtlat_panel", dict(y3=-1, y4=1), r"y3: must be a class index"),
    "pgd_steps_panel y True": ("pgd_steps_panel", dict(y=True), r"y: must be a class index, .* got True"),
    "manifold_panel y1 10": ("manifold_panel", dict(y1=10, y2=1), r"y1: must be a class index"),
}


@pytest.mark.parametrize("case", list(WIDGET_CASES))
def test_widget_labels_and_targets_are_checked(case):
    pytest.importorskip("ipywidgets")
    from mtlat_edu.course import widgets as W
    name, labels, message = WIDGET_CASES[case]
    img = X[0]
    classes = [f"c{k}" for k in range(10)]
    args = {"mixup_panel": lambda: W.mixup_panel(img, labels["y1"], img, labels["y2"], classes),
            "fgsm_panel": lambda: W.fgsm_panel(M, img, labels["y"], classes, target=labels.get("target")),
            "tlat_panel": lambda: W.tlat_panel(labels["y"], classes, target=labels["target"]),
            "mtlat_panel": lambda: W.mtlat_panel(M, img, labels["y3"], img, labels["y4"], classes),
            "pgd_steps_panel": lambda: W.pgd_steps_panel(M, img, labels["y"], classes),
            "manifold_panel": lambda: W.manifold_panel(M, img, labels["y1"], img, labels["y2"], classes)}
    with pytest.raises(ValueError, match=message):
        args[name]()


def test_widget_callbacks_check_the_target(tmp_path):
    pytest.importorskip("ipywidgets")
    from mtlat_edu.course import widgets as W
    classes = [f"c{k}" for k in range(10)]
    panel = W.tlat_panel(1, classes, target=2)
    assert torch.allclose(panel.update(eps=0.5)["y_adv"][[1, 2]], torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"target: must be a class index, an integer in \[0, 9\], got 10"):
        panel.update(target=10)
    with pytest.raises(ValueError, match=r"y: class indices must lie in \[0, 9\], got min 10"):  # the model's range
        W.fgsm_example(M, X[0], 1, 0.01, target=10)
