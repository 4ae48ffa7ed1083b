#!/usr/bin/env bash
# Issue 11's speed measurements, one thread: torch.tanh vs 2 sigmoid(2x) - 1, then every model's throughput table.
#   WAIT_PID=<pid> bash benchmarks/run_throughput.sh [LOG_SUFFIX]   (waits for WAIT_PID to end first)
#   AMP=bf16 bash benchmarks/run_throughput.sh -bf16                (every model under bf16 autocast)
# Logs: benchmarks/logs/activation-speed${LOG_SUFFIX}.log, benchmarks/logs/throughput-1thread${LOG_SUFFIX}.log
set -u
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_NUM_THREADS=1
if [ -n "${WAIT_PID:-}" ]; then while kill -0 "$WAIT_PID" 2>/dev/null; do sleep 20; done; fi
SUFFIX=${1:-}
AMP=${AMP:-off}
[ "$AMP" = off ] && python benchmarks/activation_speed.py --threads 1 > "benchmarks/logs/activation-speed$SUFFIX.log" 2>&1
python benchmarks/throughput.py --all --threads 1 --seconds 10 --json --amp "$AMP" \
    > "benchmarks/logs/throughput-1thread$SUFFIX.log" 2>&1
