"""One configuration flows down: CLI options -> TrainConfig -> MethodConfig, one source per default."""
from __future__ import annotations

import dataclasses

import pytest

from mtlat_edu import cli
from mtlat_edu.paper.methods import MethodConfig
from mtlat_edu.training.config import METHOD_FIELDS, TrainConfig, field_value
from mtlat_edu.training.profiles import Profile, get_profile


def _train_parser():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return parser, sub.choices["train"]


def test_every_train_config_field_is_an_option_with_its_default():
    _, train = _train_parser()
    options = {a.dest: a for a in train._actions}
    fields = [f for f in dataclasses.fields(TrainConfig) if f.name not in cli.TRAIN_OPTION_EXCEPTIONS]
    assert len(fields) >= 25
    for f in fields:
        assert f.name in options, f"TrainConfig.{f.name} has no --{f.name.replace('_', '-')} option"
        assert f"--{f.name.replace('_', '-')}" in options[f.name].option_strings
        default = options[f.name].default
        assert field_value(default) == getattr(TrainConfig(), f.name), f.name
    assert set(cli.TRAIN_OPTION_EXCEPTIONS) <= {f.name for f in dataclasses.fields(TrainConfig)}


def test_the_paper_defaults_have_one_source():
    # section 4.2: Mixup alpha 0.4, training eps ~ U[0, 0.025], targets drawn at random
    assert (TrainConfig().alpha, TrainConfig().eps_max, TrainConfig().target) == (0.4, 0.025, "random")
    for name in METHOD_FIELDS:
        assert getattr(TrainConfig(), name) == getattr(MethodConfig(), name), name
    assert set(METHOD_FIELDS) == {f.name for f in dataclasses.fields(MethodConfig)} - {"num_classes"}


def test_options_reach_the_train_config_and_the_method_config():
    parser, _ = _train_parser()
    args = parser.parse_args(["train", "--method", "standard", "mtlat_pgd", "--seeds", "3", "4", "--alpha", "0.2",
                              "--eps-max", "0.01", "--target", "least_likely", "--per-batch", "--pgd-steps", "5",
                              "--manifold-layers", "0", "2", "--no-amp", "--epochs", "2", "--batch-size", "8",
                              "--model", "small_cnn", "--dataset", "synthetic", "--track-robustness", "4",
                              "--track-attacks", "pgd", "pgd_ll", "--workers", "0"])
    cfgs = cli.train_configs(args)
    assert [(c.method, c.seed) for c in cfgs] == [("standard", 3), ("standard", 4), ("mtlat_pgd", 3), ("mtlat_pgd", 4)]
    c = cfgs[-1]
    assert (c.alpha, c.eps_max, c.target, c.per_batch, c.pgd_steps, c.amp) == (0.2, 0.01, "least_likely", True, 5, False)
    assert c.manifold_layers == (0, 2) and c.track_attacks == ("pgd", "pgd_ll") and c.track_robustness == 4
    assert (c.epochs, c.batch_size, c.model, c.dataset, c.workers) == (2, 8, "small_cnn", "synthetic", 0)
    m = c.method_config(7)
    assert (m.num_classes, m.alpha, m.eps_max, m.target, m.per_batch, m.pgd_steps, m.manifold_layers) == \
        (7, 0.2, 0.01, "least_likely", True, 5, (0, 2))


def test_a_bad_option_is_refused_once_with_its_name(capsys):
    assert cli.main(["train", "--method", "mtlat", "--eps-max", "1.5", "--dataset", "synthetic"]) == 2
    assert "--eps-max: " in capsys.readouterr().err
    with pytest.raises(ValueError, match="alpha"):
        TrainConfig(alpha=0.0).validate()


def test_a_profile_passes_every_shared_field_to_its_runs():
    template = TrainConfig(dataset="synthetic", model="small_cnn", epochs=3, batch_size=10, data_root="/d",
                           image_size=16, train_limit=50, test_limit=20, augment="flipcrop", eps_max=0.01, lr=0.003)
    p = Profile("t", template, seeds=(4,))
    cfg = p.train_config("mixup", seed=2)
    assert (cfg.method, cfg.dataset, cfg.model, cfg.epochs, cfg.batch_size, cfg.data_root, cfg.image_size,
            cfg.train_limit, cfg.test_limit, cfg.augment, cfg.seed, cfg.eps_max, cfg.lr) == \
        ("mixup", "synthetic", "small_cnn", 3, 10, "/d", 16, 50, 20, "flipcrop", 2, 0.01, 0.003)
    assert p.train_config("mtlat").seed == 4 and template.method == "mtlat" and template.seed == 0  # a copy
    assert (p.dataset, p.epochs, p.train_limit) == ("synthetic", 3, 50)  # the template's fields, read through
    assert get_profile("cpu").surrogate_config().model == "vgg_small"
    # get_profile's overrides: a training setting goes to the template, a profile field to the profile
    q = get_profile("smoke", train_limit=128, seeds=(0, 1), data_root="/x")
    assert (q.train.train_limit, q.train_limit, q.seeds, q.data_root) == (128, 128, (0, 1), "/x")
    assert get_profile("smoke").train_limit == 768 and get_profile("smoke").seeds == (0,)


def test_one_runs_option_and_one_run_folder_layout(tmp_path):
    """Every command that reads or writes runs takes ``--runs`` with one default; ``reproduce`` still
    accepts its former ``--runs-root``; every run folder comes from ``training.runs.run_folder``."""
    from mtlat_edu.training.profiles import run_dir
    from mtlat_edu.training.runs import DEFAULT_RUNS, run_folder, train_group
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for command in ("train", "train-profile", "evaluate", "reproduce", "ship"):
        options = {o: a for a in sub.choices[command]._actions for o in a.option_strings}
        assert options["--runs"].dest == "runs" and options["--runs"].default == DEFAULT_RUNS, command
    assert parser.parse_args(["reproduce", "--runs-root", "old"]).runs == "old"
    assert parser.parse_args(["reproduce", "--runs", "new"]).runs == "new"
    assert parser.parse_args(["reproduce"]).runs == DEFAULT_RUNS
    assert "--runs-root" not in sub.choices["reproduce"].format_help()
    assert run_folder(tmp_path, train_group("synthetic", "small_cnn"), "mtlat") == tmp_path / "synthetic-small_cnn" / "mtlat"
    assert run_folder(tmp_path, "smoke", "mtlat", 2) == tmp_path / "smoke" / "mtlat" / "seed2"
    smoke = get_profile("smoke")
    assert run_dir(smoke, tmp_path, "mtlat") == run_folder(tmp_path, "smoke", "mtlat", smoke.seeds[0])


def test_a_setting_declared_once_reaches_both_commands_and_the_profile(monkeypatch):
    """The recipe of "how to add a setting" (docs/design.md): one field with ``setting(...)`` in
    TrainConfig; the options of ``train`` and ``train-profile`` and the profile's runs follow."""
    from mtlat_edu.training import config as C, profiles
    toy = dataclasses.make_dataclass(
        "TrainConfig", [("toy_setting", int, C.setting(3, "a toy setting", metavar="T"))], bases=(TrainConfig,))
    monkeypatch.setattr(cli, "TrainConfig", toy)
    monkeypatch.setattr(profiles, "TrainConfig", toy)
    real = get_profile("smoke")  # a profile's template is a TrainConfig: it holds the new field with its default
    smoke = dataclasses.replace(real, train=toy(**dataclasses.asdict(real.train)))
    parser, train = _train_parser()
    option = {o: a for a in train._actions for o in a.option_strings}["--toy-setting"]
    assert (option.default, option.help, option.type, option.metavar) == (3, "a toy setting", int, "T")
    args = parser.parse_args(["train", "--method", "standard", "--dataset", "synthetic", "--toy-setting", "5"])
    assert [c.toy_setting for c in cli.train_configs(args)] == [5]
    args = parser.parse_args(["train-profile", "--profile", "smoke", "--toy-setting", "7", "--eps-max", "0.01",
                              "--no-amp", "--manifold-layers", "0", "1"])
    overrides = cli.profile_overrides(args)
    assert overrides == {"toy_setting": 7, "eps_max": 0.01, "amp": False, "manifold_layers": (0, 1)}
    cfg = smoke.train_config("mtlat", **overrides)
    assert (cfg.toy_setting, cfg.eps_max, cfg.amp, cfg.epochs, cfg.model) == (7, 0.01, False, smoke.epochs, smoke.model)
    assert smoke.train_config("mtlat").toy_setting == 3  # not given: the field's default
    assert cli.profile_overrides(parser.parse_args(["train-profile", "--profile", "smoke"])) == {}
    # reproduce takes it too, and hands it on to the notebooks' ``settings`` after one check
    args = parser.parse_args(["reproduce", "--profile", "smoke", "--toy-setting", "9", "--lr", "0.01"])
    assert cli.profile_overrides(args) == {"toy_setting": 9, "lr": 0.01} and args.device == "auto"
    assert profiles.check_settings(smoke, cli.profile_overrides(args)) == {"toy_setting": 9, "lr": 0.01}
    assert cli.profile_overrides(parser.parse_args(["reproduce"])) == {}


def test_settings_are_checked_once_where_they_enter():
    """check_settings: the fields a profile fixes, unknown names and bad values are refused with the
    name; lists become tuples; every run of the profile (methods and surrogate) is checked."""
    from mtlat_edu.training.profiles import check_settings
    smoke = get_profile("smoke")
    assert check_settings(smoke, None) == {} and check_settings(smoke, {}) == {}
    assert check_settings(smoke, {"eps_max": 0.01, "manifold_layers": [0, 1]}) == {"eps_max": 0.01,
                                                                                   "manifold_layers": (0, 1)}
    with pytest.raises(ValueError, match="settings: 'model' comes from the profile or the course; the settings are"):
        check_settings(smoke, {"model": "resnet18"})
    with pytest.raises(ValueError, match="settings: 'epsmax' is not a training setting"):
        check_settings(smoke, {"epsmax": 0.01})
    with pytest.raises(ValueError, match="eps_max"):
        check_settings(smoke, {"eps_max": -0.5})
    with pytest.raises(ValueError, match="batch_size"):  # the adversarial methods split each batch in two
        check_settings(smoke, {"batch_size": 7})
    with pytest.raises(ValueError, match="settings: expected a dict"):
        check_settings(smoke, [("eps_max", 0.01)])
    # epochs reach every run, the surrogate's included (a profile's own surrogate_epochs otherwise)
    assert check_settings(smoke, {"epochs": 2}) == {"epochs": 2} and smoke.surrogate_config(epochs=2).epochs == 2
    cifar = get_profile("cifar10")
    assert (cifar.surrogate_config().epochs, cifar.surrogate_config(epochs=3).epochs, cifar.epochs) == (10, 3, 18)
    assert check_settings(smoke, {"batch_size": 7}, methods=["standard"]) == {"batch_size": 7}  # no split batch
    from mtlat_edu.training.profiles import changes_weights
    assert changes_weights({"eps_max": 0.01}) and changes_weights({"epochs": 2, "compile": True})
    assert not changes_weights({"data_mode": "stream", "compile": True, "workers": 2}) and not changes_weights({})


def test_train_profile_takes_the_method_settings_and_checks_them_before_training(capsys, tmp_path):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    options = {o for a in sub.choices["train-profile"]._actions for o in a.option_strings}
    assert {"--alpha", "--eps-max", "--target", "--per-batch", "--lr", "--epochs", "--no-amp"} <= options
    assert not {"--method", "--seed", "--model", "--dataset", "--track-robustness"} & options  # the profile's own
    assert cli.main(["train-profile", "--profile", "smoke", "--runs", str(tmp_path), "--eps-max", "1.5"]) == 2
    assert "--eps-max: " in capsys.readouterr().err
    assert cli.main(["train-profile", "--profile", "smoke", "--runs", str(tmp_path), "--epochs", "0"]) == 2
    assert "--epochs: " in capsys.readouterr().err  # reaches every run, the surrogate's too, and is checked there
    assert not any(tmp_path.iterdir())  # refused before any run folder was made


def test_reproduce_hands_its_settings_to_the_training_and_every_notebook(tmp_path, monkeypatch):
    from mtlat_edu.course import runner
    seen = {}
    monkeypatch.setattr(runner, "ensure_kernel", lambda name: None)
    monkeypatch.setattr(runner, "_execute_all", lambda paths, exec_dir, params, *a: seen.update(params=params))
    monkeypatch.setattr(runner, "train_course", lambda prof, runs, **kw: seen.update(train=kw) or [])
    runner.run_notebooks("smoke", out=tmp_path / "o", notebooks=["05"], runs_root=tmp_path / "r",
                         settings={"eps_max": 0.01, "manifold_layers": (0, 1)}, log=lambda s: None)
    assert seen["params"]["settings"] == {"eps_max": 0.01, "manifold_layers": [0, 1]}  # JSON for papermill
    assert seen["train"]["eps_max"] == 0.01 and seen["train"]["manifold_layers"] == (0, 1)
    with pytest.raises(ValueError, match="settings: 'model' comes from the profile"):
        runner.run_notebooks("smoke", out=tmp_path / "o2", settings={"model": "vgg"}, log=lambda s: None)
    assert not (tmp_path / "o2").exists()  # refused before anything was written
