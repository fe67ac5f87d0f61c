"""Layer 0: what every other part of the package stands on; imports nothing of the package.

* :mod:`.checks`       validation at the entry points (the messages name the argument and the allowed values)
* :mod:`.registry`     named registries (name, display label, kind) and the one unknown-name error
* :mod:`.io`           atomic writes, ``weights_only`` loads, locked run folders
* :mod:`.modes`        :func:`~mtlat_edu.core.modes.eval_mode`, the one way a model is evaluated
* :mod:`.distributed`  torchrun / DDP: ranks, shards, all-reduce, the replica wrapper
"""
