#!/usr/bin/env bash
# Lane A of the CPU suite (one thread): MADE (random orderings, 32 masks), then NADE. Earlier in the same
# session: made-1mask (random ordering) and made-natural-1mask (raster ordering), see RESULTS.md.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
B="python benchmarks/train_nll.py --data binarized-mnist --data-dir $DATA --threads 1"
# (done: made-natural-1mask, 600 s)
$B --model made -o hidden=[500] -o num_masks=32 --name made-32masks-b --time 1200 --eval-every 8000 > benchmarks/logs/made-32masks-b.log 2>&1
$B --model nade --name nade --time 2100 --eval-every 500 --eval-max-images 1000 > benchmarks/logs/nade.log 2>&1
