"""Files: atomic writes, safe loading and run-folder locks (docs/design.md, "Run folders" and "Loading").

* Atomic writes: a result file is either the old one or the complete new one, never half-written.
  The temporary file (``.mtlat-<name>.<pid>.<random>.tmp`` beside the target: the package's own
  prefix :data:`TMP_PREFIX`) gets the user's umask before it replaces the target; :func:`clean_tmp`
  removes those left by killed writers, and never a file without that prefix. A failed write (disk
  full, read-only folder) raises :class:`WriteError` naming the file, in one line.
* Strict JSON: :func:`write_json` writes no ``NaN`` / ``Infinity`` tokens (non-finite floats become
  ``null``, :func:`json_ready`), so every strict parser reads what the package writes.
* Safe loading: :func:`load_torch` reads with ``torch.load(..., weights_only=True)`` only (tensors
  and plain types; a crafted pickle is refused, never run) and turns every failure (0 bytes,
  truncated, garbage, foreign objects) into a :class:`CorruptFileError` naming the file and the
  remedy; :func:`read_json` does the same for JSON.
* :func:`folder_lock`: one writer per folder; a second one fails at once, a lock left by a killed
  process is taken over. The lock file is opened with ``O_NOFOLLOW`` and must be a regular file:
  a ``.lock`` symlink (or fifo, folder...) is refused, never followed, truncated or printed.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import pickle
import shutil
import stat
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
TMP_PREFIX = ".mtlat-"  # every temporary file or folder the package creates starts with it (and ends in .tmp)


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


class WriteError(OSError):
    """A file or folder the package writes could not be written (disk full, read-only, not a folder).
    Its text is the one-line message (no ``[Errno N]`` prefix)."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def _reason(exc: BaseException, folder: Path) -> str:
    """One line saying why a write failed (torch's zip writer reports a full disk as an 'enforce fail')."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < 2**20:
            return "no space left on the device"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {first[:160]}"


def ensure_folder(folder, name: str = "out_dir") -> Path:
    """Create ``folder`` (and its parents) if needed; a path that is a file, or a folder that cannot be
    created or written, raises :class:`WriteError` in one line naming ``name`` (the argument or option)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(errno.ENOTDIR, f"{name}: {folder} is a file, not a folder; give a folder path") from None
    except NotADirectoryError:
        raise WriteError(errno.ENOTDIR, f"{name}: a parent of {folder} is a file, not a folder; "
                                        "give a folder path") from None
    except OSError as exc:
        raise WriteError(exc.errno, f"{name}: cannot create {folder} ({exc.strerror}); choose a folder you "
                                    "can write to") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise WriteError(errno.EACCES, f"{name}: {folder} is not writable; choose a folder you can write to "
                                       "or change its permissions")
    return folder


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic(path, write: Callable[[str], None]) -> Path:
    path = Path(path)
    ensure_folder(path.parent, str(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.{os.getpid()}.", suffix=".tmp")
    except OSError as exc:
        raise WriteError(exc.errno, f"{path}: cannot be written ({_reason(exc, path.parent)}); "
                                    "check the free space and the permissions of its folder") from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; honour the umask like open() does
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # disk full: OSError, or torch's "[enforce fail at inline_container.cc]"
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise WriteError(getattr(exc, "errno", None) or errno.EIO,
                         f"{path}: could not be written ({_reason(exc, path.parent)}); the previous version, "
                         "if any, is intact: free some space or check the folder's permissions, then run "
                         "the same command again") from exc
    except BaseException:
        with contextlib.suppress(OSError):
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
    """Remove the package's own temporary files (``.mtlat-*.tmp``, :data:`TMP_PREFIX`) of killed
    atomic writes in ``folder``: those whose writer pid is no longer alive (any age), and those
    without a pid older than ``min_age_s``; with ``every`` (the caller holds the folder's lock) all
    of them. Temporary *folders* of the package (a ``--no-resume`` run in progress) are removed when
    their pid is dead. Nothing else is touched (other programs' ``.*.tmp`` files stay), and a
    symlink is removed as a link, never followed. Returns the removed paths."""
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.glob(f"{TMP_PREFIX}*.tmp"):
        pid = p.name[:-4].rsplit(".", 2)[-2] if p.name.count(".") >= 3 else ""
        try:
            info = p.lstat()
            if stat.S_ISDIR(info.st_mode):
                if pid.isdigit() and not _alive(int(pid)):
                    shutil.rmtree(p)
                    removed.append(p)
                continue
            orphan = every or (not _alive(int(pid)) if pid.isdigit()
                               else time.time() - info.st_mtime > min_age_s)
            if orphan:
                p.unlink()
                removed.append(p)
        except FileNotFoundError:  # its writer finished meanwhile
            pass
    return removed


def write_bytes(path, data: bytes) -> Path:
    """``data`` to ``path`` atomically (a temporary sibling, then a rename)."""
    return _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(path, text: str) -> Path:
    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return _atomic(path, w)


def write_json(path, obj: Any) -> Path:
    """Strict JSON (``allow_nan=False``): non-finite floats are written as ``null`` (:func:`json_ready`)."""
    return write_text(path, json.dumps(json_ready(obj), indent=2, sort_keys=False, allow_nan=False) + "\n")


def json_ready(obj):
    """``obj`` as strict JSON can hold it: NaN and inf -> None, tuples -> lists, keys -> str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():  # numpy / torch scalars
        return json_ready(obj.item())
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
    The lock file is opened with ``O_NOFOLLOW`` and must be a regular file: a symlink (e.g. to a
    file of the user's) or anything else is refused with :class:`WriteError`, and only a pid is
    ever read back and shown from it.
    """
    folder = ensure_folder(folder, name)
    path = folder / LOCK_NAME
    nofollow = getattr(os, "O_NOFOLLOW", 0)

    def busy():
        return FolderBusyError(f"{name}: {folder} is in use by another run (pid {_lock_pid(path) or '?'}, "
                               f"lock file {path}); wait for it to finish or use another folder")

    def foreign():
        return WriteError(errno.EEXIST, f"{name}: {path} is not a lock file of mtlat-edu (a symlink or not a "
                                        "regular file; it was left untouched): remove it if you trust the "
                                        "folder, or use another folder")
    while True:
        if os.path.islink(path):
            raise foreign()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | nofollow | (0 if fcntl else os.O_EXCL), 0o666)
        except FileExistsError:  # no fcntl: the pid in the file tells whether its holder still runs
            pid = _lock_pid(path)
            if pid.isdigit() and _alive(int(pid)):
                raise busy() from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            if log:
                log(f"{folder}: taking over the lock left by pid {pid or '?'}, which is no longer running")
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symlink created meanwhile
                raise foreign() from None
            raise WriteError(exc.errno, f"{name}: cannot create the lock file {path} ({exc.strerror}); "
                                        "choose a folder you can write to") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise foreign()
        if fcntl:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise busy() from None
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(fd), os.lstat(path)):  # not unlinked by a releasing holder meanwhile
                break
        os.close(fd)
    stale = _pid_text(os.read(fd, 64))
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


def _pid_text(raw: bytes) -> str:
    """The pid a lock file holds, or "?" for anything else (another file's content is never shown)."""
    text = raw.decode(errors="replace").strip()
    return text if text.isdigit() else ("?" if text else "")


def _lock_pid(path) -> str:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        try:
            return _pid_text(os.read(fd, 64)) if stat.S_ISREG(os.fstat(fd).st_mode) else ""
        finally:
            os.close(fd)
    return ""
