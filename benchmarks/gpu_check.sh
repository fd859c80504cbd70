#!/usr/bin/env bash
# Issue #5's GPU check as one script, for a machine with a CUDA device and ganforge importable:
#   1. the training step at 256 px / 9 blocks / batch 1, plain eager fp32 against each CUDA speed
#      option (benchmarks/train_step.py --compare --device cuda), 20 rounds taken in turns;
#   2. `ganforge run` of the quickstart recipe on the GPU with fp16 autocast + grad scaler,
#      channels_last, torch.compile and CUDA graphs, stopped by SIGINT in its second epoch and resumed
#      to the end (the signal checkpoint, the CUDA RNG state and the scaler's state on the way).
# Logs, the run's sample grid, loss curves and checkpoint land in the folder given (default gpu-check/).
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
set -u
out=${1:-gpu-check}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(),
"cudnn", torch.backends.cudnn.version(), "cudnn.allow_tf32", torch.backends.cudnn.allow_tf32,
"matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)'
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader

echo "== 1. training step, 256 px / 9 blocks / batch 1"
timeout 330 python3 benchmarks/train_step.py --compare --device cuda --size 256 --blocks 9 --steps 20 2>&1 \
    | tee "$out/compare.txt"

echo "== 2. ganforge run on the GPU: fp16 + channels_last + compile + CUDA graphs, SIGINT, --resume"
run=/tmp/ganforge-gpu-check/run
rm -rf "$run"
options=(--set 'train.device="cuda"' --set 'train.precision="fp16"' --set train.channels_last=true
         --set train.compile=true --set train.cuda_graphs=true --set data.length=200 --set train.epochs=4
         --set train.scheduler.constant_epochs=2 --set train.scheduler.decay_epochs=2)
python3 -m ganforge run recipes/quickstart.toml --run-dir "$run" "${options[@]}" >"$out/run1.txt" 2>&1 &
pid=$!
for _ in $(seq 600); do [ -f "$run/samples/epoch_0001.png" ] && break; sleep 0.25; done
sleep 1
kill -INT "$pid"
wait "$pid"
echo "first run (SIGINT in epoch 2) exit code $?"
tail -5 "$out/run1.txt"
timeout 200 python3 -m ganforge run --resume "$run" >"$out/run2.txt" 2>&1
echo "resumed run exit code $?"
tail -8 "$out/run2.txt"
ls -la "$run" "$run/checkpoints" "$run/samples"
cp "$run/samples/epoch_0004.png" "$run/loss_curves.png" "$run/metrics.jsonl" "$out/" 2>/dev/null
cp "$run/checkpoints/latest.pt" "$out/latest.pt" 2>/dev/null
