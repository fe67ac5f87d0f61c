"""Channels-last (NHWC) against NCHW convolution weights: the training step, the input gradient of
an attack and the evaluation forward pass, side by side in one process.

    python -m benchmarks.memory_format [--model small_cnn] [--methods standard mtlat]
                                       [--batch-size 128] [--eval-batch 500] [--rounds 5]
                                       [--steps 4] [--threads 1]

Run from the repository root (issue 23; the output is committed as
``results/cpu/bench_memory_format.txt``). :func:`mtlat_edu.models.build_model` returns every model in
channels-last order; this command builds the same weights twice, once converted back to NCHW
(``contiguous_format``), and times, in interleaved rounds (the two orders alternate, the median of
the rounds is reported):

* ``step <method>``: one full optimisation step of the method (loss of the paper's method, backward,
  Adam), as ``mtlat-edu bench-step`` times it;
* ``input gradient``: the gradient of the loss with respect to a batch of images (one step of PGD);
* ``eval forward``: the forward pass of ``--eval-batch`` images in inference mode.

It also reports the largest difference between the two orders' logits on one batch (same weights): the kernels
differ (the order of the sums), so the numbers agree to float32 rounding, not bit for bit.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def _orders(model_name: str, num_classes: int = 10):
    from mtlat_edu.models import build_model
    torch.manual_seed(0)
    cl = build_model(model_name, num_classes)
    nchw = build_model(model_name, num_classes)
    nchw.load_state_dict(cl.state_dict())
    return {"channels_last": cl, "nchw": nchw.to(memory_format=torch.contiguous_format)}


def measure(model_name="small_cnn", methods=("standard", "mtlat"), batch_size=128, eval_batch=500,
            rounds=5, steps=4, threads=1) -> tuple[dict[str, dict[str, float]], float]:
    """Median seconds of each task for each order, and the largest logit difference between orders."""
    from mtlat_edu.paper.adversarial import input_gradient
    from mtlat_edu.paper.methods import METHODS, MethodConfig

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch_size,), generator=g)
    xe = torch.rand(eval_batch, 3, 32, 32, generator=g)
    models = _orders(model_name)
    with torch.inference_mode():  # before any step: the two orders hold the same weights here
        a, b = (models[o].eval()(xe[:batch_size]) for o in ("channels_last", "nchw"))
    diff = float((a - b).abs().max())
    cfg = MethodConfig()
    tasks = {}
    for order, model in models.items():
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for m in methods:
            fn = METHODS.lookup(m)

            def step(model=model, opt=opt, fn=fn):
                model.train()
                opt.zero_grad(set_to_none=True)
                fn(model, x, y, cfg, torch.Generator().manual_seed(1)).backward()
                opt.step()
            tasks[(f"step {m}", order)] = step

        def grad(model=model):
            model.eval()
            input_gradient(model, x, y)
        tasks[("input gradient", order)] = grad

        def forward(model=model):
            model.eval()
            with torch.inference_mode():
                model(xe)
        tasks[("eval forward", order)] = forward
    for fn in tasks.values():  # warm-up: oneDNN builds its kernels on the first call
        fn()
    times = {k: [] for k in tasks}
    for _ in range(rounds):
        for k, fn in tasks.items():
            t = time.perf_counter()
            for _ in range(steps):
                fn()
            times[k].append((time.perf_counter() - t) / steps)
    out: dict[str, dict[str, float]] = {}
    for (task, order), ts in times.items():
        out.setdefault(task, {})[order] = statistics.median(ts)
    return out, diff


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="small_cnn")
    ap.add_argument("--methods", nargs="+", default=["standard", "mtlat"])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--eval-batch", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    res, diff = measure(a.model, a.methods, a.batch_size, a.eval_batch, a.rounds, a.steps, a.threads)
    print(f"model {a.model}, batch {a.batch_size} (eval {a.eval_batch}), 32 px, {a.threads} thread(s), "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"median of {a.rounds} interleaved rounds of {a.steps}")
    print(f"{'task':<18}{'nchw s':>10}{'channels_last s':>17}{'speed-up':>10}")
    for task, r in res.items():
        print(f"{task:<18}{r['nchw']:>10.4f}{r['channels_last']:>17.4f}{r['nchw'] / r['channels_last']:>9.2f}x")
    print(f"largest logit difference between the two orders: {diff:.2e}")


if __name__ == "__main__":
    main()
