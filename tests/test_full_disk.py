"""A full disk says which path, how much space is left and what to do; nothing half-written
is left behind. Runs on a real 256 KiB tmpfs (needs root to mount one, as on CI)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stilts_ds import atomic
from stilts_ds.data import cache
from stilts_ds.tasks.features import Features


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); the test needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_a_full_disk_names_the_path_and_the_space_left(tiny_disk):
    with pytest.raises(atomic.DiskFullError, match=rf"{tiny_disk}/out/report.json: no space left on the device "
                                                   r"\(.* free of 256.0 KiB on its filesystem; this write needed "
                                                   r"1.0 MiB\). Free space there, or point"):
        atomic.write_atomic(tiny_disk / "out" / "report.json", b"x" * 2**20)
    n = 4000
    ids = np.random.default_rng(0).integers(5, 250_000, size=(n, 64), dtype=np.int32)  # 1 MiB of real tokens
    feats = Features("pair_classification", {"input_ids": ids, "lengths": np.full(n, 64, np.int32)},
                     np.array([f"row-{i}" for i in range(n)], dtype=object))
    with pytest.raises(atomic.DiskFullError, match=rf"{tiny_disk}/cache/x.features: no space left"):
        cache.write(tiny_disk / "cache" / "x.features", feats)
    assert _leftovers(tiny_disk) == [] and not cache.exists(tiny_disk / "cache" / "x.features")


def test_prepare_on_a_full_disk_is_one_line_not_a_traceback(tiny_disk):
    """The CLI prints the message (exit 2), as for any bad input."""
    import shutil

    (tiny_disk / "ballast").write_bytes(b"\0" * (shutil.disk_usage(tiny_disk).free - 8192))  # 8 KiB left
    done = subprocess.run([sys.executable, "-m", "stilts_ds.cli", "prepare", "--task", "mlqa", "--split", "test",
                           "--cache-dir", str(tiny_disk / "cache")], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert f"{tiny_disk}/cache/mlqa/" in done.stderr and "no space left on the device" in done.stderr
    assert _leftovers(tiny_disk) == [tiny_disk / "ballast"]


def test_convert_on_a_full_disk_leaves_nothing(tiny_disk):
    """`stilts-ds convert` stages every output and renames at the end: a full disk half-way
    leaves no file and no folder of its own (the converter tests' official XQuAD samples)."""
    import shutil

    from stilts_ds.tasks.convert import convert

    (tiny_disk / "ballast").write_bytes(b"\0" * (shutil.disk_usage(tiny_disk).free - 4096))
    official = Path(__file__).resolve().parent / "official" / "xquad"
    with pytest.raises(atomic.DiskFullError, match=rf"{tiny_disk}/data/xquad: no space left on the device"):
        convert("xquad", official, tiny_disk / "data")
    assert _leftovers(tiny_disk) == [tiny_disk / "ballast"] and not (tiny_disk / "data" / "xquad").exists()
