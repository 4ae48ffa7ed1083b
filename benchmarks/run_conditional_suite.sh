#!/usr/bin/env bash
# Super-resolution and colorization (benchmarks/conditional.py): image-conditioned autoregressive models
# beside nearest/bicubic/gray and the L2 CNN, one CPU thread, one run at a time, fixed wall-time budgets.
# Logs in benchmarks/logs/conditional-*.log, results in results.jsonl, pictures in benchmarks/conditional/.
# FROM=k skips the first k-1 runs (e.g. after an interruption; a repeated run resumes its checkpoint);
# TO=k stops after run k.
set -u
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
FROM=${FROM:-1}
TO=${TO:-999}
B="python benchmarks/conditional.py --threads 1"
i=0
run() { i=$((i + 1)); name=$1; shift; { [ "$i" -lt "$FROM" ] || [ "$i" -gt "$TO" ]; } && return; $B --name "$name" "$@" >> "benchmarks/logs/conditional-$name.log" 2>&1; }
# 1. MNIST 7x7 -> 28x28 (binarized; the condition is the count of ones per 4x4 block, 17 levels)
run binarized-mnist-sr4-pixelcnn --task superres --scale 4 --data binarized-mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 --time 1500 --regression-time 300 --regression-channels 48 --regression-blocks 3 \
    --eval-every 1000 --eval-images 1000
# 2. colorization of the bundled photographs: p(RGB | luminance), 256 levels
run photos32-colorize-pixelcnn --task colorize --data photos32 --model pixelcnn -o channels=48 -o num_blocks=6 \
    --batch-size 16 --time 1200 --regression-time 240 --regression-channels 48 --regression-blocks 2 \
    --eval-every 500 --eval-images 371
# 3. the bundled digits, 4x4 -> 8x8, every image-conditioned model, 2 minutes each
D="--task superres --scale 2 --data digits --time 120 --regression-time 60 --eval-every 500 --eval-images 270"
run digits-sr2-pixelcnn $D --model pixelcnn -o channels=32 -o num_blocks=4
run digits-sr2-gated-pixelcnn $D --model gated-pixelcnn -o channels=32 -o num_layers=5 -o kernel_size=3
run digits-sr2-pixelcnn-pp $D --model pixelcnn++ -o channels=32 -o num_resnet=2 -o num_resolutions=2 -o dropout=0.0 \
    -o num_mixtures=5
run digits-sr2-pixelsnail $D --model pixelsnail -o channels=32 -o num_blocks=2 -o num_resnet=1
# 1 again: the same run resumed from its checkpoint with twice the budget (the trainer's time budget counts
# across resumes; the L2 CNN too): its record supersedes the first
run binarized-mnist-sr4-pixelcnn --task superres --scale 4 --data binarized-mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 --time 3000 --regression-time 600 --regression-channels 48 --regression-blocks 3 \
    --eval-every 1000 --eval-images 1000
# 1 a third time, 100 min (L2 CNN 25 min), also scored at temperature 0.8
run binarized-mnist-sr4-pixelcnn --task superres --scale 4 --data binarized-mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 --time 6000 --regression-time 1500 --regression-channels 48 --regression-blocks 3 \
    --eval-every 1000 --eval-images 1000 --temperature 0.8
# 1b. the same task with a Gated PixelCNN (no blind spot), 70 min, beside the same L2 CNN (its checkpoint copied)
mkdir -p benchmarks/runs/conditional-binarized-mnist-sr4-gated-pixelcnn
[ "$i" -lt "$FROM" ] || cp benchmarks/runs/conditional-binarized-mnist-sr4-pixelcnn/regression.safetensors \
    benchmarks/runs/conditional-binarized-mnist-sr4-gated-pixelcnn/
run binarized-mnist-sr4-gated-pixelcnn --task superres --scale 4 --data binarized-mnist --data-dir "$DATA" \
    --model gated-pixelcnn -o channels=32 -o num_layers=7 --time 4200 --regression-time 1500 --regression-channels 48 \
    --regression-blocks 3 --eval-every 1000 --eval-images 1000 --temperature 0.8
# 4. MNIST 14x14 -> 28x28 (binarized)
run binarized-mnist-sr2-pixelcnn --task superres --scale 2 --data binarized-mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 --time 900 --regression-time 180 --regression-channels 48 --regression-blocks 3 \
    --eval-every 1000 --eval-images 1000
# 5. 8-bit MNIST 7x7 -> 28x28 (256 levels, softmax)
run mnist-sr4-pixelcnn --task superres --scale 4 --data mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 --time 900 --regression-time 180 --regression-channels 48 --regression-blocks 3 \
    --eval-every 1000 --eval-images 1000
# 1 a fourth time: no more training, the 100-min model scored at lower temperatures (0.7, 0.6, 0.5)
run binarized-mnist-sr4-pixelcnn --task superres --scale 4 --data binarized-mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 --time 6000 --regression-time 1500 --regression-channels 48 --regression-blocks 3 \
    --eval-every 1000 --eval-images 1000 --temperature 0.8 --temperature 0.7 --temperature 0.6 --temperature 0.5
# 1 a fifth time: 190 min (the L2 CNN 47.5 min, the same 1:4 share of the budget), scored at T = 1, 0.8, 0.6
run binarized-mnist-sr4-pixelcnn --task superres --scale 4 --data binarized-mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 --time 11400 --regression-time 2850 --regression-channels 48 --regression-blocks 3 \
    --eval-every 1000 --eval-images 1000 --temperature 0.8 --temperature 0.6
# 1 a sixth time: the fifth run was stopped (SIGTERM, checkpoint) at step ~19.9k of constant lr 1e-3 and resumed
# with the lr annealed: cosine from step 0 to 0 at step 29,500 (the lr jumps to ~3e-4 at resume, then decays),
# the same 190-min budget; recorded as an override in log.jsonl
run binarized-mnist-sr4-pixelcnn --task superres --scale 4 --data binarized-mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 --time 11400 --regression-time 2850 --regression-channels 48 --regression-blocks 3 \
    --eval-every 1000 --eval-images 1000 --temperature 0.8 --temperature 0.6 \
    --schedule cosine --decay-steps 29500 --override schedule --override decay_steps
# 15. the same task, a conditioning network that must predict the image itself (Dahl et al. 2017's auxiliary
# term, condition_loss=1) and as wide as the L2 CNN (48 ch x 3 blocks); a fresh run warm-started: the
# PixelCNN's weights from run 1 (190 min), the conditioning network from the L2 CNN's trained body (run 1's
# 47.5-min L2 CNN, copied and not trained further); 85 min more, lr 5e-4 annealed to 0 (cosine)
mkdir -p benchmarks/runs/conditional-binarized-mnist-sr4-pixelcnn-aux
[ $((i + 1)) -lt "$FROM" ] || [ $((i + 1)) -gt "$TO" ] || cp -n \
    benchmarks/runs/conditional-binarized-mnist-sr4-pixelcnn/regression.safetensors \
    benchmarks/runs/conditional-binarized-mnist-sr4-pixelcnn-aux/
run binarized-mnist-sr4-pixelcnn-aux --task superres --scale 4 --data binarized-mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 -o condition_channels=48 -o condition_blocks=3 -o condition_loss=1.0 \
    --init-from benchmarks/runs/conditional-binarized-mnist-sr4-pixelcnn --condition-from-regression \
    --time 5100 --regression-time 2850 --regression-channels 48 --regression-blocks 3 --lr 5e-4 \
    --schedule cosine --decay-steps 15000 --eval-every 1000 --eval-images 1000 --temperature 0.8
# 16. run 15 resumed for 28 more minutes (time budget 6800 s), the cosine stretched to 0 at step 17,500
# (the lr goes from 4.8e-5 back up to ~1.1e-4 at resume, then anneals); recorded as an override in log.jsonl
run binarized-mnist-sr4-pixelcnn-aux --task superres --scale 4 --data binarized-mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 -o condition_channels=48 -o condition_blocks=3 -o condition_loss=1.0 \
    --init-from benchmarks/runs/conditional-binarized-mnist-sr4-pixelcnn --condition-from-regression \
    --time 6800 --regression-time 2850 --regression-channels 48 --regression-blocks 3 --lr 5e-4 \
    --schedule cosine --decay-steps 17500 --eval-every 1000 --eval-images 1000 --temperature 0.8 \
    --override decay_steps
# 17. run 15's recipe from scratch in one go (run 15's and run 1's checkpoints did not outlive their session):
# PixelCNN 64x8, the conditioning network 48 ch x 3 blocks with the auxiliary term (condition_loss=1), lr 1e-3
# annealed to 0 at step 25,000 (cosine), 100 min under bf16 autocast (this machine's AMX: ~1.6x the fp32 step;
# validation, test NLL and sampling in fp32); its L2 CNN (fp32, 47.5 min as in runs 1 and 15) trained at the
# same time on the other core (--regression-only), so that the model's run finds it trained
N17=binarized-mnist-sr4-pixelcnn-aux2
A17="--task superres --scale 4 --data binarized-mnist --data-dir $DATA --model pixelcnn -o channels=64 -o num_blocks=8
    -o condition_channels=48 -o condition_blocks=3 -o condition_loss=1.0 --regression-time 2850 --regression-channels 48
    --regression-blocks 3"
if [ $((i + 1)) -ge "$FROM" ] && [ $((i + 1)) -le "$TO" ]; then
    mkdir -p "benchmarks/runs/conditional-$N17"
    $B --name "$N17" $A17 --regression-only >> "benchmarks/logs/conditional-$N17-l2.log" 2>&1 &
fi
run "$N17" $A17 --amp bf16 --time 6000 --schedule cosine --decay-steps 25000 --eval-every 1000 --eval-images 1000 \
    --temperature 0.8 --best-of 4 --best-of 16
wait
# 18. colorization of the bundled photographs again, longer: run 2's model (PixelCNN 48 x 6) for 75 min under
# bf16 autocast, lr 1e-3 annealed to 0 at step 8,000 (cosine), its L2 CNN for 8 min (run 2: 20 and 4 min, fp32)
run photos32-colorize-pixelcnn-75min --task colorize --data photos32 --model pixelcnn -o channels=48 -o num_blocks=6 \
    --batch-size 16 --amp bf16 --time 4500 --schedule cosine --decay-steps 8000 --regression-time 480 \
    --regression-channels 48 --regression-blocks 2 --eval-every 500 --eval-images 371 --temperature 0.8
# 19. 8-bit MNIST 14x14 -> 28x28 (the fourth MNIST combination), as runs 10 and 11: 15 min, L2 CNN 3 min
run mnist-sr2-pixelcnn --task superres --scale 2 --data mnist --data-dir "$DATA" --model pixelcnn \
    -o channels=64 -o num_blocks=8 --time 900 --regression-time 180 --regression-channels 48 --regression-blocks 3 \
    --eval-every 1000 --eval-images 1000
