"""The model's train/eval mode: :func:`eval_mode`, the one way the package evaluates a model.

Every place that runs a model for a prediction rather than a training step (the evaluation attacks
of section 4.1, the accuracy counts of :mod:`mtlat_edu.robustness.measure`, the course's sweeps and
widgets) enters this context, so batch norm uses its running statistics and the caller's modes
come back afterwards, also when the block raises. It lives in ``core`` because it needs nothing
but torch and both the attacks and the measuring code, one above the other, use it.
"""
from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Run a block with ``model`` in eval mode; afterwards restore every submodule's own mode.

    Each submodule's ``training`` flag is restored (not just the top one), so a model with a frozen,
    eval-mode part keeps it that way, and the modes are restored when the block raises. The
    gradient mode is left alone: callers that need gradients (the attacks) or not (the accuracy
    counts) say so themselves.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
