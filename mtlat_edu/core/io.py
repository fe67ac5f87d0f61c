"""Files: atomic writes, safe loading and run-folder locks (docs/design.md, "Run folders" and "Loading").

* Atomic writes: a result file is either the old one or the complete new one, never half-written.
  The temporary file (``.<name>.<pid>.<random>.tmp`` beside the target) gets the user's umask
  before it replaces the target; :func:`clean_tmp` removes those left by killed writers.
* Safe loading: :func:`load_torch` reads with ``torch.load(..., weights_only=True)`` only (tensors
  and plain types; a crafted pickle is refused, never run) and turns every failure (0 bytes,
  truncated, garbage, foreign objects) into a :class:`CorruptFileError` naming the file and the
  remedy; :func:`read_json` does the same for JSON.
* :func:`folder_lock`: one writer per folder; a second one fails at once, a lock left by a killed
  process is taken over.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

try:
    import fcntl
except ImportError:  # Windows: the lock falls back to a pid file
    fcntl = None

LOCK_NAME = ".lock"


class CorruptFileError(ValueError):
    """A file the package reads back is not what it should be; the message names it and the remedy."""


class CorruptJSONError(CorruptFileError, json.JSONDecodeError):
    """Garbage JSON: a :class:`CorruptFileError` that is also the ``JSONDecodeError`` callers may catch."""

    def __init__(self, message: str, exc: json.JSONDecodeError):
        json.JSONDecodeError.__init__(self, exc.msg, exc.doc, exc.pos)
        self.args = (message,)

    def __str__(self) -> str:
        return self.args[0]


class FolderBusyError(RuntimeError):
    """Another live process holds the folder's lock."""


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic(path, write: Callable[[str], None]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; honour the umask like open() does
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_tmp(folder, every: bool = False, min_age_s: float = 86400.0) -> list[Path]:
    """Remove the temporary files of killed atomic writes in ``folder``: those whose writer pid is
    no longer alive (any age), and those without a pid older than ``min_age_s``; with ``every``
    (the caller holds the folder's lock) all of them. Returns the removed paths."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(".*.tmp"):
        pid = p.name[:-4].rsplit(".", 2)[-2] if p.name.count(".") >= 3 else ""
        try:
            orphan = every or (not _alive(int(pid)) if pid.isdigit()
                               else time.time() - p.stat().st_mtime > min_age_s)
            if orphan:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:  # its writer finished meanwhile
            pass
    return removed


def write_text(path, text: str) -> Path:
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return _atomic(path, w)


def write_json(path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def json_ready(obj):
    """``obj`` as strict JSON can hold it: NaN and inf -> None, tuples -> lists, keys -> str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj


def read_json(path, default=None, remedy: str = "delete it to rebuild it"):
    """The JSON in ``path`` (``default`` when it does not exist); garbage raises :class:`CorruptFileError`."""
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        err = exc if isinstance(exc, json.JSONDecodeError) else json.JSONDecodeError("not UTF-8 text", "", 0)
        raise CorruptJSONError(f"{path}: not valid JSON ({err}); {remedy}", err) from exc


def save_torch(path, obj: Any) -> Path:
    return _atomic(path, lambda tmp: torch.save(obj, tmp))


def load_torch(path, what: str = "torch file", remedy: str = "delete it", map_location=None,
               keys: tuple = ()) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain types only, never code.

    Any failure (empty, truncated or garbage file, a pickle of other objects) and a dict missing
    one of ``keys`` raise :class:`CorruptFileError` naming ``path``, what it should be and ``remedy``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith(
            ("Weights only load failed", "Please file an issue", "Check the documentation"))]
        foreign = next((line for line in lines if "global" in line.lower()), None)
        if foreign:  # the weights-only unpickler refused to import an object: nothing was run
            raise CorruptFileError(f"{path}: refused: not a valid {what}, it holds Python objects other than "
                                   f"tensors and plain data (nothing in it was run; {foreign[:200]}); {remedy}") from exc
        raise CorruptFileError(f"{path}: not a valid {what}: unreadable ({(lines or ['not a pickle'])[0][:200]}); "
                               f"{remedy}") from exc
    except Exception as exc:  # EOFError (0 bytes), RuntimeError (zip reader), ...
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        kind = "an empty file" if path.stat().st_size == 0 else f"unreadable ({type(exc).__name__}: {first})"
        raise CorruptFileError(f"{path}: not a valid {what}: {kind}; {remedy}") from exc
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        plain = isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())
        got = "a plain state_dict (weights only, no run description)" if plain else \
            f"a {type(obj).__name__}" + (f" with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict) else "")
        raise CorruptFileError(f"{path}: not a valid {what}: missing {', '.join(map(repr, missing))}, got {got}; {remedy}")
    return obj


def save_figure(path, fig, **kwargs) -> Path:
    """Save a matplotlib figure atomically (format from the file suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return _atomic(path, lambda tmp: fig.savefig(tmp, format=fmt, bbox_inches="tight", **kwargs))


@contextlib.contextmanager
def folder_lock(folder, name: str = "out_dir", log: Callable[[str], None] | None = print):
    """Hold ``folder/.lock`` for a block: a second holder fails at once with :class:`FolderBusyError`.

    The lock is an ``flock`` (the kernel drops it when its process dies, even by kill -9); the file
    holds the pid for the messages. A lock file left by a dead process is taken over (and said so).
    Without ``fcntl`` (Windows) the file is created exclusively and a dead pid marks it stale.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME

    def busy():
        return FolderBusyError(f"{name}: {folder} is in use by another run (pid {_lock_pid(path) or '?'}, "
                               f"lock file {path}); wait for it to finish or use another folder")
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL), 0o666)
        except FileExistsError:  # no fcntl: the pid in the file tells whether its holder still runs
            pid = _lock_pid(path)
            if pid.isdigit() and _alive(int(pid)):
                raise busy() from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            if log:
                log(f"{folder}: taking over the lock left by pid {pid or '?'}, which is no longer running")
            continue
        if fcntl:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise busy() from None
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.stat(path)):  # not unlinked by a releasing holder meanwhile
                break
        os.close(fd)
    stale = os.read(fd, 64).decode(errors="replace").strip()
    if stale and log:
        log(f"{folder}: taking over the lock left by pid {stale}, which is no longer running")
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    try:
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _lock_pid(path) -> str:
    with contextlib.suppress(OSError):
        return Path(path).read_text().strip()
    return ""
