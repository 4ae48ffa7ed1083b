#!/usr/bin/env bash
# Classic models on static binarized MNIST, fitted by EM (one CPU thread): the mixture of Bernoullis with
# K=500 components, and the HMM over the 28 image rows.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
B="python benchmarks/train_nll.py --data binarized-mnist --data-dir $DATA --threads 1 --fit em --time 1"
$B --model bernoulli-mixture -o components=500 --em-iterations 50 --name bernoulli-mixture-500 > benchmarks/logs/bernoulli-mixture-500.log 2>&1
$B --model hmm -o states=64 --em-iterations 30 --name row-hmm-64 > benchmarks/logs/row-hmm-64.log 2>&1
