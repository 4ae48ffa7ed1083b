#!/usr/bin/env bash
# The papers' recipes to their stopping rules on the CPU (issue 11), one thread each, queued so that at
# most two run at once beside other work. Each run resumes from its checkpoint when repeated.
#   WAIT_PID=<pid> bash benchmarks/run_recipes_cpu.sh LANE    (LANE: a or b; waits for WAIT_PID to end)
set -u
cd "$(dirname "$0")/.."
. .venv/bin/activate
export OMP_NUM_THREADS=1
if [ -n "${WAIT_PID:-}" ]; then while kill -0 "$WAIT_PID" 2>/dev/null; do sleep 30; done; fi
# A run whose results.json exists has finished (scored); it is not repeated.
run() {
  [ -f "benchmarks/runs/$NAME/results.json" ] && return 0
  python benchmarks/train_nll.py --threads 1 "$@" >> "benchmarks/logs/$NAME.log" 2>&1
}
case "${1:-a}" in
  a)
    NAME=made-germain2015-1mask run --model made --preset germain2015-1mask --name made-germain2015-1mask
    NAME=fvsbn-larochelle2011 run --model fvsbn --preset larochelle2011 --name fvsbn-larochelle2011
    NAME=iwae-burda2016 run --model iwae --preset burda2016 --name iwae-burda2016
    ;;
  b)
    NAME=bernoulli-mixture-larochelle2011 run --model bernoulli-mixture --preset larochelle2011 --name bernoulli-mixture-larochelle2011 --em-iterations 100
    NAME=rbm-salakhutdinov2008-cd1 run --model rbm --preset salakhutdinov2008-cd1 --name rbm-salakhutdinov2008-cd1
    NAME=rbm-salakhutdinov2008-cd3 run --model rbm --preset salakhutdinov2008-cd3 --name rbm-salakhutdinov2008-cd3
    NAME=dbn-salakhutdinov2008 run --model dbn --preset salakhutdinov2008 --name dbn-salakhutdinov2008
    NAME=made-germain2015-32masks run --model made --preset germain2015-32masks --name made-germain2015-32masks
    ;;
esac
