"""Phase 1 with the multilingual alternatives, for real: DeepSpeed in-process at world size 1,
the tiny preset, tasks [mnli, mlm, mnli@de] with a fixed MLM share, then the encoder export.

    .venv/bin/python -m pytest -q tests/engine/test_multilingual_training.py
"""
import json
import math
from pathlib import Path

import pytest

from transformers import AutoModel

from stilts_ds.config import load_config
from stilts_ds.modeling import export
from stilts_ds.studies.pipeline import Study

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


# ZeRO-3 partitions the tied embedding / LM-head decoder and must gather it for the export.
@pytest.mark.parametrize("base", ["zero2", "zero3"])
def test_mnli_mlm_and_translated_mnli_train_together(tmp_path, base):
    cfg = load_config(QUICKSTART, {
        "output_dir": str(tmp_path / "run"), "cluster.num_workers": 1, "deepspeed.base": base,
        "intermediate.tasks": ["mnli", "mlm", "mnli@de"], "intermediate.weights": {"mlm": 0.3},
        "intermediate.max_steps": 16, "intermediate.log_every": 2, "intermediate.checkpoint_every": 8,
        "finetune.tasks": ["xnli"], "evaluate.tasks": ["xnli"]})
    assert cfg.intermediate.weights == {"mlm": 0.3}
    encoder = Study(cfg, in_process=True, progress=False).intermediate()
    stage = cfg.run_dir / "phase1"
    rows = [json.loads(line) for line in (stage / "tensorboard" / "metrics.jsonl").read_text().splitlines()]
    losses = {}
    for row in rows:
        if row["tag"].endswith("/loss"):
            losses.setdefault(row["tag"], []).append(row["value"])
    assert {"train/mlm/loss", "train/mnli/loss", "train/mnli@de/loss"} <= set(losses), sorted(losses)
    assert all(math.isfinite(v) for values in losses.values() for v in values)
    # MLM over the bundled ~3000-token vocabulary starts near ln(3001) ~ 8
    assert 4 < losses["train/mlm/loss"][0] < 10
    summary = json.loads((stage / "train_summary.json").read_text())
    assert summary["steps"] == 16
    info = export.read_export_info(encoder)
    assert info["trained_heads"]["mnli@de"]["head"] == "mnli" and info["trained_heads"]["mlm"]["head"] == "mlm"
    export.check_compatible(encoder, "xlm-roberta", hidden_size=64)
    model = AutoModel.from_pretrained(encoder)
    assert not any(k.startswith("lm_head") for k in model.state_dict())
