"""Fixtures for the browser end-to-end tests: a throwaway JupyterLab server and a headless Chromium.

Everything is isolated in pytest's tmp dirs (server root, Jupyter config/data/runtime dirs, JupyterLab
settings and workspaces, IPython dir, Chromium profile), so no user state and nothing in the repository
is touched.  Both the server (with its kernels) and the browser are stopped whatever happens.

Environment variables
---------------------
CHROMIUM                       path of a Chromium/Chrome binary (default: ``chromium``/``chromium-browser`` on PATH)
MTLAT_E2E_OUT                  folder for screenshots and logs (default: ``<repo>/output/e2e``)
MTLAT_E2E_DISABLE_WIDGET_EXTENSION=1
                               start JupyterLab with @jupyter-widgets/jupyterlab-manager disabled: simulates a
                               missing ``jupyterlab_widgets`` (the test must then FAIL; used to check the test)
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = float(os.environ.get("MTLAT_E2E_SERVER_TIMEOUT", "120"))

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-dev-shm-usage",
]


def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        found = shutil.which(env) or (env if os.access(env, os.X_OK) else None)
        if found:
            return found
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def e2e_deadline() -> float:
    """time.monotonic() after which no e2e test may start more work (whole-run budget, default 9 min)."""
    return time.monotonic() + float(os.environ.get("MTLAT_E2E_TOTAL_TIMEOUT", "540"))


@pytest.fixture(scope="session")
def e2e_out() -> Path:
    out = Path(os.environ.get("MTLAT_E2E_OUT") or REPO_ROOT / "output" / "e2e")
    if not out.is_absolute():
        out = REPO_ROOT / out
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"playwright is not importable ({exc}); `pip install playwright` to run the e2e tests")
    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium found (set CHROMIUM=/path/to/chromium, or run .ci/install-chromium.sh / "
                    "`apt-get install chromium`); the JupyterLab widget e2e test needs a real browser")
    return path


# --------------------------------------------------------------------------------------------- server
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(url: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - localhost only
        return resp.status, resp.read()


def _descendants(pid: int) -> list[int]:
    """PIDs of all live descendants of ``pid`` (kernels run in their own session, so killpg misses them)."""
    try:
        import psutil
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except Exception:  # psutil missing or process gone: fall back to /proc
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        out, todo = [], [pid]
        while todo:
            for c in children.get(todo.pop(), []):
                out.append(c)
                todo.append(c)
        return out


def _kill(pids, sig) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:  # a zombie is dead for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class LabServer:
    def __init__(self, base_url: str, token: str, root: Path, log: Path, proc: subprocess.Popen):
        self.base_url, self.token, self.root, self.log, self.proc = base_url, token, root, log, proc

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}{path}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 5.0):
        status, body = _http(self.url(path), method=method, timeout=timeout)
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Delete every session/kernel (one notebook at a time keeps the CPU free)."""
        try:
            for s in self.api("/api/sessions"):
                _http(self.url(f"/api/sessions/{s['id']}"), method="DELETE", timeout=15)
            for k in self.api("/api/kernels"):
                _http(self.url(f"/api/kernels/{k['id']}"), method="DELETE", timeout=15)
        except Exception:
            pass

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def lab_server(chromium_executable, tmp_path_factory, e2e_out) -> LabServer:
    base = tmp_path_factory.mktemp("jupyterlab")
    dirs = {k: base / k for k in ("root", "config", "data", "runtime", "settings", "workspaces", "ipython",
                                  "cache")}
    for d in dirs.values():
        d.mkdir()
    (dirs["root"] / "notebooks").mkdir()
    # no network calls from the page (news feed, update check), no PyPI extension manager
    (dirs["config"] / "jupyter_lab_config.json").write_text(json.dumps({"LabApp": {
        "news_url": None,
        "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "extension_manager": "readonly",
    }}))
    notif = dirs["settings"] / "@jupyterlab" / "apputils-extension"
    notif.mkdir(parents=True)
    (notif / "notification.jupyterlab-settings").write_text(json.dumps(
        {"fetchNews": "false", "checkForUpdates": False}))  # no 'Jupyter news?' toast over the page
    if os.environ.get("MTLAT_E2E_DISABLE_WIDGET_EXTENSION") == "1":
        (dirs["config"] / "labconfig").mkdir()
        (dirs["config"] / "labconfig" / "page_config.json").write_text(json.dumps(
            {"disabledExtensions": {"@jupyter-widgets/jupyterlab-manager": True}}))

    env = dict(os.environ)
    env.pop("MPLBACKEND", None)  # CI often sets Agg, which would stop plt.show() from reaching the page
    env.update({
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "MTLAT_CACHE": str(dirs["cache"]),
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),  # shared, small CI machines
        "MKL_NUM_THREADS": env.get("MKL_NUM_THREADS", "1"),
    })
    port, token = _free_port(), secrets.token_hex(24)
    cmd = [sys.executable, "-m", "jupyter", "lab",
           "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--port-retries=0",
           f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={dirs['root']}",
           "--ServerApp.open_browser=False",
           f"--LabApp.user_settings_dir={dirs['settings']}",
           f"--LabApp.workspaces_dir={dirs['workspaces']}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers/CI often run as root
    log = e2e_out / "jupyter-server.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(cmd, cwd=dirs["root"], env=env, stdin=subprocess.DEVNULL, stdout=logf,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = LabServer(f"http://127.0.0.1:{port}", token, dirs["root"], log, proc)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited with code {proc.returncode} before answering:\n"
                            f"{' '.join(cmd)}\n--- log tail ---\n{server.log_tail()}")
            try:
                status, _ = _http(server.url("/api/status"), timeout=2)
                if status == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer /api/status within {SERVER_START_TIMEOUT_S:.0f} s\n"
                            f"--- log tail ---\n{server.log_tail()}")
            time.sleep(0.5)
        yield server
    finally:
        _stop_server(server)


def _stop_server(server: LabServer) -> None:
    proc = server.proc
    kids = set(_descendants(proc.pid)) if proc.poll() is None else set()
    if proc.poll() is None:
        try:  # graceful: the server shuts its kernels down itself
            _http(server.url("/api/shutdown"), method="POST", timeout=5)
        except Exception:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(timeout=10)
    # kernels live in their own sessions: make sure none outlives the server
    _kill([p for p in kids if _alive(p)], signal.SIGTERM)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in kids) and time.monotonic() < deadline:
        time.sleep(0.2)
    _kill([p for p in kids if _alive(p)], signal.SIGKILL)


# -------------------------------------------------------------------------------------------- browser
@pytest.fixture(scope="session")
def browser_context(chromium_executable, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    pw = sync_playwright().start()
    context = None
    try:
        context = pw.chromium.launch_persistent_context(
            user_data_dir=str(profile),
            executable_path=chromium_executable,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
            timeout=60_000,
        )
        context.set_default_timeout(30_000)
        for blank in list(context.pages):  # the persistent context opens an about:blank tab: one tab at a time
            blank.close()
        yield context
    finally:
        try:
            if context is not None:
                context.close()
        finally:
            pw.stop()
