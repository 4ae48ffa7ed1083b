#!/usr/bin/env bash
# Lane A of the CPU suite (one thread): MADE with the natural (raster) ordering, 1 and 32 masks, then NADE.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
B="python benchmarks/train_nll.py --data binarized-mnist --data-dir $DATA --threads 1"
$B --model made -o hidden=[500] -o num_masks=1 -o natural_ordering=true --name made-natural-1mask --time 600 --eval-every 4000 > benchmarks/logs/made-natural-1mask.log 2>&1
$B --model made -o hidden=[500] -o num_masks=32 -o natural_ordering=true --name made-natural-32masks --time 1500 --eval-every 8000 > benchmarks/logs/made-natural-32masks.log 2>&1
$B --model nade --name nade --time 2400 --eval-every 500 --eval-max-images 1000 > benchmarks/logs/nade.log 2>&1
