"""The inference stage: trained encoders served through DeepSpeed-Inference and PyTorch
baselines, gated on parity with PyTorch, then timed.

* ``engines``: ``build_engine(name, model, precision, device)`` -> ``Engine`` for
  ds-kernel, ds, torch-eager, torch-sdpa, torch-compile, torch-compile-static, unpadded at
  fp32/fp16/bf16; ``ENGINES`` registry and ``availability(...)``.
* ``unpadded``: the padding-free XLM-R encoder (packed tokens, per-sequence positions,
  varlen attention) behind the ``unpadded`` engine.
* ``kernel_inject``: what DeepSpeed 0.19.8's kernel injection needs for XLM-R (policy
  registration, tensor-returning layer adapter, additive key-padding mask, replaced-module
  accounting; ``NothingReplacedError``).
* ``parity``: outputs vs fp32 torch-eager on padded and unpadded batches (always with a
  synthetic padded one), tolerances per precision; ``sharpen`` makes random weights able to
  show a wrong engine; ``gate`` marks an engine failed.
* ``timing``: workloads (task eval sets or seeded synthetic), device-synchronised
  throughput (samples/s and useful tokens/s) and latency percentiles, ``benchmark_engines`` (build -> warm-up -> parity ->
  time, one engine at a time).

Importing this package loads neither DeepSpeed nor the kernels; each engine imports what
it needs when it is built.

    from stilts_ds.inference.engines import build_engine
    from stilts_ds.inference.timing import Workload, benchmark_engines
"""
