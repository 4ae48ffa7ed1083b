#!/usr/bin/env bash
# Every model on the bundled 17-level 8x8 digits (multi-level data: bits/dim on the test split), one CPU
# thread, a fixed wall-time budget per model. Logs in benchmarks/logs/digits-*.log, results in results.jsonl.
set -u
cd "$(dirname "$0")/.."
T=${T:-90}
B="python benchmarks/train_nll.py --data digits --threads 1 --eval-every 200 --eval-max-images 270"
run() { name=$1; shift; $B --name "digits-$name" "$@" > "benchmarks/logs/digits-$name.log" 2>&1; }
run independent --model independent --time $T --lr 0.05
run fvsbn --model fvsbn --time $T
run nade --model nade --time $T
run made --model made -o num_masks=8 --time $T
run pixelcnn --model pixelcnn --time $T
run gated-pixelcnn --model gated-pixelcnn --time $T
run pixelcnn-pp --model pixelcnn++ -o dropout=0.0 --time $T
run pixelsnail --model pixelsnail --time $T
run row-lstm --model row-lstm --time $T
run diagonal-bilstm --model diagonal-bilstm --time $T
run vae --model vae --time $T
run iwae --model iwae --time $T
run bernoulli-mixture --model bernoulli-mixture -o components=20 --fit em --time 1
run naive-bayes --model naive-bayes --fit closed-form --time 1
run rbm16 --model rbm -o hidden=16 --optimizer sgd --lr 0.05 --momentum 0.5 --grad-clip 0 --time $T
run fvsbn-lr0.01 --model fvsbn --lr 0.01 --time $T   # rerun: lr 1e-3 is too small for 90 s
