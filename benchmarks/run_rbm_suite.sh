#!/usr/bin/env bash
# RBM (500 hidden) on static binarized MNIST by CD-1 and CD-3, side by side, one CPU thread each, with the
# update rule of Salakhutdinov's RBM code (SGD on the mean gradient, lr 0.05, momentum 0.9, weight cost
# 0.001, batches of 100); test NLL with log Z from AIS (14,500 temperatures, 100 chains).
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
TIME=${TIME:-1200}
B="python benchmarks/train_nll.py --data binarized-mnist --data-dir $DATA --threads 1 --eval-every 100000 \
   --model rbm --optimizer sgd --lr 0.05 --momentum 0.9 --weight-decay 0.001 --grad-clip 0 --batch-size 100"
$B -o hidden=500 -o cd_steps=1 --name rbm-cd1-wd --time $TIME > benchmarks/logs/rbm-cd1-wd.log 2>&1 &
$B -o hidden=500 -o cd_steps=3 --name rbm-cd3-wd --time $TIME > benchmarks/logs/rbm-cd3-wd.log 2>&1 &
wait
