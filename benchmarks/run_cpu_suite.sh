#!/usr/bin/env bash
# The CPU benchmark suite of issue 2, as run for benchmarks/RESULTS.md: two lanes of one thread each
# on a 2-core machine. Logs go to benchmarks/logs/, one JSON result line per run to results.jsonl.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
B="python benchmarks/train_nll.py --data binarized-mnist --data-dir $DATA --threads 1"
lane_a() {
  $B --model made -o hidden=[500] -o num_masks=1 --name made-1mask --time 480 --eval-every 4000 > benchmarks/logs/made-1mask.log 2>&1
  $B --model made -o hidden=[500] -o num_masks=32 --name made-32masks --time 1200 --eval-every 8000 > benchmarks/logs/made-32masks.log 2>&1
  $B --model nade --name nade --time 1500 --eval-every 500 --eval-max-images 1000 > benchmarks/logs/nade.log 2>&1
}
lane_b() {
  $B --model pixelcnn -o channels=64 -o num_blocks=7 -o output_channels=64 --name pixelcnn-small --time 2700 \
     --eval-every 500 --eval-max-images 1000 > benchmarks/logs/pixelcnn-small.log 2>&1
  python benchmarks/sample_speed.py --run benchmarks/runs/pixelcnn-small --n 64 --batches 64,1024 --threads 1 \
     > benchmarks/logs/sample-speed-pixelcnn-small.log 2>&1
}
lane_a & lane_b & wait
