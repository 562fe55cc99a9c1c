"""Task data, from raw rows to training batches (plain Python and numpy; never deepspeed or ray).

Modules:

- ``sources``: read a task's raw rows from the hub or a local directory (default: the
  bundled fixtures, ``FIXTURES_DIR``) through the task's reader.
- ``prepare``: the prepare stage, featurizing every requested (task, split, language).
- ``cache``: the on-disk feature cache those features are written to and read from.
- ``sampler``: multi-task sampling weights and data-parallel row batching.

Import the submodule you need (``from stilts_ds.data.sources import load_examples``); this
package file imports nothing.
"""
