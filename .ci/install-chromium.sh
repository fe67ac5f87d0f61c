#!/usr/bin/env bash
# Install Debian's Chromium for the browser end-to-end tests (tests/e2e), where it is missing.
#
# Idempotent: does nothing when chromium / chromium-browser (or $CHROMIUM) is already there.
# Never fails the CI job: if it cannot install (not root, no apt-get, no network...) it prints a
# warning and exits 0; the e2e tests then SKIP with a clear reason and the rest of the suite runs.
#
#   .ci/install-chromium.sh            # then: python -m pip install playwright  (never `playwright install`)
set -u

warn() { echo "install-chromium: WARNING: $*" >&2; }

have_chromium() {
    if [ -n "${CHROMIUM:-}" ] && command -v "$CHROMIUM" >/dev/null 2>&1; then echo "$(command -v "$CHROMIUM")"; return 0; fi
    for b in chromium chromium-browser; do
        if command -v "$b" >/dev/null 2>&1; then echo "$(command -v "$b")"; return 0; fi
    done
    return 1
}

if path=$(have_chromium); then
    echo "install-chromium: already installed: $path ($("$path" --version 2>/dev/null | head -n1))"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    warn "apt-get not found (not Debian/Ubuntu): install Chromium yourself or set CHROMIUM=/path/to/chrome; e2e tests will be skipped"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        warn "not root and no password-less sudo: cannot apt-get install chromium; e2e tests will be skipped"
        exit 0
    fi
fi

export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update; then
    warn "apt-get update failed; trying the install with the current package lists anyway"
fi
# fonts-dejavu-core: readable text in the screenshots on bare images (tiny; chromium only recommends fonts)
if ! $SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core; then
    warn "apt-get install chromium failed; e2e tests will be skipped"
    exit 0
fi

if path=$(have_chromium); then
    version=$("$path" --version 2>/dev/null | head -n1)
    echo "install-chromium: installed $path ($version)"
    case "$version" in
        *snap*|"") warn "'$path' may be Ubuntu's snap wrapper, which does not run in containers; set CHROMIUM to a real binary" ;;
    esac
else
    warn "chromium package installed but no chromium binary on PATH; e2e tests will be skipped"
fi
exit 0
