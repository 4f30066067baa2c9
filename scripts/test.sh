#!/usr/bin/env bash
# The test command (`make test`, run by .ci/run): the whole suite, real models, real servers, real browser.
# Installs Debian's chromium for the browser test when it is missing (playwright's own download fails offline).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    echo "==> installing chromium for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "WARNING: could not install chromium; the browser test will be skipped"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "WARNING: could not install chromium; the browser test will be skipped"
  else
    echo "WARNING: chromium is missing and cannot be installed without root; the browser test will be skipped"
  fi
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
