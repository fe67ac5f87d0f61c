"""The perturbations of the benchmark (section 4.1) and how accuracy under them is measured.

* :mod:`.corruptions`  the 19 common corruptions (15 of ImageNet-C and the paper's four), batched
* :mod:`.attacks`      PGD, PGD_LL, CW_2 (white-box) and MI-FGSM at two budgets (black-box)
* :mod:`.measure`      the one accuracy count: clean, under a corruption or an attack, one benchmark cell

May import :mod:`mtlat_edu.paper` (the attacks share its input gradient), never the layers above.
"""
