#!/usr/bin/env bash
# GANs on digits and binarized MNIST under a wall-time budget (one CPU thread), scored by sample metrics
# against the train-vs-test floor; then the same metrics for the PixelCNN and VAE runs.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
B="python benchmarks/train_nll.py --threads 1 --grad-clip 0 --eval-every 100000"
$B --data digits --model dcgan --name digits-dcgan --time 300 > benchmarks/logs/digits-dcgan.log 2>&1
$B --data digits --model wgan-gp --name digits-wgan-gp --time 300 > benchmarks/logs/digits-wgan-gp.log 2>&1
$B --data digits --model cgan --name digits-cgan --time 300 > benchmarks/logs/digits-cgan.log 2>&1
$B --data binarized-mnist --data-dir $DATA --model dcgan --name dcgan-binarized-mnist --time 600 > benchmarks/logs/dcgan-binarized-mnist.log 2>&1
$B --data binarized-mnist --data-dir $DATA --model wgan-gp --name wgan-gp-binarized-mnist --time 600 > benchmarks/logs/wgan-gp-binarized-mnist.log 2>&1
Q="python benchmarks/sample_quality.py --threads 1"
$Q --run benchmarks/runs/digits-pixelcnn --samples 270 > benchmarks/logs/quality-digits-pixelcnn.log 2>&1
$Q --run benchmarks/runs/digits-iwae --samples 270 > benchmarks/logs/quality-digits-iwae.log 2>&1
$Q --run benchmarks/runs/pixelcnn-small --samples 2000 > benchmarks/logs/quality-pixelcnn-small.log 2>&1
