#!/usr/bin/env bash
# Short CPU runs (one thread each, side by side): PixelCNN++ and PixelSNAIL on 8-bit MNIST (bits/dim),
# and an RBM (500 hidden, CD-1) on binarized MNIST scored with an AIS estimate of log Z.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
B="python benchmarks/train_nll.py --data-dir $DATA --threads 1 --eval-every 100000"
$B --data mnist --model pixelcnn++ --name pixelcnn-pp-mnist --time 480 > benchmarks/logs/pixelcnn-pp-mnist.log 2>&1 &
$B --data mnist --model pixelsnail --name pixelsnail-mnist --time 480 > benchmarks/logs/pixelsnail-mnist.log 2>&1 &
$B --data binarized-mnist --model rbm -o hidden=500 -o cd_steps=1 --optimizer sgd --lr 0.05 --momentum 0.9 \
   --grad-clip 0 --batch-size 100 --name rbm-cd1 --time 480 > benchmarks/logs/rbm-cd1.log 2>&1 &
wait
