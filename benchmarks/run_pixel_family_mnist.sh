#!/usr/bin/env bash
# Two members of the PixelCNN family on static binarized MNIST under a CPU budget (one thread each, side
# by side): a small Gated PixelCNN (32 channels, 7 layers) and the Row LSTM (7 layers, h=16). Validation
# on 1,000 images every 1,000 steps; the test split is scored with the best-validation weights.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
TIME=${TIME:-900}
B="python benchmarks/train_nll.py --data binarized-mnist --data-dir $DATA --threads 1 --eval-every 1000 --eval-max-images 1000"
$B --model gated-pixelcnn -o channels=32 -o num_layers=7 --name gated-pixelcnn-small --time $TIME \
   > benchmarks/logs/gated-pixelcnn-small.log 2>&1 &
$B --model row-lstm --name row-lstm-mnist --time $TIME > benchmarks/logs/row-lstm-mnist.log 2>&1 &
wait
