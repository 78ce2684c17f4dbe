#!/usr/bin/env bash
# Install Debian's Fashion-MNIST package (files under /usr/share/datasets/fashion-mnist) when we can.
set -u
dir=/usr/share/datasets/fashion-mnist
if [ -f "$dir/train-images-idx3-ubyte.gz" ]; then
  echo "data: Fashion-MNIST found in $dir"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "data: no apt-get here; Fashion-MNIST not installed (get the IDX files and set SMALLVISION_DATA)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "data: not root, so Debian's dataset-fashion-mnist was not installed; run: sudo apt-get install dataset-fashion-mnist"
  exit 0
fi
echo "data: installing Debian's dataset-fashion-mnist ..."
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; then
  apt-get update -q >/dev/null 2>&1
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { echo "data: apt-get could not install dataset-fashion-mnist; Fashion-MNIST is unavailable offline"; exit 0; }
fi
echo "data: Fashion-MNIST installed in $dir"
