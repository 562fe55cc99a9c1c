"""The numeric precisions stilts-ds trains and serves in, named once.

    from stilts_ds.precision import PRECISIONS    # ("fp32", "fp16", "bf16")

What ``deepspeed.precision`` and ``bench.precisions`` (``config``), the DeepSpeed config merge
(``engine.ds_config``), a sweep's ``precisions`` (``studies.sweep_spec``) and the bench's
engines (``inference.engines``, which maps each name to its torch dtype) accept. A layer of its
own at the bottom of docs/architecture.md's table, importing nothing: the config must not
import the engine, nor the engine or the bench the config, yet all of them check the same names.
"""

PRECISIONS = ("fp32", "fp16", "bf16")
