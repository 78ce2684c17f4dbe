#!/usr/bin/env bash
# Install Debian's Chromium for the served page's browser test (tests/test_serve_browser.py, which
# drives it with Playwright). Playwright's own browser download is not used: only Debian's
# registry is reachable here. SMALLVISION_CHROMIUM may name another Chromium binary instead.
set -u
if [ -n "${SMALLVISION_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  echo "browser: Chromium found"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "browser: Chromium not installed (needs root and apt-get: sudo apt-get install chromium); the browser test will fail, SMALLVISION_SKIP_BROWSER=1 skips it"
  exit 0
fi
echo "browser: installing Debian's chromium ..."
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q chromium >/dev/null 2>&1; then
  apt-get update -q >/dev/null 2>&1
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { echo "browser: apt-get could not install chromium; the browser test will fail"; exit 0; }
fi
echo "browser: $(chromium --version 2>/dev/null)"
