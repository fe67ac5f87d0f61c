"""Shipped models (course/shipped.py) on the smoke profile: export -> verify -> load -> the same
logits as the run folder's model; a tampered file, a wrong size, a missing or unlisted entry and a
missing manifest are refused in one line; the notebook session uses a shipped model only where
the run folder has none, says so, and never when reproducing."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

pytest.importorskip("safetensors")

from mtlat_edu import cli  # noqa: E402
from mtlat_edu.course import session, shipped  # noqa: E402
from mtlat_edu.training.checkpoints import load_checkpoint  # noqa: E402
from mtlat_edu.training.profiles import SURROGATE, get_profile, run_dir, train_profile  # noqa: E402

SMOKE = get_profile("smoke")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    train_profile(SMOKE, root, methods=["standard", "mixup"], device="cpu", progress=False, workers=1)
    return root


@pytest.fixture
def pretrained(runs, tmp_path):
    root = tmp_path / "pretrained"
    shipped.ship("smoke", runs, methods=["standard", "mixup"], root=root, log=lambda s: None)
    return root


def _refusal(exc_info) -> str:
    msg = str(exc_info.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    return msg


def test_export_writes_weights_and_a_complete_manifest(runs, pretrained):
    folder = pretrained / "smoke"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "mixup.safetensors", "standard.safetensors",
                                                       "vgg_surrogate.safetensors"]
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["entries"]["standard"]
    data = (folder / "standard.safetensors").read_bytes()
    assert entry["size"] == len(data) and entry["sha256"] == shipped.sha256(data)
    config = json.loads((run_dir(SMOKE, runs, "standard") / "config.json").read_text())
    history = json.loads((run_dir(SMOKE, runs, "standard") / "history.json").read_text())
    assert entry["config"] == config and entry["history"] == history
    assert entry["test_acc"] == history[-1]["test_acc"] and entry["test_images"] == SMOKE.test_limit
    assert entry["seed"] == 0 and entry["method"] == "standard" and len(entry["classes"]) == 10
    assert manifest["entries"][SURROGATE]["config"]["model"] == SMOKE.surrogate_model
    assert shipped.check_folder("smoke", pretrained) == []


def test_loaded_model_gives_the_run_folders_logits(runs, pretrained):
    x = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for name in ("standard", SURROGATE):
        ref, _ = load_checkpoint(run_dir(SMOKE, runs, name))
        model, info = shipped.load_shipped("smoke", name, root=pretrained)
        assert not model.training
        with torch.no_grad():
            assert torch.equal(model(x), ref(x)), name
    assert info["description"].startswith(f"shipped model (seed 0, trained with standard: {SMOKE.surrogate_model},")
    assert "on 200 images" in info["description"]


def test_tampered_file_is_refused(pretrained):
    path = pretrained / "smoke" / "standard.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # same size, one bit changed
    path.write_bytes(bytes(data))
    with pytest.raises(shipped.ShippedModelError) as exc:
        shipped.load_shipped("smoke", "standard", root=pretrained)
    assert "SHA-256 differs" in _refusal(exc)
    assert shipped.check_folder("smoke", pretrained) == [str(exc.value)]


def test_wrong_size_is_refused(pretrained):
    path = pretrained / "smoke" / "mixup.safetensors"
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(shipped.ShippedModelError) as exc:
        shipped.load_shipped("smoke", "mixup", root=pretrained)
    expected = json.loads((pretrained / "smoke" / "manifest.json").read_text())["entries"]["mixup"]["size"]
    assert f"{expected + 1} bytes, the manifest says {expected}" in _refusal(exc)


def test_missing_entry_unlisted_file_and_missing_manifest_are_refused(pretrained):
    folder = pretrained / "smoke"
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["entries"]["mixup"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(shipped.ShippedModelError) as exc:
        shipped.load_shipped("smoke", "mixup", root=pretrained)
    assert "no entry 'mixup'" in _refusal(exc)
    with pytest.raises(shipped.ShippedModelError) as exc:  # the file is still there, but unlisted
        shipped.find_shipped("smoke", "mixup", root=pretrained)
    assert "mixup.safetensors: not listed" in _refusal(exc)
    assert any("mixup.safetensors: not listed" in p for p in shipped.check_folder("smoke", pretrained))
    (folder / "manifest.json").unlink()
    with pytest.raises(shipped.ShippedModelError) as exc:
        shipped.load_shipped("smoke", "standard", root=pretrained)
    assert "no manifest" in _refusal(exc)


def test_weights_that_do_not_fit_the_model_are_refused(pretrained):
    """Size and hash match (the manifest was rewritten too) but the tensors are another network's."""
    folder = pretrained / "smoke"
    shutil.copy(folder / "vgg_surrogate.safetensors", folder / "standard.safetensors")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["entries"]["standard"].update({k: manifest["entries"][SURROGATE][k] for k in ("size", "sha256")})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(shipped.ShippedModelError) as exc:
        shipped.load_shipped("smoke", "standard", root=pretrained)
    assert "does not fit model 'small_cnn'" in _refusal(exc)


def test_history_only_entries_and_the_tracked_group(runs, tmp_path):
    root = tmp_path / "pretrained"
    tracked = runs / "tracked"
    shutil.copytree(runs / "smoke" / "mixup", tracked / "smoke" / "mixup")
    shipped.ship("smoke", runs, methods=["mixup"], group="tracked", history_only=True, root=root, log=lambda s: None)
    entry = shipped.read_manifest("smoke", root)["entries"]["tracked-mixup"]
    assert entry["file"] is None and entry["history"] == load_checkpoint(run_dir(SMOKE, runs, "mixup"))[1]["history"]
    assert list((root / "smoke").glob("*.safetensors")) == []
    assert shipped.find_shipped("smoke", "tracked-mixup", root=root) is None  # no weights to load
    with pytest.raises(shipped.ShippedModelError) as exc:
        shipped.load_shipped("smoke", "tracked-mixup", root=root)
    assert "history only" in _refusal(exc)


def test_ship_refuses_unfinished_runs_and_writes_nothing(runs, tmp_path):
    with pytest.raises(FileNotFoundError, match="no finished model in .*fgsm"):
        shipped.ship("smoke", runs, methods=["standard", "fgsm"], root=tmp_path, log=lambda s: None)
    assert not (tmp_path / "smoke").exists()


def test_session_uses_a_shipped_model_only_where_the_run_folder_has_none(runs, pretrained, tmp_path, capsys):
    empty = tmp_path / "empty_runs"
    S = session.setup("smoke", device="cpu", runs_root=empty, output_dir=tmp_path / "out", shipped_root=pretrained,
                      verbose=False)
    res = S.train(["standard"], surrogate=False)["standard"]
    out = capsys.readouterr().out
    assert "standard: shipped model (seed 0, trained with standard: small_cnn, 1 epochs on 768 synthetic images" in out
    assert S.run_status("standard") == "shipped (not trained)" and not (empty / "smoke").exists()
    ref, info = load_checkpoint(run_dir(SMOKE, runs, "standard"))
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(res.model(x), ref(x))
    assert S.histories(["standard"])["standard"] == info["history"]
    assert S.clean_accuracy(["standard"]).loc["standard", "mean"] == pytest.approx(100 * info["test_acc"])
    # a finished run folder wins over the shipped model
    R = session.setup("smoke", device="cpu", runs_root=runs, output_dir=tmp_path / "out", shipped_root=pretrained,
                      verbose=False)
    assert R.run_status("standard") == "finished" and R.shipped_entry("standard") is None
    # reproducing never uses shipped models: the run is trained into the (empty) runs folder
    P = session.setup("smoke", device="cpu", runs_root=tmp_path / "fresh", output_dir=tmp_path / "out",
                      shipped_root=pretrained, verbose=False, reproduce=True)
    assert P.shipped_entry("standard") is None and P.run_status("standard") == "missing"
    with pytest.raises(ValueError, match="reproduce: must be True"):
        session.setup("smoke", device="cpu", runs_root=empty, reproduce="yes", verbose=False)


def test_session_settings_train_their_own_runs(pretrained, tmp_path):
    """A notebook's ``settings`` (the reproduce options) reach its runs; the shipped models, trained
    with the profile's settings, never stand in for them."""
    own = tmp_path / "own"
    S = session.setup("smoke", device="cpu", runs_root=own, output_dir=tmp_path / "out", shipped_root=pretrained,
                      verbose=False, settings={"eps_max": 0.01, "lr": 0.004})
    assert S.settings == {"eps_max": 0.01, "lr": 0.004} and not S.uses_shipped
    assert S.shipped_entry("mtlat") is None and S.run_status("mtlat") == "missing"
    assert (S.config().eps_max, S.config("standard").lr, S.config().epochs) == (0.01, 0.004, SMOKE.epochs)
    assert "settings    eps_max=0.01, lr=0.004 (the profile's otherwise)" in S.describe()
    res = S.train(["mtlat"], surrogate=False, progress=False)["mtlat"]
    assert (res.config.eps_max, res.config.lr) == (0.01, 0.004)
    saved = json.loads((run_dir(SMOKE, own, "mtlat") / "config.json").read_text())
    assert (saved["eps_max"], saved["lr"], saved["epochs"]) == (0.01, 0.004, SMOKE.epochs)
    plain = session.setup("smoke", device="cpu", runs_root=own, shipped_root=pretrained, verbose=False)
    assert plain.settings == {} and plain.config().eps_max == 0.025 and plain.uses_shipped
    # the finished run in ``own`` was trained with other settings: never reused as the profile's run
    with pytest.raises(ValueError, match=r"holds a finished run of other settings .*'eps_max': \(0.01, 0.025\)"):
        plain.train(["mtlat"], surrogate=False, progress=False)
    # settings that do not change the weights (speed, data handling) keep the shipped models
    fast = session.setup("smoke", device="cpu", runs_root=own, shipped_root=pretrained, verbose=False,
                         settings={"data_mode": "memory", "eval_batch_size": 50})
    assert fast.uses_shipped and fast.config().eval_batch_size == 50
    with pytest.raises(ValueError, match="settings: 'seed' comes from the profile or the course"):
        session.setup("smoke", device="cpu", runs_root=own, settings={"seed": 3}, verbose=False)


def test_cli_ship_and_check(runs, tmp_path, capsys):
    root = tmp_path / "pretrained"
    rc = cli.main(["ship", "--profile", "smoke", "--runs", str(runs), "--methods", "standard", "--no-surrogate",
                   "--out", str(root)])
    assert rc == 0 and "every entry verified" in capsys.readouterr().out
    (root / "smoke" / "stray.safetensors").write_bytes(b"x")
    assert cli.main(["ship", "--profile", "smoke", "--check", "--out", str(root)]) == 1
    assert "stray.safetensors: not listed" in capsys.readouterr().out
