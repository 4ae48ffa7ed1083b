#!/usr/bin/env bash
# Side by side, one CPU thread each, static binarized MNIST:
# - DBN 784-500-2000 (Salakhutdinov & Murray 2008's shape), greedy CD-1 (lr 0.05, momentum 0.9, weight
#   cost 0.001, batches of 100), 15,000 steps for layer 1 and the rest of the budget for the top RBM; test
#   NLL as the variational bound and the k=100 importance estimate, log Z of the top RBM by AIS.
# - VAE 784-200-200-50 with a 4-step IAF posterior; test NLL by importance sampling, k=5000.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
TIME=${TIME:-1200}
B="python benchmarks/train_nll.py --data binarized-mnist --data-dir $DATA --threads 1 --batch-size 100"
$B --model dbn -o hidden=[500,2000] -o steps_per_layer=15000 --optimizer sgd --lr 0.05 --momentum 0.9 \
   --weight-decay 0.001 --grad-clip 0 --eval-every 100000 --eval-k 100 --name dbn-500-2000 --time $TIME \
   > benchmarks/logs/dbn-500-2000.log 2>&1 &
$B --model vae -o flow=iaf -o flow_steps=4 -o flow_hidden=[100,100] --lr 1e-3 --eval-k 5000 \
   --eval-every 2500 --eval-max-images 2000 --name vae-iaf4 --time $TIME > benchmarks/logs/vae-iaf4.log 2>&1 &
wait
# Afterwards (run by hand, see RESULTS.md §4c): the same DBN trained by PCD (persistent chains explore the
# model's own modes, which CD-1 leaves uncorrected in the 2000-unit top RBM), lr 0.01, 15 min:
#   python benchmarks/train_nll.py --data binarized-mnist --data-dir ../shared/data --threads 1 --batch-size 100 \
#     --model dbn -o hidden=[500,2000] -o steps_per_layer=15000 -o persistent=true --optimizer sgd --lr 0.01 \
#     --momentum 0.9 --weight-decay 0.001 --grad-clip 0 --eval-every 100000 --eval-k 100 --name dbn-500-2000-pcd --time 900
