#!/usr/bin/env bash
# DCGAN on 8-bit MNIST (256 levels; labels give a classifier feature network), 10 min on one CPU thread.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
python benchmarks/train_nll.py --threads 1 --grad-clip 0 --eval-every 100000 --data mnist --data-dir $DATA \
  --model dcgan --name dcgan-mnist --time 600 > benchmarks/logs/dcgan-mnist.log 2>&1
