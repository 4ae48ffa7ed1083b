#!/usr/bin/env bash
# VAE family on static binarized MNIST, CPU, one thread per run, two runs side by side.
# Test NLL by importance sampling with k=5000 on the full 10k test split (train_nll.py --eval-k 5000).
# Architectures from Burda et al. (2016): 1 layer 784-200-200-50; 2 layers 784-100-100-100(z1)-50-50-50(z2).
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
TIME=${TIME:-3000}
B="python benchmarks/train_nll.py --data binarized-mnist --data-dir $DATA --threads 1 --eval-k 5000 \
   --eval-every 2500 --eval-max-images 2000 --batch-size 100 --lr 1e-3"
$B --model vae --name vae-mlp --time $TIME > benchmarks/logs/vae-mlp.log 2>&1 &
$B --model iwae -o stochastic_layers=2 -o latent=100 -o hidden=[100,100] -o top_latent=50 -o top_hidden=[50,50] \
   -o num_samples=5 --name iwae2-k5 --time $TIME > benchmarks/logs/iwae2-k5.log 2>&1 &
wait
