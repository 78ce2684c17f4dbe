#!/usr/bin/env bash
# `make demo`: train on real data available offline; MNIST when its files are found, else
# Fashion-MNIST (Debian's package). Prints the run folder and its summary.
set -eu
sv=.venv/bin/smallvision
if $sv datasets --where mnist >/dev/null 2>&1; then
  recipe=mnist-fast
elif $sv datasets --where fashion-mnist >/dev/null 2>&1; then
  recipe=fashion-fast
else
  echo "demo: neither MNIST nor Fashion-MNIST files were found:" >&2
  $sv datasets --where fashion-mnist >&2 || true
  exit 2
fi
echo "demo: smallvision train --recipe $recipe"
name="demo-$recipe-$(date +%Y%m%d-%H%M%S)"
$sv train --recipe "$recipe" --name "$name"
echo "demo: open runs/$name/report.html (curves, confusion matrix, top losses, per-class table)"
