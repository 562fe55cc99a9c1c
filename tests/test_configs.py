"""Every shipped config parses and says what it claims to."""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DS_CONFIGS = sorted(p for p in (ROOT / "ds_configs").glob("*.json") if not p.name.startswith("inference_"))
INFERENCE_CONFIGS = sorted((ROOT / "ds_configs").glob("inference_*.json"))


def test_ds_configs_exist():
    assert {p.name for p in DS_CONFIGS} >= {"zero1.json", "zero2.json", "zero3.json", "zero2_offload.json"}


@pytest.mark.parametrize("path", DS_CONFIGS, ids=lambda p: p.name)
def test_ds_config_parses(path):
    cfg = json.loads(path.read_text())
    stage = cfg["zero_optimization"]["stage"]
    assert stage in (1, 2, 3)
    if "zero" in path.stem:
        assert path.stem.startswith(f"zero{stage}")
    # Batch size and learning rate come from the experiment config, never from here.
    assert not {"train_batch_size", "train_micro_batch_size_per_gpu", "optimizer", "scheduler"} & set(cfg)


@pytest.mark.parametrize("path", INFERENCE_CONFIGS, ids=lambda p: p.name)
def test_inference_config_parses(path):
    cfg = json.loads(path.read_text())
    assert cfg["dtype"] == path.stem.split("_")[1]  # inference_fp16.json holds dtype fp16
    assert cfg["tensor_parallel"]["tp_size"] == 1


def test_inference_configs_exist():
    assert {p.name for p in INFERENCE_CONFIGS} == {"inference_fp32.json", "inference_fp16.json", "inference_bf16.json"}
