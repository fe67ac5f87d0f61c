"""The course: what the notebooks call (``from mtlat_edu import course``; ``course.setup(...)``).

* :mod:`.session`   :func:`setup` and the :class:`Course` object (data, runs, benchmark, saving)
* :mod:`.analysis`  one-notebook experiments, tables and the section 5 analyses
* :mod:`.widgets`   the ipywidgets panels (sliders for lambda, eps, severity, ...)
* :mod:`.viz`       the figures (matplotlib / seaborn)
* :mod:`.runner`    the papermill runner of ``mtlat-edu reproduce``
"""
from mtlat_edu.course.analysis import (PAPER_TABLE3, accuracy_by_severity, accuracy_table, complementarity,
                                       complementarity_summary, data_summary, fgsm_sweep, load_claims, photo,
                                       print_claims, profiles_table)
from mtlat_edu.course.session import Course, device_description, setup

__all__ = ["Course", "PAPER_TABLE3", "accuracy_by_severity", "accuracy_table", "complementarity",
           "complementarity_summary", "data_summary", "device_description", "fgsm_sweep", "load_claims", "photo", "print_claims",
           "profiles_table", "setup"]
