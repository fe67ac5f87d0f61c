"""Cost of a training step per method, measured side by side in one run.

``mtlat-edu bench-step`` times full optimisation steps
(loss, backward, Adam update) of each method on the same model, batch and device, interleaving
the methods in rounds so that machine noise hits them alike, and prints the median step time,
the images per second and the ratio to ``standard``. Every method puts the same number of
images (the batch size) in its loss; the adversarial ones also run one forward and
backward-to-input pass over half of them, so the ideal M-TLAT / standard ratio is about 1.5x.
"""
from __future__ import annotations

import statistics
import time

import torch

from mtlat_edu.core.checks import check_choice, check_int, resolve_device
from mtlat_edu.data import load_dataset
from mtlat_edu.paper.methods import METHODS, MethodConfig, trusted_method
from mtlat_edu.models import MODELS, build_model


def time_steps(methods=("standard", "mtlat"), model_name="resnet18", batch_size=128, image_size=32,
               rounds=5, steps_per_round=3, device=None, amp=True, channels_last=True,
               compile=False, seed=0) -> dict[str, dict]:
    """Median seconds per step and images per second for each method (interleaved rounds)."""
    for name, value in (("batch_size", batch_size), ("image_size", image_size), ("rounds", rounds),
                        ("steps_per_round", steps_per_round)):
        check_int(value, name)
    for m in methods:
        check_choice(m, "methods", METHODS)
    check_choice(model_name, "model", MODELS)
    device = resolve_device(device)
    torch.manual_seed(seed)
    model = build_model(model_name, 10).to(device)
    # the weights keep build_model's channels-last order, as in fit; the batch is channels-last on CUDA
    # unless channels_last=False (then NCHW batches against channels-last weights, not a full NCHW path)
    mem = torch.channels_last if (device.type == "cuda" and channels_last) else torch.contiguous_format
    run_model = torch.compile(model) if (compile and device.type == "cuda") else model
    opt = torch.optim.Adam(model.parameters(), lr=0.002, weight_decay=1e-4)
    data = load_dataset("synthetic", "train", image_size=image_size).subset(batch_size)
    x = data.float_images(device=device).contiguous(memory_format=mem)
    y = data.labels.to(device)
    g = torch.Generator(device=device).manual_seed(seed)
    cfg = MethodConfig(num_classes=10)
    use_amp = amp and device.type == "cuda"

    def step(fn):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = fn(run_model, x, y, cfg, g)  # inputs checked once, as in fit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fns = {m: trusted_method(m) for m in methods}
    model.train()
    for fn in fns.values():          # warm-up (and compilation)
        for _ in range(2):
            step(fn)
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for m, fn in fns.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(steps_per_round):
                step(fn)
            sync()
            times[m].append((time.perf_counter() - t0) / steps_per_round)
    base = statistics.median(times[methods[0]])
    out = {}
    for m in methods:
        med = statistics.median(times[m])
        out[m] = {"seconds_per_step": med, "images_per_second": batch_size / med, "ratio": med / base}
    return out


def step_table(res: dict, model_name: str, batch_size: int, image_size: int, device=None) -> str:
    """The result of :func:`time_steps` as the text table ``mtlat-edu bench-step`` prints (the
    device, torch version and settings in its first line, so a saved copy says what it measured)."""
    dev = resolve_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    lines = [f"model {model_name}, batch {batch_size}, {image_size} px, device {name}, torch {torch.__version__}",
             f"{'method':<12} {'s/step':>9} {'img/s':>9} {'ratio':>7}"]
    for m, r in res.items():
        lines.append(f"{m:<12} {r['seconds_per_step']:>9.4f} {r['images_per_second']:>9.1f} {r['ratio']:>6.2f}x")
    return "\n".join(lines)
