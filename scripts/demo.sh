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
# The recipes hold nothing out (their published figures train on every training image); the demo
# holds 5 % out, so its report has a validation curve and its probabilities are calibrated on it
# (docs/reports.md: what that costs in accuracy, measured).
echo "demo: smallvision train --recipe $recipe --val-size 0.05"
name="demo-$recipe-$(date +%Y%m%d-%H%M%S)"
$sv train --recipe "$recipe" --val-size 0.05 --name "$name"
echo "demo: open runs/$name/report.html (curves, calibration, confusion matrix, top losses with heatmaps, per-class table)"
