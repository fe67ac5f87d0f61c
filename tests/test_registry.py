"""mtlat_edu.core.registry and every registry of the package, against hand-written expectations.

* the helper: registration order, labels, kinds, the mapping behaviour, duplicates and kinds refused,
  one error type with one exact message for an unknown name;
* the package's registries: names, the paper's labels (Tables 1-3 column and row titles) and kinds,
  written out here by hand so that a registration in the wrong place, under the wrong name or kind fails;
* the command line and the checks read the registries (choices, error messages).
"""
from __future__ import annotations

import argparse

import pytest

from mtlat_edu import cli, data, models
from mtlat_edu.benchmark import parts as P
from mtlat_edu.benchmark.scores import TABLE3_TITLES
from mtlat_edu.core.checks import check_choice
from mtlat_edu.core.registry import Registry, UnknownNameError
from mtlat_edu.paper import methods
from mtlat_edu.paper.adversarial import TARGET_SELECTION
from mtlat_edu.robustness import attacks as A
from mtlat_edu.robustness import corruptions as C
from mtlat_edu.training import config, profiles


# ---------------------------------------------------------------------------------------------- helper

def _shapes() -> Registry:
    reg = Registry("shape", kinds=("round", "angular"))
    reg.add("square", 4, label="Square", kind="angular", description="four sides")

    @reg.register("disk", label="Disk", kind="round")
    def disk():
        return 0

    reg.add("triangle", 3, kind="angular")
    reg.add("ellipse", 1, label="Ellipse", kind="round")
    return reg


def test_registry_order_labels_kinds():
    reg = _shapes()
    assert list(reg) == ["square", "disk", "triangle", "ellipse"]          # registration order
    assert len(reg) == 4 and "disk" in reg and "cube" not in reg and 4 not in reg
    assert reg["square"] == 4 and reg["disk"]() == 0                        # the decorator returns the function
    assert reg.lookup("triangle") == 3
    assert reg.label("square") == "Square" and reg.label("triangle") == "triangle"   # label defaults to the name
    assert reg.labels() == {"square": "Square", "disk": "Disk", "triangle": "triangle", "ellipse": "Ellipse"}
    assert reg.labels(["ellipse", "square"]) == {"ellipse": "Ellipse", "square": "Square"}
    assert reg.kind("disk") == "round"
    assert reg.kinds == ("round", "angular")                                # the declared order, not first use
    assert reg.names() == ("square", "disk", "triangle", "ellipse")
    assert reg.names(kind="angular") == ("square", "triangle")
    assert reg.names(kind=("round", "angular")) == ("disk", "ellipse", "square", "triangle")  # kind by kind
    assert reg.entry("square").description == "four sides" and reg.entry("disk").description == ""
    assert [e.name for e in reg.entries(kind="round")] == ["disk", "ellipse"]
    assert reg.options() == [("Square", "square"), ("Disk", "disk"), ("triangle", "triangle"), ("Ellipse", "ellipse")]
    assert reg.options(["disk", "triangle"], show_name=True) == [("Disk (disk)", "disk"), ("triangle", "triangle")]
    assert dict(reg.items()) == {"square": 4, "disk": reg["disk"], "triangle": 3, "ellipse": 1}
    assert reg.get("cube") is None and reg.get("cube", 7) == 7             # dict idioms keep working


def test_registry_refuses_duplicates_and_undeclared_kinds():
    reg = _shapes()
    with pytest.raises(ValueError, match="^shape: 'disk' is registered already$"):
        reg.add("disk", 5, kind="round")
    with pytest.raises(ValueError, match="^shape: 'disk' is registered already$"):
        reg.register("disk", kind="round")(lambda: 1)
    with pytest.raises(ValueError, match="kind: 'star' has kind 'pointy'; valid kinds: round, angular"):
        reg.add("star", 5, kind="pointy")
    with pytest.raises(ValueError, match="non-empty string"):
        reg.add("", 5)
    assert list(reg) == ["square", "disk", "triangle", "ellipse"]          # nothing was added
    with pytest.raises(UnknownNameError, match=r"^kind: unknown name 'pointy'; valid names: round, angular$"):
        reg.names(kind="pointy")


def test_registry_setitem_and_delitem():
    """Dict-style plugging (tests add models this way): a new name gets no kind, a registered one keeps
    its label and kind; deleting restores the registry."""
    reg = _shapes()
    reg["hexagon"] = 6
    assert list(reg)[-1] == "hexagon" and reg.label("hexagon") == "hexagon" and reg.kind("hexagon") is None
    reg["square"] = 40
    assert reg["square"] == 40 and reg.label("square") == "Square" and reg.kind("square") == "angular"
    del reg["hexagon"]
    assert "hexagon" not in reg
    with pytest.raises(UnknownNameError):
        del reg["hexagon"]


def test_registry_facts():
    """Per-name facts ride on the entries: read back one by one, or as a filter of names()."""
    reg = _shapes()
    reg.add("cube", 6, kind="angular", facts={"solid": True, "faces": 6})
    assert reg.fact("cube", "faces") == 6 and reg.fact("square", "faces", 0) == 0
    with pytest.raises(KeyError, match="'square' has no fact 'faces'"):
        reg.fact("square", "faces")
    assert reg.names(solid=True) == ("cube",) and reg.names(kind="angular", solid=True) == ("cube",)
    assert reg.names(kind="round", solid=True) == ()
    reg["cube"] = 7                                                          # a new object keeps the facts
    assert reg["cube"] == 7 and reg.entry("cube").facts == {"solid": True, "faces": 6}
    with pytest.raises(UnknownNameError):
        reg.fact("sphere", "faces", 0)


def test_unknown_name_error_message_is_exact():
    reg = _shapes()
    with pytest.raises(UnknownNameError) as info:
        reg["cube"]
    err = info.value
    assert str(err) == "shape: unknown name 'cube'; valid names: square, disk, triangle, ellipse"
    assert isinstance(err, ValueError) and isinstance(err, KeyError)
    assert (err.arg, err.name, err.valid) == ("shape", "cube", ("square", "disk", "triangle", "ellipse"))
    with pytest.raises(UnknownNameError, match=r"^outline: unknown name 'cube'; valid names: square, disk, "):
        reg.lookup("cube", "outline")                                       # the argument the caller takes
    with pytest.raises(UnknownNameError, match=r"^shape: unknown name 3; valid names: "):
        reg.check(3)
    grouped = UnknownNameError("parts", "x", ["a", "b"], groups=["all", "none"])
    assert str(grouped) == "parts: unknown name 'x'; valid groups: all, none; valid names: a, b"


def test_check_choice_uses_the_one_error():
    reg = _shapes()
    for choices in (reg, ("square", "disk", "triangle", "ellipse")):
        with pytest.raises(UnknownNameError) as info:
            check_choice("cube", "shape", choices)
        assert str(info.value) == "shape: unknown name 'cube'; valid names: square, disk, triangle, ellipse"
        check_choice("disk", "shape", choices)                              # a valid name passes


# -------------------------------------------------------------------------------- the package's registries

def test_methods_registry():
    assert list(methods.METHODS) == ["standard", "mixup", "fgsm", "target_fgsm", "ls", "tlat", "iat", "iat_targeted",
                                     "mtlat", "mtlat_pgd", "manifold_mtlat"]
    # the paper's row titles (Tables 1-3), and section 6's two future-work methods
    assert list(methods.METHODS.labels().values()) == ["standard", "Mixup", "FGSM", "target-FGSM", "LS", "TLAT", "IAT",
                                                       "IAT (targeted)", "M-TLAT", "M-TLAT (PGD)", "Manifold M-TLAT"]
    assert set(methods.ADVERSARIAL) == {"fgsm", "target_fgsm", "ls", "tlat", "iat", "iat_targeted", "mtlat", "mtlat_pgd",
                                        "manifold_mtlat"}
    assert methods.METHODS.names(kind="clean") == ("standard", "mixup")
    assert methods.METHODS.entry("mtlat").description.startswith("M-TLAT, Algorithm 1")
    assert TABLE3_TITLES == {"standard": "standard", "fgsm": "FGSM", "target_fgsm": "target-FGSM", "ls": "LS",
                             "tlat": "TLAT"}
    # table membership rides on the entries; the tuples are views of it
    assert methods.TABLE3_METHODS == methods.METHODS.names(table3=True) == tuple(TABLE3_TITLES)
    assert methods.FUTURE_METHODS == profiles.FUTURE_METHODS == ("mtlat_pgd", "manifold_mtlat")
    assert profiles.TABLE_METHODS == methods.METHODS.names(future=False) == tuple(
        n for n in methods.METHODS if n not in methods.FUTURE_METHODS)


def test_corruption_registry_labels_are_the_papers_columns():
    # Table 2a's column titles, in order: ImageNet-C's fifteen by family, then the paper's four
    assert list(C.CORRUPTIONS.labels().values()) == (
        "Gauss Shot Impul Defocus Glass Motion Zoom Snow Frost Fog Bright Contr Elastic Pixelate Jpeg "
        "Obstru Color Trans Rot").split()
    assert [C.CORRUPTIONS.kind(n) for n in C.CORRUPTIONS] == (
        ["noise"] * 3 + ["blur"] * 4 + ["weather"] * 4 + ["digital"] * 4 + ["extra"] * 4)
    assert C.CORRUPTIONS.kinds == ("noise", "blur", "weather", "digital", "extra")
    assert C.EXTRA == ("occlusion", "color_distortion", "translation", "rotation")
    assert C.CORRUPTIONS.label("jpeg_compression") == "Jpeg" and C.DISPLAY["occlusion"] == "Obstru"


def test_attack_registry():
    assert list(A.ATTACKS.labels().values()) == ["pgd e=0.04", "pgd_ll e=0.04", "cw_l2", "mi_fgsm e=0.04",
                                                 "mi_fgsm e=0.08", "cw_l2 kappa=50", "cw_l2 L2<=0.5"]
    assert A.ATTACKS.names(kind="white-box") == ("pgd", "pgd_ll", "cw_l2", "cw_l2_kappa50", "cw_l2_within0.5")
    # the paper's five columns, and CW under its two other success rules (readings of the cw_l2 run)
    assert A.paper_attacks() == P.paper_attack_names() == ("pgd", "pgd_ll", "cw_l2", "mi_fgsm_0.04", "mi_fgsm_0.08")
    assert P.attack_readings() == ("cw_l2_kappa50", "cw_l2_within0.5") == A.readings_of("cw_l2")
    assert {A.family(n) for n in P.attack_readings()} == {"cw_l2"} and A.family("pgd") == "pgd"
    assert list(A.CW_RULES) == ["any", "kappa", "within"]
    assert A.ATTACKS.names(kind="black-box") == ("mi_fgsm_0.04", "mi_fgsm_0.08")
    assert A.DISPLAY == A.ATTACKS.labels()
    assert all(A.ATTACKS[n].name == n for n in A.ATTACKS)
    assert config.TRACK_ATTACKS == ("pgd", "pgd_ll", "cw_l2")
    assert P.groups()["black_box"] == ("mi_fgsm_0.04", "mi_fgsm_0.08")


def test_other_registries():
    assert list(models.MODELS) == ["resnet18", "preact_resnet18", "resnet50", "resnext50", "vgg", "vgg_small",
                                   "small_cnn", "small_cnn_wide"]
    assert models.MODELS.names(kind="imagenet") == ("resnet50", "resnext50")
    assert models.MODELS.label("resnext50") == "ResNeXt-50"
    assert list(data.DATASETS) == ["cifar10", "imagefolder", "imagenet100", "synthetic"]
    assert data.DATASETS.names(kind="generated") == ("synthetic",)
    assert list(data.AUGMENTATIONS) == ["none", "flipcrop"]
    assert list(TARGET_SELECTION) == ["random", "random_other", "least_likely", "random_unmixed"]
    assert TARGET_SELECTION.names(kind="couple") == ("random_unmixed",)
    assert list(profiles.PROFILES) == ["smoke", "cpu", "cpu_short", "cpu_wide", "cifar10", "paper"]
    assert profiles.PROFILES.entry("smoke").description == profiles.PROFILES["smoke"].description != ""


@pytest.mark.parametrize("call, message", [
    (lambda: methods.get_method("mtalt"), "method: unknown name 'mtalt'; valid names: standard, mixup, fgsm, "
                                          "target_fgsm, ls, tlat, iat, iat_targeted, mtlat, mtlat_pgd, manifold_mtlat"),
    (lambda: methods.MethodConfig(target="farthest"),
     "target: unknown name 'farthest'; valid names: random, random_other, least_likely, random_unmixed"),
    (lambda: A.get_attack("fgsm"), "attack: unknown name 'fgsm'; valid names: pgd, pgd_ll, cw_l2, mi_fgsm_0.04, "
                                   "mi_fgsm_0.08, cw_l2_kappa50, cw_l2_within0.5"),
    (lambda: C.corrupt(None, "smog", 3), "name: unknown name 'smog'; valid names: gaussian_noise, shot_noise, "),
    (lambda: models.build_model("vit"), "model: unknown name 'vit'; valid names: resnet18, preact_resnet18, "),
    (lambda: data.load_dataset("mnist", "train"), "dataset: unknown name 'mnist'; valid names: cifar10, "
                                                  "imagefolder, imagenet100, synthetic"),
    (lambda: profiles.get_profile("laptop"), "profile: unknown name 'laptop'; valid names: smoke, cpu, cpu_short, "
                                             "cpu_wide, cifar10, paper"),
    (lambda: profiles.PROFILES["smoke"].train_config("nope"), "method: unknown name 'nope'; valid names: standard"),
    (lambda: config.TrainConfig(augment="cutout").validate(), "augment: unknown name 'cutout'; valid names: none, "
                                                              "flipcrop"),
    (lambda: config.TrainConfig(track_robustness=4, track_attacks=("mi_fgsm_0.04",)).validate(),
     "track_attacks: unknown name 'mi_fgsm_0.04'; valid names: pgd, pgd_ll, cw_l2"),
    (lambda: P.kind_of("smog"), "perturbation: unknown name 'smog'; valid names: clean, gaussian_noise, "),
])
def test_unknown_names_across_the_package(call, message):
    with pytest.raises(UnknownNameError) as info:
        call()
    assert str(info.value).startswith(message)


# ---------------------------------------------------------------------------------------------- the CLI

def _train_options() -> dict[str, argparse.Action]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    return sub._option_string_actions


def test_cli_choices_come_from_the_registries():
    opts = _train_options()
    assert list(opts["--target"].choices) == ["random", "random_other", "least_likely", "random_unmixed"] \
        == list(TARGET_SELECTION)
    assert list(opts["--method"].choices) == list(methods.METHODS)
    assert list(opts["--model"].choices) == list(models.MODELS)
    assert list(opts["--dataset"].choices) == list(data.DATASETS)
    assert list(opts["--augment"].choices) == ["none", "flipcrop"]
    assert list(opts["--track-attacks"].choices) == ["pgd", "pgd_ll", "cw_l2"]
    assert sorted(opts["--data-mode"].choices) == ["auto", "memory", "stream"]
    assert sorted(opts["--fast-path"].choices) == ["auto", "off", "on"]


def test_cli_bad_target_lists_the_registered_ones(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--target", "farthest"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--target: invalid choice: 'farthest'" in err
    assert "'random', 'random_other', 'least_likely', 'random_unmixed'" in err
