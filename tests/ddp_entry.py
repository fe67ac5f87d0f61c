"""A torchrun entry point for tests/test_distributed.py: registers ``no_bn_cnn`` (a CNN without
batch norm, whose gradient is a plain mean over the images) and runs the ``mtlat-edu`` command."""
import sys

import torch
from torch import nn

from mtlat_edu import models


class NoBNCNN(nn.Module):
    """Two strided convolutions and a linear head; no batch norm, so DDP with B/N images per rank
    computes exactly the gradient one process computes on B images."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


if __name__ == "__main__":  # registered in the torchrun workers only: importing NoBNCNN changes nothing
    from mtlat_edu.cli import main
    models.MODELS.setdefault("no_bn_cnn", NoBNCNN)
    sys.exit(main())
