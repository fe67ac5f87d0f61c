"""Reference solutions of the course's exercises (:mod:`mtlat_edu.course.exercises`), in plain torch.

Each is what ``Exercise.solution()`` prints when a learner asks for it, written the way a learner
would write it (every equation spelled out, comments citing the paper), and each is checked
against the package's own function by tests/test_exercises.py. Notebooks 02-05 use them through
the exercises, never directly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F



def solution_one_hot(y, num_classes):
    out = torch.zeros(len(y), num_classes)
    out[torch.arange(len(y)), y] = 1.0
    return out


def solution_mixup(x, y_soft, lam, perm):
    lam_x = lam.view(-1, 1, 1, 1)            # one lambda per couple, broadcast over C, H, W
    lam_y = lam.view(-1, 1)
    x_mix = lam_x * x + (1 - lam_x) * x[perm]          # eq. (1): lambda on x_i, 1 - lambda on its partner
    y_mix = lam_y * y_soft + (1 - lam_y) * y_soft[perm]  # the same lambda for the labels
    return x_mix, y_mix


def solution_fgsm(model, x, y, eps):
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    x_adv = x + eps.view(-1, 1, 1, 1) * grad.sign()    # eq. (2): *increase* the loss of the true class
    return x_adv.clamp(0, 1).detach()                  # stay a valid image


def solution_targeted_fgsm(model, x, y_target, eps):
    x = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(x), y_target, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    x_adv = x - eps.view(-1, 1, 1, 1) * grad.sign()    # eq. (5): *decrease* the loss of the target
    return x_adv.clamp(0, 1).detach()


def solution_linf(x, x_adv):
    return (x_adv - x).abs().flatten(1).amax(1)         # one number per image: the largest pixel change


def solution_tlat_labels(y_soft, y_target, eps):
    e = eps.view(-1, 1)
    target = torch.zeros_like(y_soft)
    target[torch.arange(len(y_target)), y_target] = 1.0
    return (1 - e) * y_soft + e * target                # eq. (4): the target gets the share eps


def solution_smooth_labels(y, num_classes, eps):
    e = eps.view(-1, 1)
    hot = torch.zeros(len(y), num_classes)
    hot[torch.arange(len(y)), y] = 1.0
    return hot * (1 - e) + (1 - hot) * e / num_classes  # section 5.4: ones -> 1 - eps, zeros -> eps / N


def solution_mtlat_labels(y_i, y_j, lam, y_target, eps, num_classes):
    def hot(y):
        return torch.eye(num_classes)[y]
    lam, e = lam.view(-1, 1), eps.view(-1, 1)
    y_mix = lam * hot(y_i) + (1 - lam) * hot(y_j)       # eq. (1)
    return (1 - e) * y_mix + e * hot(y_target)          # eq. (6)


def solution_algorithm1_step(model, x, y, lam1, perm1, lam2, perm2, eps, y_target, num_classes):
    h = len(x) // 2
    hot = torch.eye(num_classes)[y]
    def mix(xs, ys, lam, perm):
        lx = lam.view(-1, 1, 1, 1)
        return lx * xs + (1 - lx) * xs[perm], lam.view(-1, 1) * ys + (1 - lam.view(-1, 1)) * ys[perm]
    x_mix1, y_mix1 = mix(x[:h], hot[:h], lam1, perm1)   # lines 1-2: the clean couples
    x_mix2, y_mix2 = mix(x[h:], hot[h:], lam2, perm2)   # lines 3-4: the couples to perturb
    x2 = x_mix2.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(model(x2), y_target, reduction="sum"), x2)
    x_mtlat = (x_mix2 - eps.view(-1, 1, 1, 1) * grad.sign()).clamp(0, 1).detach()        # line 5, eq. (6)
    y_mtlat = (1 - eps.view(-1, 1)) * y_mix2 + eps.view(-1, 1) * torch.eye(num_classes)[y_target]  # line 6
    def loss(x_, y_):
        return -(y_ * F.log_softmax(model(x_), dim=1)).sum(1).mean()
    return loss(x_mix1, y_mix1) + loss(x_mtlat, y_mtlat)  # lines 7-8: loss_1 + loss_2


def solution_soft_cross_entropy(logits, y_soft):
    return -(y_soft * F.log_softmax(logits, dim=1)).sum(dim=1).mean()  # -sum_k y_k log p_k, mean over the batch


def solution_lr_factor(steps, total_steps):
    drops = [round(m / 90 * total_steps) for m in (30, 60, 80)]  # section 4.2: /10 after epochs 30, 60, 80 of 90
    return torch.tensor([0.1 ** sum(s >= d for d in drops) for s in steps])
