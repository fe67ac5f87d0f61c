"""The paper's algorithms (Laugros et al., ECCV 2020, sections 3-4): tensors in, tensors out.

* :mod:`.mixup`        eq. (1): Beta(alpha, alpha) couples; Manifold Mixup at a hidden layer
* :mod:`.labels`       eq. (4) TLAT labels, the label smoothing of section 5.4, the soft cross-entropy
* :mod:`.adversarial`  the training attacks: FGSM (eq. 2), targeted FGSM (eq. 5), targets, the input gradient
* :mod:`.methods`      the training losses of Tables 1-3 (Algorithm 1 batched) and the two beyond the paper

Imports only :mod:`mtlat_edu.core` and :mod:`mtlat_edu.models` (docs/design.md, tests/test_layers.py).
"""
