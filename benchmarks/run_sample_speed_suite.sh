#!/usr/bin/env bash
# Cached vs naive sampling, measured in one run for each trained autoregressive model (one CPU thread):
# the binarized-MNIST PixelCNN, and every autoregressive model of the digits suite (8x8, 17 levels).
set -u
cd "$(dirname "$0")/.."
S="python benchmarks/sample_speed.py --threads 1 --n 64 --batches 64,1024"
for m in nade pixelcnn gated-pixelcnn pixelcnn-pp pixelsnail row-lstm diagonal-bilstm; do
  $S --run benchmarks/runs/digits-$m > benchmarks/logs/sample-speed-digits-$m.log 2>&1
done
