"""Interactive panels (ipywidgets) of the course notebooks.

Each builder returns a :class:`Panel`: its ``widget`` (controls above an ``Output`` holding the
figure, the ``interactive_output`` pattern that works in JupyterLab), its ``controls`` by name,
and its *pure* callback ``compute(**values) -> dict`` (what the figure shows: tensors, labels).
Setting a control's value runs ``compute`` and stores the result in ``panel.last``, so a test
can do::

    panel = mixup_panel(x1, 3, x2, 5, classes)
    panel.controls["lam"].value = 0.3
    assert torch.allclose(panel.last["x_mix"], 0.3 * x1 + 0.7 * x2)

``panel.figure()`` draws the current state as a static figure (a headless run records it);
displaying ``panel`` (last expression of a cell) shows the live widget. The slider descriptions
("lambda", "eps", "severity") are the labels a learner, and the browser test, look for.
"""
from __future__ import annotations

import numbers
from typing import Callable, Mapping, Sequence

import torch

from mtlat_edu.core.modes import eval_mode
from mtlat_edu.course import viz
from mtlat_edu.paper.adversarial import PGD_STEP_FACTOR, fgsm, targeted_fgsm, targeted_pgd
from mtlat_edu.paper.labels import one_hot, tlat_labels
from mtlat_edu.paper.mixup import manifold_forward, mixup, sample_lambda
from mtlat_edu.robustness.attacks import ATTACKS, family, run_attacks
from mtlat_edu.robustness.corruptions import ALL, CORRUPTIONS, corrupt
from mtlat_edu.robustness.measure import accuracy, model_device


class Panel:
    """Controls + an Output that redraws ``draw(compute(**values))`` whenever a value changes."""

    def __init__(self, controls: Mapping[str, object], compute: Callable[..., dict], draw: Callable[[dict], object],
                 title: str | None = None):
        import ipywidgets as W
        self.controls = dict(controls)
        self.compute = compute
        self.draw = draw
        self.last: dict | None = None
        self.calls = 0
        self.output = W.interactive_output(self._callback, self.controls)
        parts = [W.HTML(f"<b>{title}</b>")] if title else []
        parts += [W.HBox(list(self.controls.values())), self.output]
        self.widget = W.VBox(parts)

    def values(self) -> dict:
        return {k: c.value for k, c in self.controls.items()}

    def update(self, **values) -> dict:
        """Run the pure callback on the current values (overridden by ``values``); keep the result."""
        self.last = self.compute(**{**self.values(), **values})
        self.calls += 1
        return self.last

    def figure(self, **values):
        """The figure for the current (or given) values, as a static matplotlib Figure."""
        return self.draw(self.update(**values))

    def set(self, **values) -> dict:
        """Set controls like a learner does (each change triggers the widget's callback)."""
        for k, v in values.items():
            self.controls[k].value = v
        return self.last

    def _callback(self, **values):
        fig = self.figure(**values)
        from IPython.display import display
        display(fig)

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


def _class_options(classes: Sequence[str]):
    return [(f"{k}: {c}", k) for k, c in enumerate(classes)]


def _float_slider(description: str, value: float, lo: float, hi: float, step: float, fmt: str = ".2f"):
    import ipywidgets as W
    return W.FloatSlider(value=value, min=lo, max=hi, step=step, description=description,
                         continuous_update=False, readout_format=fmt,
                         style={"description_width": "initial"}, layout=W.Layout(width="360px"))


def _dropdown(description: str, options, value):
    import ipywidgets as W
    return W.Dropdown(options=options, value=value, description=description,
                      style={"description_width": "initial"})


def _check_image(x: torch.Tensor, name: str) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3 or not x.is_floating_point():
        raise ValueError(f"{name}: expected one float CHW image in [0, 1], got {tuple(x.shape)} {x.dtype}")
    return x


def _class_index(value, name: str, num_classes: int | None) -> int:
    """A class index: an integer (a Python or numpy integer, or a one-element integer tensor) in
    ``[0, num_classes)``; a float or a bool is refused, never truncated (``None``: any integer >= 0)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point() \
            and value.dtype != torch.bool:
        value = value.item()
    top = f"[0, {num_classes - 1}]" if num_classes is not None else ">= 0"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0 or \
            (num_classes is not None and value >= num_classes):
        raise ValueError(f"{name}: must be a class index, an integer in {top}, got {value!r}")
    return int(value)


@torch.no_grad()
def predict(model, x: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities of ``model`` (eval mode, the modes restored afterwards) for a batch ``x``."""
    with eval_mode(model):
        return torch.softmax(model(x).float(), dim=1)


# ---------------------------------------------------------------------------------------------
# notebook 02: Mixup, eq. (1)

def mix_couple(x1, y1: int, x2, y2: int, lam: float, num_classes: int):
    """Eq. (1) on one couple through :func:`mtlat_edu.paper.mixup.mixup`: ``(x_mix, y_mix)``."""
    x = torch.stack([_check_image(x1, "x1"), _check_image(x2, "x2")])
    y = one_hot(torch.tensor([_class_index(y1, "y1", num_classes), _class_index(y2, "y2", num_classes)]), num_classes)
    x_mix, y_mix = mixup(x, y, float(lam), torch.tensor([1, 0]))
    return x_mix[0], y_mix[0]


def mixup_panel(x1, y1: int, x2, y2: int, classes: Sequence[str], lam: float = 0.5, alpha: float = 0.4,
                n_draws: int = 500, seed: int = 0) -> Panel:
    """Sliders "lambda" and "alpha": the mixed image, its soft label and Beta(alpha, alpha)."""
    x1, x2 = _check_image(x1, "x1"), _check_image(x2, "x2")
    n = len(classes)
    y1, y2 = _class_index(y1, "y1", n), _class_index(y2, "y2", n)

    def compute(lam: float, alpha: float) -> dict:
        x_mix, y_mix = mix_couple(x1, y1, x2, y2, lam, n)
        draws = sample_lambda(n_draws, alpha, generator=torch.Generator().manual_seed(seed))
        return {"lam": float(lam), "alpha": float(alpha), "x_mix": x_mix, "y_mix": y_mix, "draws": draws}

    def draw(r: dict):
        return viz.mixup_figure(x1, x2, r["x_mix"], r["y_mix"], classes, r["lam"], r["alpha"], int(y1), int(y2),
                                samples=r["draws"])

    controls = {"lam": _float_slider("lambda", lam, 0.0, 1.0, 0.01),
                "alpha": _float_slider("alpha", alpha, 0.1, 2.0, 0.1, ".1f")}
    return Panel(controls, compute, draw, "Mixup, eq. (1): move lambda and alpha")


# ---------------------------------------------------------------------------------------------
# notebook 03: (targeted) FGSM, eq. (2), (3), (5)

def fgsm_example(model, x, y: int, eps: float, target: int | None = None) -> dict:
    """One FGSM step on one image: targeted (eq. 5) when ``target`` is given, else untargeted (eq. 2)."""
    x = _check_image(x, "x")
    y = _class_index(y, "y", None)  # the range is checked against the model's outputs by fgsm
    target = None if target is None else _class_index(target, "target", None)
    dev = model_device(model)
    xb = x.unsqueeze(0).to(dev)
    with eval_mode(model):
        if target is None:
            x_adv = fgsm(model, xb, torch.tensor([int(y)], device=dev), float(eps))
        else:
            x_adv = targeted_fgsm(model, xb, torch.tensor([int(target)], device=dev), float(eps))
    p0, p1 = predict(model, xb)[0].cpu(), predict(model, x_adv)[0].cpu()
    x_adv = x_adv[0].cpu()
    return {"eps": float(eps), "target": target, "x": x, "x_adv": x_adv, "delta": x_adv - x,
            "probs_clean": p0, "probs_adv": p1, "pred_clean": int(p0.argmax()), "pred_adv": int(p1.argmax())}


def fgsm_panel(model, x, y: int, classes: Sequence[str], eps: float = 0.03, target: int | None = None,
               mode: str = "targeted") -> Panel:
    """Slider "eps" (0 to 0.1), a target dropdown and targeted/untargeted: image, perturbation, predictions."""
    import ipywidgets as W
    x = _check_image(x, "x")
    n = len(classes)
    y = _class_index(y, "y", n)
    target = (y + n // 2) % n if target is None else _class_index(target, "target", n)

    def compute(eps: float, target: int, mode: str) -> dict:
        target = _class_index(target, "target", n)
        r = fgsm_example(model, x, y, eps, target if mode == "targeted" else None)
        r["mode"] = mode
        return r

    def draw(r: dict):
        t = r["target"]
        title = (f"targeted FGSM (eq. 5) towards {viz.class_name(classes, t)}" if t is not None
                 else "untargeted FGSM (eq. 2)")
        return viz.fgsm_figure(x, r["x_adv"], r["probs_clean"], r["probs_adv"], classes, r["eps"], int(y), t, title)

    controls = {"eps": _float_slider("eps", eps, 0.0, 0.1, 0.005, ".3f"),
                "target": _dropdown("target", _class_options(classes), target),
                "mode": W.ToggleButtons(options=["targeted", "untargeted"], value=mode, description="attack")}
    return Panel(controls, compute, draw, "FGSM: move eps, pick a target class")


# ---------------------------------------------------------------------------------------------
# notebook 04: TLAT labels (eq. 4) and an M-TLAT couple (eq. 6, Figure 1)

def tlat_label(y: int, target: int, eps: float, num_classes: int) -> torch.Tensor:
    """Eq. (4) for one sample through :func:`mtlat_edu.paper.labels.tlat_labels`."""
    y, target = _class_index(y, "y", num_classes), _class_index(target, "target", num_classes)
    return tlat_labels(one_hot(torch.tensor([y]), num_classes), torch.tensor([target]), float(eps))[0]


def tlat_panel(y: int, classes: Sequence[str], target: int | None = None, eps: float = 0.025,
               eps_max: float = 0.5) -> Panel:
    """Slider "eps" and a target dropdown: the TLAT label ``(1 - eps) * y + eps * y_target``."""
    n = len(classes)
    y = _class_index(y, "y", n)
    target = (y + 1) % n if target is None else _class_index(target, "target", n)

    def compute(eps: float, target: int) -> dict:
        target = _class_index(target, "target", n)
        return {"eps": float(eps), "target": int(target), "y_clean": one_hot(torch.tensor([int(y)]), n)[0],
                "y_adv": tlat_label(y, target, eps, n)}

    def draw(r: dict):
        return viz.tlat_label_figure(r["y_adv"], classes, int(y), r["target"], r["eps"], y_clean=r["y_clean"])

    controls = {"eps": _float_slider("eps", eps, 0.0, eps_max, 0.005, ".3f"),
                "target": _dropdown("target", _class_options(classes), target)}
    return Panel(controls, compute, draw, "TLAT labels, eq. (4)")


def mtlat_couple(model, x3, y3: int, x4, y4: int, target: int, lam: float, eps: float, num_classes: int) -> dict:
    """One M-TLAT couple, Algorithm 1 lines 3-6 with the package's primitives.

    Mixup (eq. 1) of ``x3`` and ``x4``, a targeted FGSM step (eq. 5) on the mix, the TLAT label
    of the mix (eq. 6). Returns every intermediate and the weights of the three sources.
    """
    target = _class_index(target, "target", num_classes)
    x_mix, y_mix = mix_couple(x3, y3, x4, y4, lam, num_classes)
    r = fgsm_example(model, x_mix, y3, eps, target)
    y_mtlat = tlat_labels(y_mix[None], torch.tensor([int(target)]), float(eps))[0]
    weights = {"lambda*(1-eps)": lam * (1 - eps), "(1-lambda)*(1-eps)": (1 - lam) * (1 - eps), "eps": eps}
    return {"lam": float(lam), "eps": float(eps), "target": int(target), "x_mix": x_mix, "y_mix": y_mix,
            "x_mtlat": r["x_adv"], "delta": r["delta"], "y_mtlat": y_mtlat, "weights": weights,
            "probs_mix": r["probs_clean"], "probs_mtlat": r["probs_adv"]}


def mtlat_panel(model, x3, y3: int, x4, y4: int, classes: Sequence[str], target: int | None = None,
                lam: float = 0.6, eps: float = 0.025) -> Panel:
    """Sliders "lambda" and "eps" and a target: Figure 1's three sources and their weights."""
    x3, x4 = _check_image(x3, "x3"), _check_image(x4, "x4")
    n = len(classes)
    y3, y4 = _class_index(y3, "y3", n), _class_index(y4, "y4", n)
    if target is None:
        target = next(k for k in range(n) if k not in (y3, y4))
    target = _class_index(target, "target", n)

    def compute(lam: float, eps: float, target: int) -> dict:
        return mtlat_couple(model, x3, y3, x4, y4, target, lam, eps, n)

    def draw(r: dict):
        return viz.mtlat_figure(x3, x4, r["delta"], r["x_mtlat"], r["y_mtlat"], classes, int(y3), int(y4),
                                r["target"], r["lam"], r["eps"])

    controls = {"lam": _float_slider("lambda", lam, 0.0, 1.0, 0.01),
                "eps": _float_slider("eps", eps, 0.0, 0.1, 0.005, ".3f"),
                "target": _dropdown("target", _class_options(classes), target)}
    return Panel(controls, compute, draw, "M-TLAT, eq. (6): three sources of features")


# ---------------------------------------------------------------------------------------------
# notebook 06: common corruptions

def corrupt_images(images: Mapping[str, torch.Tensor], name: str, severity: float, seed: int = 0) -> dict:
    """``{label: corrupted image}`` through :func:`mtlat_edu.robustness.corruptions.corrupt` (same seed for each)."""
    out = {}
    for label, x in images.items():
        x = _check_image(x, label)
        out[label] = corrupt(x.unsqueeze(0), name, float(severity), generator=torch.Generator().manual_seed(seed))[0]
    return out


def corruption_panel(images: Mapping[str, torch.Tensor], name: str = "fog", severity: float = 3.0,
                     seed: int = 0, names: Sequence[str] | None = None) -> Panel:
    """A corruption dropdown and a continuous slider "severity" (1.0 to 5.0, step 0.1)."""
    images = {k: _check_image(v, k) for k, v in images.items()}
    names = tuple(names or ALL)

    def compute(name: str, severity: float) -> dict:
        return {"name": name, "severity": float(severity), "clean": images,
                "corrupted": corrupt_images(images, name, severity, seed)}

    def draw(r: dict):
        pairs = {k: (images[k], r["corrupted"][k]) for k in images}
        return viz.corruption_pair(pairs, f"{CORRUPTIONS.label(r['name'])} ({r['name']}), "
                                          f"severity {r['severity']:.1f}")

    controls = {"name": _dropdown("corruption", CORRUPTIONS.options(names, show_name=True), name),
                "severity": _float_slider("severity", severity, 1.0, 5.0, 0.1, ".1f")}
    return Panel(controls, compute, draw, "Common corruptions: pick one, move the severity")


# ---------------------------------------------------------------------------------------------
# notebook 07: adversarial attacks

def attack_batches(names: Sequence[str], model, x: torch.Tensor, y: torch.Tensor, surrogate=None,
                   seed: int = 0) -> dict[str, dict]:
    """``{name: attack_batch(name, ...)}``, the attacks run by the robustness layer
    (:func:`mtlat_edu.robustness.attacks.run_attacks`: the columns of one attack's run, such as
    ``cw_l2`` and its readings, share that run) and the accuracies counted by
    :func:`mtlat_edu.robustness.measure.accuracy`. Each run draws its random start from a generator
    seeded by ``seed``, so a name gives what it gives alone."""
    dev = model_device(model)
    x, y = x.to(dev), y.to(dev)
    clean_pred, clean_acc = predict(model, x).argmax(1).cpu(), accuracy(model, x, y)
    families: dict[str, list[str]] = {}
    for name in names:
        families.setdefault(family(name), []).append(name)
    advs = {}
    for group in families.values():
        advs.update(run_attacks(group, model, x, y, surrogate, torch.Generator(device=dev).manual_seed(seed)))
    out = {}
    for name in names:
        x_adv, delta = advs[name], advs[name] - x
        out[name] = {"name": name, "x": x.cpu(), "x_adv": x_adv.cpu(), "delta": delta.cpu(),
                     "pred_clean": clean_pred, "pred_adv": predict(model, x_adv).argmax(1).cpu(),
                     "correct_clean": clean_acc, "correct_adv": accuracy(model, x_adv, y),
                     "linf": delta.flatten(1).abs().max(1).values.cpu(), "l2": delta.flatten(1).norm(dim=1).cpu()}
    return out


def attack_batch(name: str, model, x: torch.Tensor, y: torch.Tensor, surrogate=None, seed: int = 0) -> dict:
    """Adversarial images of ``name`` (:func:`mtlat_edu.robustness.attacks.run_attack`) and the model's
    predictions and accuracies (:func:`attack_batches` for one attack)."""
    return attack_batches([name], model, x, y, surrogate, seed)[name]


def attack_panel(models: Mapping[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor, classes: Sequence[str],
                 surrogate=None, name: str = "pgd", model: str | None = None, seed: int = 0) -> Panel:
    """An attack dropdown and a model dropdown: adversarial images, perturbations and predictions."""

    def compute(name: str, model: str) -> dict:
        r = attack_batch(name, models[model], x, y, surrogate, seed)
        r["model"] = model
        return r

    def draw(r: dict):
        preds = [viz.class_name(classes, int(p)) for p in r["pred_adv"]]
        clean = [viz.class_name(classes, int(p)) for p in r["pred_clean"]]
        label = ATTACKS.label(r["name"])
        return viz.attack_examples(r["x"], {label: r["x_adv"]}, {label: preds}, n=len(r["x"]),
                                   clean_predictions=clean)

    controls = {"name": _dropdown("attack", ATTACKS.options(), name),
                "model": _dropdown("model", list(models), model or next(iter(models)))}
    return Panel(controls, compute, draw, "Adversarial attacks: pick an attack and a model")


# ---------------------------------------------------------------------------------------------
# notebook 10: beyond the paper, mtlat_pgd's k steps and manifold_mtlat's mixing layer (docs/future.md)

def pgd_steps_example(model, x, target: int, eps: float, steps: int, step_factor: float = PGD_STEP_FACTOR,
                      max_steps: int = 10) -> dict:
    """Targeted PGD (line 5 of ``mtlat_pgd``, :func:`mtlat_edu.paper.adversarial.targeted_pgd`) on one image:
    the image after ``steps`` steps, and the model's probability of ``target`` after k steps for
    every k = 1..max_steps (k = 1 is targeted FGSM, eq. 5), each with the step ``step_factor * eps / k``."""
    x = _check_image(x, "x")
    dev = model_device(model)
    target = _class_index(target, "target", None)  # the range is checked against the model's outputs
    xb, t = x.unsqueeze(0).to(dev), torch.tensor([target], device=dev)
    with eval_mode(model):
        advs = {k: targeted_pgd(model, xb, t, float(eps), steps=k, step_factor=step_factor)
                for k in range(1, max(int(steps), int(max_steps)) + 1)}
    p_target = torch.stack([predict(model, a)[0, int(target)].cpu() for a in advs.values()])
    x_adv = advs[int(steps)][0].cpu()
    return {"eps": float(eps), "steps": int(steps), "target": int(target), "x": x, "x_adv": x_adv, "delta": x_adv - x,
            "probs_clean": predict(model, xb)[0].cpu(), "probs_adv": predict(model, advs[int(steps)])[0].cpu(),
            "ks": list(advs), "p_target": p_target}


def pgd_steps_panel(model, x, y: int, classes: Sequence[str], eps: float = 0.025, steps: int = 3,
                    target: int | None = None, max_steps: int = 10) -> Panel:
    """Sliders "k steps" and "eps" and a target: the targeted PGD image and p(target) against k."""
    import ipywidgets as W
    x = _check_image(x, "x")
    n = len(classes)
    y = _class_index(y, "y", n)
    target = (y + n // 2) % n if target is None else _class_index(target, "target", n)

    def compute(steps: int, eps: float, target: int) -> dict:
        target = _class_index(target, "target", n)
        return pgd_steps_example(model, x, target, eps, steps, max_steps=max_steps)

    def draw(r: dict):
        return viz.pgd_steps_figure(x, r["x_adv"], r["probs_clean"], r["probs_adv"], r["ks"], r["p_target"], classes,
                                    r["eps"], int(y), r["target"], r["steps"])

    controls = {"steps": W.IntSlider(value=steps, min=1, max=max_steps, description="k steps",
                                     continuous_update=False, style={"description_width": "initial"}),
                "eps": _float_slider("eps", eps, 0.0, 0.1, 0.005, ".3f"),
                "target": _dropdown("target", _class_options(classes), target)}
    return Panel(controls, compute, draw, "mtlat_pgd: k steps of targeted PGD instead of one FGSM step")


@torch.no_grad()
def manifold_example(model, x1, x2, layer: int, lam: float, grid: int = 21) -> dict:
    """A couple mixed at ``layer`` (:func:`mtlat_edu.paper.mixup.manifold_forward`, eval mode): the
    model's probabilities at ``lam``, and for every mixing layer its probabilities along a grid
    of lambda in [0, 1] (``curves[l]``: (grid, classes))."""
    x1, x2 = _check_image(x1, "x1"), _check_image(x2, "x2")
    dev = model_device(model)
    a, b = x1.unsqueeze(0).to(dev), x2.unsqueeze(0).to(dev)
    lams = torch.linspace(0, 1, grid, device=dev)
    with eval_mode(model):
        probs = torch.softmax(manifold_forward(model, a, b, torch.tensor([float(lam)], device=dev), int(layer)), 1)
        layers = range(len(getattr(model, "mix_points", ())) + 1)
        curves = {l: torch.softmax(manifold_forward(model, a.expand(grid, -1, -1, -1), b.expand(grid, -1, -1, -1),
                                                    lams, l), 1).cpu() for l in layers}
    return {"layer": int(layer), "lam": float(lam), "probs": probs[0].cpu(), "lams": lams.cpu(), "curves": curves}


def manifold_panel(model, x1, y1: int, x2, y2: int, classes: Sequence[str], layer: int = 1,
                   lam: float = 0.5) -> Panel:
    """Sliders "mixing layer" and "lambda": the prediction for the couple mixed at that layer, and
    p(class of x1) against lambda for every layer (0 = the input: Mixup, eq. 1)."""
    import ipywidgets as W
    x1, x2 = _check_image(x1, "x1"), _check_image(x2, "x2")
    y1, y2 = _class_index(y1, "y1", len(classes)), _class_index(y2, "y2", len(classes))
    top = len(getattr(model, "mix_points", ()))

    def compute(layer: int, lam: float) -> dict:
        return manifold_example(model, x1, x2, layer, lam)

    def draw(r: dict):
        return viz.manifold_figure(x1, x2, r["probs"], r["lams"], r["curves"], classes, int(y1), int(y2),
                                   r["layer"], r["lam"])

    controls = {"layer": W.IntSlider(value=layer, min=0, max=top, description="mixing layer",
                                     continuous_update=False, style={"description_width": "initial"}),
                "lam": _float_slider("lambda", lam, 0.0, 1.0, 0.01)}
    return Panel(controls, compute, draw, "manifold_mtlat: mix the couple at a hidden layer")
