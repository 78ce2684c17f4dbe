#!/usr/bin/env bash
# Install ONNX Runtime Web (the version web-runtime/package-lock.json pins) from the npm registry into
# web-runtime/node_modules: `smallvision export --format web` copies its script and WebAssembly files
# into every web folder, so the page never fetches anything at run time. SMALLVISION_ORT_WEB may name
# another copy of its dist/ folder instead.
set -u
cd "$(dirname "$0")/../web-runtime" || exit 0
want=$(sed -n 's/.*"onnxruntime-web": "\([0-9.]*\)".*/\1/p' package.json)
if grep -qs "\"version\": \"$want\"" node_modules/onnxruntime-web/package.json; then
  echo "web runtime: onnxruntime-web found"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "web runtime: installing Debian's npm ..."
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm >/dev/null 2>&1; }
  fi
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "web runtime: npm not found (sudo apt-get install npm); export --format web will say what is missing"
  exit 0
fi
# --ignore-scripts: the runtime's files are plain files; no package needs to run code to install them
if npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null; then
  echo "web runtime: onnxruntime-web $(node -p "require('./node_modules/onnxruntime-web/package.json').version" 2>/dev/null)"
else
  echo "web runtime: npm ci failed; export --format web will say what is missing"
fi
