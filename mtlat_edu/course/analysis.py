"""What the notebooks compute and print beyond training and the benchmark: one-notebook
experiments (the FGSM sweep of notebook 03, the photo of notebook 06), tables and summaries
(profiles, data, accuracy by severity), and the analyses of section 5 (the claims' verdicts,
the complementarity of Mixup and TLAT, section 5.3).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from mtlat_edu.benchmark import parts as BP
from mtlat_edu.benchmark.claims import claims_lines
from mtlat_edu.benchmark.paper_values import paper_value
from mtlat_edu.core import io as mio
from mtlat_edu.core.modes import eval_mode
from mtlat_edu.paper.adversarial import fgsm, random_targets, targeted_fgsm
from mtlat_edu.paper.methods import TABLE3_METHODS
from mtlat_edu.robustness.measure import count_correct, model_device
from mtlat_edu.training.profiles import PROFILES


def profiles_table() -> str:
    """The registered profiles, one line each."""
    rows = [f"{'profile':<10} {'dataset':<12} {'model':<10} {'epochs':>6} {'train images':>12}  description"]
    for p in PROFILES.values():
        rows.append(f"{p.name:<10} {p.dataset:<12} {p.model:<10} {p.epochs:>6} {str(p.train_limit or 'all'):>12}  "
                    f"{p.description}")
    return "\n".join(rows)


def data_summary(data) -> str:
    """Size, image shape and images per class of an :class:`~mtlat_edu.data.ImageData`."""
    counts = torch.bincount(data.labels, minlength=data.num_classes).tolist()
    per = ", ".join(f"{c} {n}" for c, n in zip(data.classes, counts))
    return (f"{data.name}: {len(data)} images of {tuple(data.images.shape[1:])} (C, H, W), uint8, "
            f"{data.num_classes} classes\nper class: {per}")


def fgsm_sweep(model, data, eps_values: Sequence[float] = (0.0, 0.005, 0.01, 0.02, 0.04, 0.08),
               seed: int = 0, batch_size: int = 250) -> list[dict]:
    """Accuracy under untargeted FGSM (eq. 2) and targeted FGSM (eq. 5, random other target) per eps.

    ``target_hit`` is the fraction of images the targeted step sends to its target class. The
    steps and the counts run in eval mode (:func:`mtlat_edu.core.modes.eval_mode`; the model's modes
    are restored afterwards); the targets are drawn once, from ``seed``, and shared by every eps.
    """
    device = model_device(model)
    g = torch.Generator().manual_seed(seed)
    targets = random_targets(data.labels, data.num_classes, exclude_true=True, generator=g)
    rows = []
    with eval_mode(model):
        for eps in eps_values:
            n_u = n_t = n_hit = 0
            for s in range(0, len(data), batch_size):
                x = data.float_images(slice(s, s + batch_size), device)
                y, t = data.labels[s:s + batch_size].to(device), targets[s:s + batch_size].to(device)
                n_u += count_correct(model, fgsm(model, x, y, eps), y).item()
                xt = targeted_fgsm(model, x, t, eps)
                n_t += count_correct(model, xt, y).item()
                n_hit += count_correct(model, xt, t).item()
            rows.append({"eps": eps, "acc_untargeted": n_u / len(data), "acc_targeted": n_t / len(data),
                         "target_hit": n_hit / len(data)})
    return rows


def photo(size: int = 224, fallback=None) -> tuple[torch.Tensor, str]:
    """A real photo as a float CHW image of ``size`` x ``size`` and where it comes from.

    scikit-image's ``chelsea`` (a cat, bundled with the package) centre-cropped and resized; without
    scikit-image, ``fallback`` (a CHW image, e.g. a CIFAR image) upsampled, and the description says so.
    """
    from torchvision.transforms import v2
    try:
        from skimage import data as skdata
        img = torch.from_numpy(skdata.chelsea().copy()).permute(2, 0, 1)
        h, w = img.shape[-2:]
        side = min(h, w)
        img = img[:, (h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        x = v2.functional.resize(img, [size, size], antialias=True).float() / 255
        return x.clamp(0, 1), f"scikit-image's 'chelsea' photo resized to {size} px"
    except ImportError:
        if fallback is None:
            raise
        x = torch.nn.functional.interpolate(torch.as_tensor(fallback)[None].float(), size=(size, size),
                                            mode="bicubic", align_corners=False)[0]
        return x.clamp(0, 1), (f"scikit-image is not installed: a {fallback.shape[-1]} px dataset image upsampled "
                               f"to {size} px instead (blurry; `pip install scikit-image` for the real photo)")


def accuracy_by_severity(results, model: str) -> dict[str, dict[int, float]]:
    """``{corruption: {severity: accuracy}}`` of ``model`` from the benchmark's long results."""
    rows = results[(results["model"] == model) & (results["severity"] > 0)]
    out: dict[str, dict[int, float]] = {}
    for name, sev, acc in zip(rows["perturbation"], rows["severity"], rows["accuracy"]):
        out.setdefault(name, {})[int(sev)] = float(acc)
    return out


def accuracy_table(results, kind_prefix: str | None = None):
    """Accuracy in % as a models x perturbations table (severities averaged) from the long results
    (notebooks 06, 07). A suite measures clean accuracy on each image set it uses (the evaluation
    images, the attacked ones, the whole test set); the ``clean`` column is never an average of
    them: it is the clean accuracy on the images the other columns were measured on when they share
    one count, else one column per count (``clean (500 images)``)."""
    df = results if kind_prefix is None else results[results["kind"].str.startswith(kind_prefix)]
    is_clean = df["perturbation"] == "clean"
    counts = sorted(df.loc[is_clean, "n_images"].unique()) if "n_images" in df else []
    if len(counts) > 1:
        others = df.loc[~is_clean, "n_images"].unique()
        if len(others) == 1 and others[0] in counts:
            df = df[~is_clean | (df["n_images"] == others[0])]
        else:
            df = df.assign(perturbation=df["perturbation"].where(
                ~is_clean, df["n_images"].map(lambda n: f"clean ({n} images)")))
    table = df.groupby(["model", "perturbation"], sort=False)["accuracy"].mean().unstack() * 100
    return table.reindex(index=list(dict.fromkeys(df["model"])), columns=list(dict.fromkeys(df["perturbation"])))


# The paper's Table 3 (ResNet-50 on ImageNet-100): quoted for comparison, never recomputed here.
PAPER_TABLE3 = {m: paper_value("table3", m, BP.CLEAN) for m in TABLE3_METHODS}


def load_claims(path) -> dict | None:
    """A committed claims report (``claims.json`` of ``mtlat-edu evaluate``, e.g. the five-seed run
    in ``results/cpu/``) read back for notebook 08, or None when ``path`` is None or absent. A file
    that is not such a report is refused with its name."""
    if path is None or not Path(path).is_file():
        return None
    report = mio.read_json(path, remedy="it is written by mtlat-edu evaluate; restore it from the repository")
    if not isinstance(report, dict) or not isinstance(report.get("claims"), list) or "seeds" not in report:
        raise ValueError(f"committed_claims: {path} is not a claims report (expected the keys 'seeds' and 'claims')")
    return report


def print_claims(report: dict) -> None:
    """The verdict of every claim (``holds`` / ``within_noise`` / ``fails``), one line each."""
    print("\n".join(claims_lines(report)))


def complementarity(scores, methods: Sequence[str] = ("mixup", "tlat", "mtlat"), reference: str = "standard"):
    """Per-corruption ``R(method) - R(reference)`` (section 5.3), as a corruptions x methods DataFrame."""
    cols = [c for c in BP.corruption_names() if c in scores.columns]
    present = [m for m in methods if m in scores.index]
    if reference not in scores.index or not present or not cols:
        raise ValueError(f"scores: need the {reference!r} row, some of {list(methods)} and corruption columns")
    data = {m: [float(scores.loc[m, c] - scores.loc[reference, c]) for c in cols] for m in present}
    return pd.DataFrame(data, index=pd.Index(cols, name="corruption"))


def complementarity_summary(diff) -> dict:
    """Where Mixup and TLAT cover each other (section 5.3), at two decimals (the rule of the marks)."""
    r = diff.round(2)
    out = {}
    if {"mixup", "tlat"} <= set(r.columns):
        out["mixup_hurts_tlat_helps"] = [c for c in r.index if r.loc[c, "mixup"] < 0 < r.loc[c, "tlat"]]
        out["tlat_hurts_mixup_helps"] = [c for c in r.index if r.loc[c, "tlat"] < 0 < r.loc[c, "mixup"]]
        out["both_help"] = [c for c in r.index if r.loc[c, "mixup"] > 0 and r.loc[c, "tlat"] > 0]
        out["both_hurt"] = [c for c in r.index if r.loc[c, "mixup"] < 0 and r.loc[c, "tlat"] < 0]
    if "mtlat" in r.columns:
        out["mtlat_helps"] = [c for c in r.index if r.loc[c, "mtlat"] > 0]
        out["mtlat_hurts"] = [c for c in r.index if r.loc[c, "mtlat"] < 0]
        if {"mixup", "tlat"} <= set(r.columns):
            out["mtlat_at_least_the_worse_part"] = [
                c for c in r.index if r.loc[c, "mtlat"] >= min(r.loc[c, "mixup"], r.loc[c, "tlat"])]
    out["corruptions"] = len(r)
    return out
