"""Training engine: the only home of deepspeed and ray for training.

Modules:

- ``ds_config``: load a ZeRO base JSON from ``ds_configs/`` and merge the experiment's
  batch size, learning rate, schedule and precision into it (``merge_ds_config``), then
  write the merged JSON into the run directory (``write_merged``).

Import the submodule you need (``from stilts_ds.engine.ds_config import merge_ds_config``);
this package file imports nothing, so loading one engine module never starts Ray or
DeepSpeed as a side effect.
"""
