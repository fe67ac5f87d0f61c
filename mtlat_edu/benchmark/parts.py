"""What the benchmark measures: the columns of Tables 1 and 2, in order, and the ``parts`` selection.

The columns are taken from the registries, never re-listed here: the 15 ImageNet-C corruptions
(:data:`mtlat_edu.robustness.corruptions.IMAGENET_C`), the paper's four extra corruptions
(:data:`mtlat_edu.robustness.corruptions.EXTRA`) and the attacks (:data:`mtlat_edu.robustness.attacks.ATTACKS`:
the paper's five, and CW under its two other success rules, measured from the same CW run).

A *part* is either a group name (``all``, ``clean``, ``corruptions``, ``imagenet_c``, ``extra``,
``attacks``, ``white_box``, ``black_box``) or the name of one corruption or attack. The clean
accuracy is always measured: every robustness score divides by it (eq. 7).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from mtlat_edu.core.registry import UnknownNameError
from mtlat_edu.robustness import attacks as A
from mtlat_edu.robustness import corruptions as C
from mtlat_edu.robustness.measure import CLEAN
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)

# the ``kind`` column of the long results
KIND_CLEAN, KIND_IMAGENET_C, KIND_EXTRA, KIND_WHITE_BOX, KIND_BLACK_BOX = (
    "clean", "imagenet_c", "extra", "white_box", "black_box")


def imagenet_c_names() -> tuple[str, ...]:
    return tuple(C.IMAGENET_C)


def extra_names() -> tuple[str, ...]:
    return tuple(C.EXTRA)


def corruption_names() -> tuple[str, ...]:
    return imagenet_c_names() + extra_names()


def attack_names() -> tuple[str, ...]:
    """Every attack column: the paper's five and the readings of CW under its other success rules."""
    return tuple(A.ATTACKS)


def paper_attack_names() -> tuple[str, ...]:
    """The paper's five attack columns (Table 1c), without the readings: what the claims judge."""
    return A.paper_attacks()


def attack_readings() -> tuple[str, ...]:
    """The readings: attack columns counting another attack's run under another success rule
    (``cw_l2_kappa50``, ``cw_l2_within0.5``; docs/attacks.md)."""
    return tuple(n for n in A.ATTACKS if A.ATTACKS[n].reading_of is not None)


def is_black_box(attack: str) -> bool:
    return bool(A.ATTACKS[attack].black_box)


def perturbation_names() -> tuple[str, ...]:
    """Every perturbation column in table order: ImageNet-C, extra corruptions, attacks."""
    return corruption_names() + attack_names()


def kind_of(perturbation: str) -> str:
    """The ``kind`` of a result row: clean, imagenet_c, extra, white_box or black_box."""
    if perturbation == CLEAN:
        return KIND_CLEAN
    if perturbation in C.IMAGENET_C:
        return KIND_IMAGENET_C
    if perturbation in C.EXTRA:
        return KIND_EXTRA
    if perturbation in A.ATTACKS:
        return KIND_BLACK_BOX if is_black_box(perturbation) else KIND_WHITE_BOX
    raise UnknownNameError("perturbation", perturbation, (CLEAN,) + perturbation_names())


def display_name(column: str) -> str:
    """The short column title of the paper's tables (``Gauss``, ``Obstru``, ``pgd e=0.04``...)."""
    if column == CLEAN:
        return "Clean"
    if column in C.DISPLAY:
        return C.DISPLAY[column]
    if column in A.DISPLAY:
        return A.DISPLAY[column]
    return column


def groups() -> dict[str, tuple[str, ...]]:
    """Group name -> the perturbations it selects (``clean`` selects none: clean accuracy only)."""
    return {
        "all": perturbation_names(),
        "clean": (),
        "corruptions": corruption_names(),
        "imagenet_c": imagenet_c_names(),
        "extra": extra_names(),
        "attacks": attack_names(),
        "white_box": tuple(a for a in attack_names() if not is_black_box(a)),
        "black_box": tuple(a for a in attack_names() if is_black_box(a)),
    }


def valid_parts() -> tuple[str, ...]:
    return tuple(groups()) + perturbation_names()


@dataclass
class Selection:
    """The resolved ``parts``: corruptions and attacks in table order, and what was skipped."""

    corruptions: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ()
    skipped: dict[str, str] = field(default_factory=dict)  # perturbation -> reason

    @property
    def perturbations(self) -> tuple[str, ...]:
        return self.corruptions + self.attacks

    @property
    def black_box(self) -> tuple[str, ...]:
        return tuple(a for a in self.attacks if is_black_box(a))

    @property
    def white_box(self) -> tuple[str, ...]:
        return tuple(a for a in self.attacks if not is_black_box(a))


def resolve_parts(parts=None, have_surrogate: bool = True) -> Selection:
    """Turn ``parts`` (None = all; a string or a list of group/perturbation names) into a :class:`Selection`.

    Black-box attacks need the surrogate. Without one, black-box attacks selected through a group
    (``all``, ``attacks``, ``black_box``) are skipped with a warning, and a black-box attack named
    explicitly (``mi_fgsm_0.04``) is an error.
    """
    if parts is None:
        parts = ["all"]
    elif isinstance(parts, str):
        parts = [parts]
    parts = list(parts)
    if not parts:
        raise ValueError(f"parts: empty; valid names: {', '.join(valid_parts())}")
    table = groups()
    chosen: set[str] = set()
    explicit: set[str] = set()
    for p in parts:
        if p in table:
            chosen.update(table[p])
        elif p in perturbation_names():
            chosen.add(p)
            explicit.add(p)
        else:
            raise UnknownNameError("parts", p, perturbation_names(), groups=table)
    sel = Selection(corruptions=tuple(n for n in corruption_names() if n in chosen),
                    attacks=tuple(n for n in attack_names() if n in chosen))
    if not have_surrogate and sel.black_box:
        named = sorted(set(sel.black_box) & explicit)
        if named:
            raise ValueError(f"surrogate: the black-box attack(s) {', '.join(named)} are crafted on a surrogate "
                             "model (the paper: a VGG trained on the same training set); pass --surrogate PATH "
                             "(surrogate=...) or leave them out of --parts")
        for a in sel.black_box:
            sel.skipped[a] = "no surrogate model given (black-box attacks are crafted on a surrogate)"
        warnings.warn(f"surrogate: no surrogate model given, skipping the black-box attacks "
                      f"{', '.join(sel.black_box)}", stacklevel=2)
        sel.attacks = sel.white_box
    return sel
