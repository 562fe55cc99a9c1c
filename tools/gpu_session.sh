#!/usr/bin/env bash
# Every GPU figure the project owes (docs/benchmarks.md), in ONE run of at most 9 minutes:
#
#   bash tools/gpu_session.sh --out "$OUT"            # on the GPU machine (device tool, carry .whl)
#   bash tools/gpu_session.sh --smoke --out /tmp/s    # the same script on the CPU, tiny preset, < 2 min (CI)
#
# Steps, in order, each under `timeout` with its own time box, each writing into --out as it
# measures (a run cut off by the time limit keeps every row written so far):
#   1. ds-op     build DeepSpeed's inference op once (TORCH_CUDA_ARCH_LIST=9.0,
#                InferenceBuilder().load()) and check softmax_context_bf16 exists; if not,
#                ds-kernel is left out of every later step, with the reason in steps.jsonl
#   2. train     training MFU: XLM-R Large, ZeRO-2, bf16, length 128   -> train.jsonl
#   3. parity    the GPU parity tests (ds-kernel fp16/bf16 on padded batches, injection count)
#   4. l128      sweep at length 128: batch 1, 8, 64, 256, fixed lengths  -> bench-l128/rows.jsonl
#   5. compile   torch-compile with static shape buckets (CUDA graphs), bf16 only, length 128
#                                                                        -> bench-compile/rows.jsonl
#   6. real      the real length distribution of a task's split (--lengths real:TASK/LANG):
#                useful tokens/s, unpadded against padded engines       -> bench-real/rows.jsonl
#   7. l512      sweep at length 512                                     -> bench-l512/rows.jsonl
# steps.jsonl gets one line per step: name, status (ok | failed | timeout | skipped), rc,
# seconds, and why it was skipped. A step is skipped, not started, when less than its time box
# is left of --budget (default 540 s, the 9 minutes; machine start-up is not counted).
#
# Here, once, before the device call (the wheels the GPU image lacks; .whl/ is git-ignored):
#   .venv/bin/pip wheel --no-build-isolation --no-deps deepspeed==0.19.8 -w .whl
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       hjson==3.1.0 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
# then one device call:
#   run(command='bash tools/gpu_session.sh --out "$OUT"', carry=[".whl"], timeout_s=600)
#
# The GPU image has torch, transformers, tensorboard, click and pyarrow but no deepspeed, ray or
# datasets: every command here runs in-process (--no-ray), and none imports ray or datasets
# (tests/test_benchmark_tools.py checks that on the CPU).
set -uo pipefail

smoke=0
out=${OUT:-/tmp/gpu-session}
budget=540
while [ $# -gt 0 ]; do
    case "$1" in
    --smoke) smoke=1 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    --budget) budget=${2:?--budget needs seconds}; shift ;;
    *) echo "usage: bash tools/gpu_session.sh [--smoke] [--out DIR] [--budget SECONDS]" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$out"
exec > >(tee -a "$out/session.log") 2>&1
start=$(date +%s)

if [ "$smoke" = 1 ]; then
    # The CPU rehearsal: the same steps, the tiny preset, small shapes, fp32.
    py=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
    preset=tiny precisions=fp32 compile_precision=fp32 sizes=1,4 l1=16 l2=32 rows=24 real=real:xnli/hi lreal=64
    engines=ds-kernel,torch-sdpa,unpadded
    train_args=(--preset tiny --precision fp32 --steps 3 --warmup 1 --micro-batch 4 --seq-len 32 --peak-tflops 0.001)
    parity_tests=(tests/inference/test_parity_sharp.py)
    box_op=60 box_train=90 box_parity=90 box_bench=90
else
    ls .whl/deepspeed-*.whl >/dev/null 2>&1 || { echo "no .whl/deepspeed-*.whl: build the wheels first (see the header)"; exit 2; }
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
    py=python3
    preset=xlmr-large precisions=bf16,fp16 compile_precision=bf16 sizes=1,8,64,256 l1=128 l2=512 rows=512 real=real:xnli/en lreal=128
    engines=ds-kernel,torch-sdpa,unpadded
    train_args=(--preset xlmr-large --precision bf16 --seq-len 128 --micro-batch 64 --steps 30 --warmup 5)
    parity_tests=(tests/inference -k "gpu or sharp")
    box_op=240 box_train=120 box_parity=90 box_bench=90
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
export PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
"$py" -c "import torch, transformers, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'deepspeed', deepspeed.__version__)"

# step NAME SECONDS CMD...: run CMD under `timeout SECONDS` unless less than that is left of the
# budget; record the outcome in steps.jsonl either way.
step() {
    local name=$1 box=$2; shift 2
    local left=$(( budget - ($(date +%s) - start) ))
    if [ "$left" -lt "$box" ]; then
        echo "{\"step\": \"$name\", \"status\": \"skipped\", \"why\": \"${left}s left of the ${budget}s budget, the step needs ${box}s\"}" >> "$out/steps.jsonl"
        echo "== $name: skipped (${left}s left, needs ${box}s)"
        return 0
    fi
    echo "== $name (time box ${box}s, ${left}s left)"
    local t0=$(date +%s)
    timeout --kill-after=10 "$box" "$@"
    local rc=$? status=ok
    [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ] && status=timeout
    [ "$rc" -ne 0 ] && [ "$status" = ok ] && status=failed
    echo "{\"step\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"seconds\": $(( $(date +%s) - t0 ))}" >> "$out/steps.jsonl"
    return 0
}

# bench_args NAME ENGINES PRECISIONS LENGTH LENGTHS: the options of one `stilts-ds bench` into
# $out/NAME (words without spaces, so `timeout` can run the command itself, not a shell function).
bench_args() {
    echo "--preset $preset --engines $2 --precisions $3 --batch-sizes $sizes --seq-len $4 --lengths $5 --rows $rows" \
        "--no-ray --output $out/$1"
}

# 1. DeepSpeed's inference op, built once; ds-kernel is dropped from the sweeps if it is not usable.
step ds-op "$box_op" "$py" - "$out/ds_op.json" <<'EOF'
import json, sys
result = {"ok": False, "reason": None}
try:
    import torch
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device: DeepSpeed inference kernels need CUDA")
    from deepspeed.ops.op_builder import InferenceBuilder
    op = InferenceBuilder().load()
    if not hasattr(op, "softmax_context_bf16"):
        raise RuntimeError("the built inference op has no softmax_context_bf16 (bf16 kernels missing)")
    result["ok"] = True
except Exception as e:  # the reason goes into ds_op.json and steps.jsonl; the sweep goes on without ds-kernel
    result["reason"] = f"{type(e).__name__}: {e}"
json.dump(result, open(sys.argv[1], "w"))
print(result)
EOF
if ! "$py" -c "import json, sys; sys.exit(not json.load(open('$out/ds_op.json'))['ok'])" 2>/dev/null; then
    why=$("$py" -c "import json; print(json.load(open('$out/ds_op.json'))['reason'])" 2>/dev/null || echo "the op build did not finish")
    echo "{\"step\": \"ds-kernel\", \"status\": \"skipped\", \"why\": $("$py" -c 'import json, sys; print(json.dumps(sys.argv[1]))' "$why")}" >> "$out/steps.jsonl"
    engines=${engines//ds-kernel,/}
fi

# 2. Training MFU first: the figure that matters most, before anything can run out the clock.
step train "$box_train" "$py" tools/bench_train_throughput.py "${train_args[@]}" --out-jsonl "$out/train.jsonl"
# 3. The parity tests on this device (ds-kernel fp16 and bf16 on padded batches).
step parity "$box_parity" "$py" -m pytest -q -p no:cacheprovider -rs "${parity_tests[@]}" --junitxml "$out/parity.xml"
# 4-7. The trimmed sweep.
bench="$py -m stilts_ds.cli bench"
# shellcheck disable=SC2046,SC2086  # bench_args' words are meant to split
step l128 "$box_bench" $bench $(bench_args bench-l128 "$engines" "$precisions" "$l1" fixed)
step compile "$box_bench" $bench $(bench_args bench-compile torch-compile-static "$compile_precision" "$l1" fixed)
step real "$box_bench" $bench $(bench_args bench-real "$engines" "$precisions" "$lreal" "$real")
step l512 "$box_bench" $bench $(bench_args bench-l512 "$engines" "$precisions" "$l2" fixed)

echo "== done in $(( $(date +%s) - start ))s; steps:"
cat "$out/steps.jsonl"
