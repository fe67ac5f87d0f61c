"""Named registries: the training methods, models, datasets, corruptions, attacks... of the package.

A :class:`Registry` is a mapping ``name -> object`` in registration order (so ``name in REG``,
``REG[name]``, ``list(REG)``, ``REG.items()`` and ``REG[name] = obj`` work as for a dict), whose entries also
carry a display ``label`` (the paper's column or row title: ``Gauss``, ``pgd e=0.04``, ``M-TLAT``),
a ``kind`` (a corruption's family, white-box or black-box, clean or adversarial), an optional
one-line ``description`` and optional ``facts``, the other per-name facts (a model's mixing points,
the tables a method has a row in, ...). Tables, command-line choices and widget dropdowns read
them from here, so nothing is listed twice: a module-level table keyed by the same names (a
``dict`` or a tuple of names beside the registry) is a derived view, if it exists at all.

Filling: one :meth:`Registry.add` call per entry, at module level, right below what it registers
(``@REG.register(...)`` is the same call as a decorator, for a function defined there). Where the
name, label or kind follow from the value (an attack's spec, an exercise, a paper row from its table
and method), a small module helper ``_add(...)`` makes that one ``add`` call, once per entry.

An unknown name raises :class:`UnknownNameError` (a ``ValueError``, and a ``KeyError`` so mapping
idioms keep working), with the one message format of the package::

    method: unknown name 'mtalt'; valid names: standard, mixup, ..., mtlat

>>> SHAPES = Registry("shape", kinds=("round", "angular"))
>>> @SHAPES.register("disk", label="Disk", kind="round")
... def disk(r): ...
>>> SHAPES.lookup("disk") is disk, SHAPES.label("disk"), SHAPES.names(kind="round")
(True, 'Disk', ('disk',))
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable

_NO_FACTS: Mapping[str, Any] = MappingProxyType({})
_MISSING = object()


class UnknownNameError(ValueError, KeyError):
    """A name that is not one of the valid ones: the message names the argument and lists them.

    ``groups`` (optional): names that select several entries at once, listed before the names
    (``parts: unknown name 'fogg'; valid groups: all, ...; valid names: gaussian_noise, ...``).
    """

    def __init__(self, arg: str, name, valid: Iterable, groups: Iterable = ()):
        self.arg, self.name, self.valid, self.groups = arg, name, tuple(valid), tuple(groups)
        group_text = f"valid groups: {', '.join(map(str, self.groups))}; " if self.groups else ""
        super().__init__(f"{arg}: unknown name {name!r}; {group_text}valid names: {', '.join(map(str, self.valid))}")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry:
    """One registered object with its name, display label, kind, description and other facts."""

    name: str
    value: Any
    label: str
    kind: str | None = None
    description: str = ""
    facts: Mapping[str, Any] = field(default_factory=lambda: _NO_FACTS)


class Registry(MutableMapping):
    """``name -> object`` in registration order; each entry carries a label and a kind.

    ``arg``: the argument that takes these names, as error messages name it (``"method"``).
    ``kinds``: the allowed kinds, in their display order (None: any kind). An entry may have no
    kind (None), e.g. one added by ``REG[name] = obj``.
    """

    def __init__(self, arg: str, kinds: Iterable[str] | None = None):
        self.arg = arg
        self.kinds_allowed = None if kinds is None else tuple(kinds)
        self._entries: dict[str, Entry] = {}

    # -- filling --------------------------------------------------------------------------
    def add(self, name: str, value, *, label: str | None = None, kind: str | None = None,
            description: str = "", facts: Mapping[str, Any] | None = None):
        """Register ``value`` under ``name`` (the label defaults to the name); returns ``value``.
        ``facts``: other per-name facts, read back by :meth:`fact` and ``names(**facts)``.
        A name registered twice, or a kind outside ``kinds``, is refused."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.arg}: a registered name must be a non-empty string, got {name!r}")
        if name in self._entries:
            raise ValueError(f"{self.arg}: {name!r} is registered already")
        if kind is not None and self.kinds_allowed is not None and kind not in self.kinds_allowed:
            raise ValueError(f"kind: {name!r} has kind {kind!r}; valid kinds: {', '.join(self.kinds_allowed)}")
        self._entries[name] = Entry(name, value, name if label is None else label, kind, description,
                                    MappingProxyType(dict(facts)) if facts else _NO_FACTS)
        return value

    def register(self, name: str, *, label: str | None = None, kind: str | None = None,
                 description: str = "", facts: Mapping[str, Any] | None = None) -> Callable:
        """Decorator form of :meth:`add`: ``@REG.register("name", label=..., kind=...)``."""
        def deco(value):
            return self.add(name, value, label=label, kind=kind, description=description, facts=facts)
        return deco

    # -- the mapping ----------------------------------------------------------------------
    def __getitem__(self, name: str):
        return self.entry(name).value

    def __setitem__(self, name: str, value) -> None:
        """Dict-style: a new name gets its name as label, no kind and no facts; a registered one keeps
        its label, kind, description and facts and gets the new object (tests plug in models this way)."""
        if name in self:
            e = self._entries[name]
            self._entries[name] = Entry(name, value, e.label, e.kind, e.description, e.facts)
        else:
            self.add(name, value)

    def __delitem__(self, name: str) -> None:
        del self._entries[self.check(name)]

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.arg!r}: {', '.join(self._entries)})"

    # -- lookups --------------------------------------------------------------------------
    def check(self, name, arg: str | None = None) -> str:
        """``name`` if registered, else :class:`UnknownNameError` naming ``arg`` (default: the registry's)."""
        if name not in self:
            raise UnknownNameError(arg or self.arg, name, self._entries)
        return name

    def entry(self, name, arg: str | None = None) -> Entry:
        return self._entries[self.check(name, arg)]

    def lookup(self, name, arg: str | None = None):
        """The object registered as ``name``, with the error naming ``arg`` when it is unknown."""
        return self.entry(name, arg).value

    def label(self, name: str) -> str:
        return self.entry(name).label

    def kind(self, name: str) -> str | None:
        return self.entry(name).kind

    def fact(self, name: str, key: str, default=_MISSING):
        """The fact ``key`` of entry ``name`` (``default`` when the entry has none; without a
        default, a missing fact is a ``KeyError`` naming the entry and the key)."""
        facts = self.entry(name).facts
        if key in facts:
            return facts[key]
        if default is _MISSING:
            raise KeyError(f"{self.arg}: {name!r} has no fact {key!r}")
        return default

    def names(self, kind: str | Iterable[str] | None = None, **facts) -> tuple[str, ...]:
        """Every name in registration order, or those of ``kind``: one kind, or several (kind by
        kind in the order given, each in registration order); ``facts`` (``table3=True``) keeps the
        entries holding each of those facts with that value."""
        if kind is None:
            names = tuple(self._entries)
        else:
            wanted = (kind,) if isinstance(kind, str) else tuple(kind)
            for k in wanted:
                if self.kinds_allowed is not None and k not in self.kinds_allowed:
                    raise UnknownNameError("kind", k, self.kinds_allowed)
            names = tuple(n for k in wanted for n, e in self._entries.items() if e.kind == k)
        return tuple(n for n in names
                     if all(self._entries[n].facts.get(key, _MISSING) == v for key, v in facts.items()))

    def entries(self, kind: str | Iterable[str] | None = None) -> tuple[Entry, ...]:
        """The entries (name, object, label, kind, description, facts), as :meth:`names` orders them."""
        return tuple(self._entries[n] for n in self.names(kind))

    def labels(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """``{name: label}`` in registration order (or for ``names``, in their order)."""
        return {n: self.label(n) for n in (self._entries if names is None else names)}

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds in use, in the declared order (else in order of first registration)."""
        used = [e.kind for e in self._entries.values() if e.kind is not None]
        if self.kinds_allowed is not None:
            return tuple(k for k in self.kinds_allowed if k in used)
        return tuple(dict.fromkeys(used))

    def options(self, names: Iterable[str] | None = None, show_name: bool = False) -> list[tuple[str, str]]:
        """``[(label, name)]`` for a dropdown (ipywidgets takes such pairs): the label shows, the
        name is the value. ``show_name``: ``"Gauss (gaussian_noise)"`` instead of ``"Gauss"``."""
        out = []
        for n, label in self.labels(names).items():
            out.append((f"{label} ({n})" if show_name and label != n else label, n))
        return out
