"""Developer benchmarks of mtlat_edu (run from the repository root as ``python -m benchmarks.<name>``).

They may import the package and each other, never ``tests/``; the tests may import from here
(e.g. the per-image ImageNet-C reference, :mod:`benchmarks.imagenet_c_reference`).
"""
