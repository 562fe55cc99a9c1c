#!/usr/bin/env bash
# The GPU measurements the project still owes (docs/benchmarks.md: DeepSpeed-Inference kernels
# for XLM-R, and training MFU), in as few device calls as the 10-minute command limit allows.
#
# Here, once (the wheels the GPU image lacks; .whl/ is git-ignored):
#   .venv/bin/pip wheel --no-build-isolation --no-deps deepspeed==0.19.8 -w .whl
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       hjson==3.1.0 pydantic==2.14.3 pydantic-core==2.50.4 annotated-types==0.8.0 typing-inspection==0.4.5
# Then, with the device tool, back to back: the machine stays warm for 30 s after a call, and
# with it the kernels DeepSpeed JIT-builds with nvcc on first use (minutes; a cold machine
# builds them again). Each call must end inside the 10-minute command limit, hence three:
#   run(command="bash tools/gpu_session.sh tests", carry=[".whl"])   # GPU tests (builds the kernels)
#   run(command="bash tools/gpu_session.sh l128",  carry=[".whl"])   # bench at length 128
#   run(command="bash tools/gpu_session.sh l512",  carry=[".whl"])   # bench at length 512 + training MFU
# Each stage writes its log and a tarball of its result directory to $OUT. The stage sizes are
# estimates (torch-compile compiles twice per precision; the kernel build takes minutes): if one
# runs out of time, pass fewer engines or batch sizes to `bench` below.
#
# The GPU image has torch, transformers, tensorboard, click and pyarrow but no deepspeed, ray or
# datasets: every command here runs in-process (--no-ray), and none imports ray or datasets
# (tests/test_benchmark_tools.py checks that on the CPU).
set -uo pipefail
stage=${1:?usage: bash tools/gpu_session.sh tests|l128|l512}
out=${OUT:-/tmp/gpu-session}
mkdir -p "$out"
log="$out/$stage.log"
exec > >(tee "$log") 2>&1

ls .whl/deepspeed-*.whl >/dev/null 2>&1 || { echo "no .whl/deepspeed-*.whl: build the wheels first (see the header)"; exit 2; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, transformers, deepspeed; print('torch', torch.__version__, 'transformers', transformers.__version__, 'deepspeed', deepspeed.__version__)"

stilts() { python3 -m stilts_ds.cli "$@"; }
bench() {  # bench LENGTH: XLM-R Large architecture, batch 1..256, every row LENGTH tokens
    stilts bench --preset xlmr-large --engines ds-kernel,torch-sdpa,torch-compile --precisions bf16,fp16 \
        --batch-sizes 1,2,4,8,16,32,64,128,256 --seq-len "$1" --lengths fixed --no-ray --output "runs/bench-l$1"
}

case "$stage" in
tests)
    python3 -m pytest -q -p no:cacheprovider tests/inference -k gpu -rs
    ;;
l128)
    bench 128
    tar czf "$out/bench-l128.tgz" runs/bench-l128
    ;;
l512)
    bench 512
    tar czf "$out/bench-l512.tgz" runs/bench-l512
    python3 tools/bench_train_throughput.py --preset xlmr-large --precision bf16 --seq-len 128 --micro-batch 64
    ;;
*)
    echo "unknown stage $stage: tests, l128 or l512"; exit 2 ;;
esac
