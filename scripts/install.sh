#!/usr/bin/env bash
# Creates .venv and installs everything the app needs, offline-safe after the first run.
# llama-cpp-python is compiled once per (version, CMAKE_ARGS, Python, CPU arch) into a wheel folder of its own:
# pip's wheel cache ignores CMAKE_ARGS, so a wheel built with other (crashing) flags would otherwise be reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
LLAMA_VERSION=$(sed -n 's/^llama-cpp-python==\([^ ;]*\).*/\1/p' requirements.txt)
CMAKE_FLAGS=$(scripts/llama_cmake_args.sh)

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
PY=.venv/bin/python
pyver=$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')
key=$(printf '%s|%s|%s|%s' "$LLAMA_VERSION" "$CMAKE_FLAGS" "$pyver" "$(uname -m)" | sha256sum | cut -c1-16)
wheel_dir="${XDG_CACHE_HOME:-$HOME/.cache}/rag-llama-wheels/$key"

if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "==> building llama-cpp-python $LLAMA_VERSION with CMAKE_ARGS=\"$CMAKE_FLAGS\" (a few minutes, once)"
  mkdir -p "$wheel_dir.tmp"
  CMAKE_ARGS="$CMAKE_FLAGS" $PY -m pip wheel --no-deps --no-cache-dir -w "$wheel_dir.tmp" "llama-cpp-python==$LLAMA_VERSION"
  mv "$wheel_dir.tmp" "$wheel_dir"
fi
if [ "$(cat .venv/.llama-build-key 2>/dev/null)" != "$key" ]; then
  echo "==> installing llama-cpp-python from $wheel_dir"
  $PY -m pip install -q --no-deps --force-reinstall "$wheel_dir"/llama_cpp_python-*.whl
  echo "$key" > .venv/.llama-build-key
fi
# The rest. llama-cpp-python is already satisfied at the pinned version, so pip does not rebuild it.
echo "==> installing requirements"
$PY -m pip install -q -r requirements.txt -r requirements-dev.txt
$PY -m pip check >/dev/null || { $PY -m pip check; exit 1; }
touch .venv/.installed
echo "==> installed"
