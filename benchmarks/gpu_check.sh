#!/usr/bin/env bash
# One prepared call on a lent GPU (the library's device tool), every step bounded by its own timeout
# so that one failure does not cost the rest:
#   1. the tests CI skips (CUDA corruptions; the fast path on CUDA, compiled too);
#   2. step cost per method, ResNet-18, batch 512 (eager; compiled last): ratio to standard;
#   3. real data: ResNet-18 standard and M-TLAT on a CIFAR-10 subset copied to data/cifar10-jpeg
#      (2,000 training images per class, all 10,000 test images), the cifar10 profile's recipe otherwise;
#   4. the smoke profile end to end on CUDA (every method, the surrogate, the whole suite);
#   5. the corruptions on CUDA against the per-image reference (224 px);
#   6. compiled step cost.
# Usage (device tool): run(command="bash benchmarks/gpu_check.sh", carry=["data/cifar10-jpeg"]).
# Writes $OUT/log.txt (everything) and $OUT/results.tgz (histories, tables).
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD PYTHONWARNINGS=ignore::DeprecationWarning
RUNS=/tmp/gpu_runs
LOG=$OUT/log.txt
EPOCHS=${EPOCHS:-10}
keep() { mkdir -p "$RUNS"; tar czf "$OUT/results.tgz" -C "$RUNS" --exclude='*.pt' . 2>>"$LOG"; }  # what is done so far comes back even if the call is cut
step() {  # step <seconds> <title> <command...>
  local limit=$1 title=$2; shift 2
  echo "=== $title ($(date +%T))" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "=== $title: rc=$rc in $((SECONDS - t0)) s" | tee -a "$LOG"
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv; nproc;
  python3 -c "import torch, torchvision, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, torch.cuda.get_device_name())"; } >>"$LOG" 2>&1

step 120 "1 CUDA tests" python3 -m pytest -q -p no:cacheprovider -k "cuda" tests/test_corruptions.py tests/test_gpu_path.py
keep
step 60 "2 step cost eager" python3 -m mtlat_edu bench-step --model resnet18 --batch-size 512 --device cuda \
  --rounds 5 --steps-per-round 10 --methods standard mixup tlat mtlat mtlat_pgd manifold_mtlat
step 150 "3 real data: resnet18 standard + mtlat, $EPOCHS epochs" python3 -m mtlat_edu train --dataset cifar10 \
  --data-root data/cifar10-jpeg --model resnet18 --epochs "$EPOCHS" --batch-size 512 --augment flipcrop --device cuda \
  --method standard mtlat --runs $RUNS/real
keep
step 60 "4a smoke train-profile on CUDA" python3 -m mtlat_edu train-profile --profile smoke --runs $RUNS --device cuda \
  --methods standard mixup fgsm target_fgsm ls tlat iat mtlat mtlat_pgd manifold_mtlat
step 60 "4b smoke evaluate on CUDA" python3 -m mtlat_edu evaluate --profile smoke --runs $RUNS --device cuda --out $RUNS/smoke-eval
keep
step 60 "5 corruptions on CUDA, 224 px" python3 -m benchmarks.corruptions --device cuda --size 224 --images 16 --rounds 3
step 90 "6 step cost compiled" python3 -m mtlat_edu bench-step --model resnet18 --batch-size 512 --device cuda \
  --rounds 5 --steps-per-round 10 --methods standard mtlat --compile
keep
grep "^===" "$LOG"
