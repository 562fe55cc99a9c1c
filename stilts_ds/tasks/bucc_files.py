"""The official BUCC 2018 files -> local ``bucc`` rows: a thin wrapper of `stilts-ds convert bucc`.

    stilts-ds convert bucc BUCC2018_DIR --data-dir DATA_DIR      # the command to use
    python -m stilts_ds.tasks.bucc_files BUCC2018_DIR DATA_DIR   # the same, kept for old scripts
    # then, in the study config:  data: {local_tasks: {bucc: DATA_DIR}}

The converter (what it reads, why every sentence is kept) is ``stilts_ds.tasks.convert.bucc``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from stilts_ds.errors import StiltsError
from stilts_ds.tasks.convert.bucc import LANGS, SPLITS, bucc_rows  # noqa: F401  (the old public names)


def convert(source: Path, data_dir: Path) -> list[Path]:
    """Every (language, split) whose three files are under ``source``; at least one."""
    from stilts_ds.tasks.convert import convert as run

    return run("bucc", source, data_dir).written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m stilts_ds.tasks.bucc_files BUCC2018_DIR DATA_DIR "
                 "(or: stilts-ds convert bucc BUCC2018_DIR --data-dir DATA_DIR)")
    try:
        for path in convert(Path(sys.argv[1]), Path(sys.argv[2])):
            print(path)
    except StiltsError as e:
        sys.exit(f"error: {e}")
