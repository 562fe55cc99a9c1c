"""merge_ds_config's rules, the atomic write, and one real deepspeed.initialize on the result.

The last test initialises DeepSpeed at world size 1 on its CPU accelerator, in a fresh
interpreter (a subprocess), so no process group of this pytest process is in its way.
On a machine that has never run DeepSpeed it first JIT-builds the shm comm op (about 30-120 s,
cached in ~/.cache/torch_extensions afterwards); it passes a torch optimizer so no Adam op
is built.
"""
import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch

from stilts_ds.engine import ds_config as dsc
from stilts_ds.engine.ds_config import (
    OWNED_KEYS,
    client_optimizer,
    load_base,
    merge_ds_config,
    param_groups,
    resolve_batch,
    write_merged,
)
from stilts_ds.errors import StiltsError

ROOT = Path(__file__).resolve().parents[2]
BASES = sorted(p.stem for p in (ROOT / "ds_configs").glob("*.json") if not p.stem.startswith("inference_"))
ZERO2 = {"zero_optimization": {"stage": 2}, "gradient_clipping": 1.0}


def merge(base=None, **kw):
    args = dict(global_batch=32, micro_batch=8, world_size=2, lr=2e-5, total_steps=100, precision="fp32")
    args.update(kw)
    return merge_ds_config(ZERO2 if base is None else base, **args)


# -- batch arithmetic ------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, world, expected",
    [
        ((32, 8, None), 2, (32, 8, 2)),  # global + micro -> accum
        ((32, None, 4), 2, (32, 4, 4)),  # global + accum -> micro
        ((None, 8, 4), 2, (64, 8, 4)),  # micro + accum -> global
        ((64, 8, 4), 2, (64, 8, 4)),  # all three, consistent
        ((16, 16, None), 1, (16, 16, 1)),
        ((48, 2, None), 8, (48, 2, 3)),
    ],
)
def test_any_two_batch_numbers_determine_the_third(given, world, expected):
    assert resolve_batch(*given, world) == expected
    cfg = merge(global_batch=given[0], micro_batch=given[1], grad_accum=given[2], world_size=world)
    got = (cfg["train_batch_size"], cfg["train_micro_batch_size_per_gpu"], cfg["gradient_accumulation_steps"])
    assert got == expected


def test_three_contradictory_batch_numbers_are_rejected_with_the_numbers():
    with pytest.raises(StiltsError, match=r"micro_batch 8 x grad_accum 4 x world_size 2 = 64, not global_batch 32.*set only two"):
        merge(global_batch=32, micro_batch=8, grad_accum=4, world_size=2)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(global_batch=30, micro_batch=8, world_size=2), r"global_batch 30 is not divisible by micro_batch 8 x world_size 2 = 16"),
        (dict(global_batch=30, micro_batch=None, grad_accum=4, world_size=2), r"not divisible by grad_accum 4 x world_size 2 = 8"),
        (dict(global_batch=32, micro_batch=None), "underdetermined.*set two of"),
        (dict(global_batch=None, micro_batch=None), "underdetermined"),
        (dict(micro_batch=0), "micro_batch must be a positive integer"),
        (dict(global_batch=-32), "global_batch must be a positive integer"),
        (dict(grad_accum=True, global_batch=None), "grad_accum must be a positive integer"),
        (dict(world_size=0), "world_size must be a positive integer"),
    ],
)
def test_bad_batch_numbers(kw, match):
    with pytest.raises(StiltsError, match=match):
        merge(**kw)


# -- what the base JSON may not hold ---------------------------------------------------


@pytest.mark.parametrize("key", sorted(OWNED_KEYS))
def test_base_must_not_set_experiment_keys(key):
    base = dict(ZERO2, **{key: 1})
    with pytest.raises(StiltsError, match=rf"'{key}' must not be in the DeepSpeed JSON; set it in the experiment config"):
        merge(base)


def test_error_names_the_base_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(dict(ZERO2, optimizer={"type": "Adam"})))
    with pytest.raises(StiltsError, match=rf"{path}: 'optimizer'"):
        merge(str(path))


def test_base_is_not_modified():
    base = json.loads(json.dumps(ZERO2))
    merge(base, precision="bf16", ds_optimizer=True)
    assert base == ZERO2


# -- offload ---------------------------------------------------------------------------


def test_optimizer_offload_needs_zero():
    base = {"zero_optimization": {"stage": 0, "offload_optimizer": {"device": "cpu"}}}
    with pytest.raises(StiltsError, match="offload_optimizer .*needs ZeRO stage 1, 2 or 3, but stage is 0"):
        merge(base)


@pytest.mark.parametrize("stage", [1, 2])
def test_param_offload_needs_stage_3(stage):
    base = {"zero_optimization": {"stage": stage, "offload_param": {"device": "cpu"}}}
    with pytest.raises(StiltsError, match=f"offload_param .*needs ZeRO stage 3, but stage is {stage}"):
        merge(base)


def test_param_offload_at_stage_3_is_fine_and_device_none_is_no_offload():
    merge({"zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}}})
    cfg = merge({"zero_optimization": {"stage": 0, "offload_optimizer": {"device": "none"}}})
    assert "optimizer" not in cfg


def test_optimizer_offload_brings_the_deepspeed_optimizer_block():
    cfg = merge("zero2_offload")
    assert cfg["optimizer"] == {
        "type": "AdamW",
        "params": {"lr": 2e-5, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01},
    }
    with pytest.raises(StiltsError, match="offload_optimizer .*DeepSpeedCPUAdam.*ds_optimizer"):
        merge("zero2_offload", ds_optimizer=False)


def test_optimizer_offload_with_a_client_optimizer_when_the_json_opts_out():
    base = load_base("zero2_offload")
    base["zero_force_ds_cpu_optimizer"] = False
    assert "optimizer" not in merge(base, ds_optimizer=False)


def test_no_optimizer_block_by_default_and_one_on_request():
    assert "optimizer" not in merge()
    cfg = merge(ds_optimizer=True, lr=3e-5, weight_decay=0.0)
    assert cfg["optimizer"]["params"]["lr"] == 3e-5 and cfg["optimizer"]["params"]["weight_decay"] == 0.0


# -- schedule and warmup ---------------------------------------------------------------


def test_linear_schedule_is_warmup_decay():
    cfg = merge(lr=1e-5, warmup_ratio=0.1, total_steps=1000)
    assert cfg["scheduler"] == {
        "type": "WarmupDecayLR",
        "params": {
            "warmup_min_lr": 0.0,
            "warmup_max_lr": 1e-5,
            "warmup_num_steps": 100,
            "warmup_type": "linear",
            "total_num_steps": 1000,
        },
    }


def test_constant_schedule_is_warmup_lr():
    cfg = merge(schedule="constant", lr=1e-5, warmup_steps=50)
    assert cfg["scheduler"] == {
        "type": "WarmupLR",
        "params": {"warmup_min_lr": 0.0, "warmup_max_lr": 1e-5, "warmup_num_steps": 50, "warmup_type": "linear"},
    }


def test_warmup_ratio_rounds_up_and_absent_warmup_is_one_step():
    assert merge(warmup_ratio=0.06, total_steps=1001)["scheduler"]["params"]["warmup_num_steps"] == 61
    # DeepSpeed rejects warmup_num_steps=0, so "no warmup" is written as 1
    assert merge()["scheduler"]["params"]["warmup_num_steps"] == 1
    assert merge(warmup_steps=0)["scheduler"]["params"]["warmup_num_steps"] == 1


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(warmup_ratio=0.1, warmup_steps=10), "both warmup_ratio=0.1 and warmup_steps=10 are set; set only one"),
        (dict(warmup_ratio=1.5), "warmup_ratio must be a fraction"),
        (dict(warmup_steps=-1), "warmup_steps must be a non-negative integer"),
        (dict(warmup_steps=101, total_steps=100), "warmup_steps 101 exceeds total_steps 100"),
        (dict(total_steps=0), "total_steps must be a positive integer"),
        (dict(schedule="cosine"), "unknown schedule 'cosine'; use one of linear, constant"),
        (dict(precision="fp8"), "unknown precision 'fp8'; use one of fp32, fp16, bf16"),
        (dict(lr=0), "lr must be a positive number"),
        (dict(lr=float("nan")), "lr must be a positive number"),
        (dict(weight_decay=-0.1), "weight_decay must be a non-negative number"),
    ],
)
def test_bad_schedule_settings(kw, match):
    with pytest.raises(StiltsError, match=match):
        merge(**kw)


def _lrs(cfg, steps):
    """Learning rates DeepSpeed's own scheduler class produces from the merged params."""
    from deepspeed.runtime import lr_schedules

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = getattr(lr_schedules, cfg["scheduler"]["type"])(opt, **cfg["scheduler"]["params"])
    out = []
    for _ in range(steps):
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_deepspeed_schedulers_follow_the_merged_params():
    pytest.importorskip("deepspeed")
    linear = _lrs(merge(lr=1.0, warmup_steps=4, total_steps=12), 13)
    assert linear[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])  # linear warmup from 0
    assert linear[8] == pytest.approx(0.5) and linear[12] == pytest.approx(0.0)  # linear decay to 0
    assert _lrs(merge(schedule="constant", lr=1.0), 5) == pytest.approx([1.0] * 5)  # exactly constant
    assert _lrs(merge(schedule="constant", lr=1.0, warmup_steps=2), 4) == pytest.approx([0.0, 0.5, 1.0, 1.0])


# -- precision and clipping ------------------------------------------------------------


def test_precision_blocks():
    assert "fp16" not in merge() and "bf16" not in merge()
    fp16 = merge(precision="fp16")
    assert fp16["fp16"]["enabled"] is True and fp16["fp16"]["loss_scale"] == 0  # dynamic loss scaling
    assert {"initial_scale_power", "loss_scale_window", "hysteresis", "min_loss_scale"} <= set(fp16["fp16"])
    assert "bf16" not in fp16
    bf16 = merge(precision="bf16")
    assert bf16["bf16"] == {"enabled": True} and "fp16" not in bf16


def test_grad_clip_keeps_the_base_value_agrees_or_is_rejected():
    assert merge()["gradient_clipping"] == 1.0
    assert merge(grad_clip=1.0)["gradient_clipping"] == 1.0
    assert merge({"zero_optimization": {"stage": 1}}, grad_clip=0.5)["gradient_clipping"] == 0.5
    with pytest.raises(StiltsError, match="gradient_clipping is 1.0 there but grad_clip is 0.5"):
        merge(grad_clip=0.5)


# -- every shipped base ----------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
@pytest.mark.parametrize("base", BASES)
def test_every_shipped_base_merges_and_deepspeed_accepts_it(base, precision):
    cfg = merge_ds_config(
        base, global_batch=16, micro_batch=4, world_size=1, lr=1e-5, warmup_ratio=0.1, total_steps=200, precision=precision
    )
    assert json.loads(json.dumps(cfg)) == cfg  # plain JSON
    DeepSpeedConfig = pytest.importorskip("deepspeed.runtime.config").DeepSpeedConfig
    ds = DeepSpeedConfig(cfg)  # DeepSpeed's own validation, incl. its batch assertion at world size 1
    assert (ds.train_batch_size, ds.train_micro_batch_size_per_gpu, ds.gradient_accumulation_steps) == (16, 4, 4)
    assert ds.float16_config.enabled == (precision == "fp16")
    assert ds.bfloat16_config.enabled == (precision == "bf16")
    assert ds.scheduler_name == "WarmupDecayLR"


# -- loading and writing ---------------------------------------------------------------


def test_load_base_by_name_by_file_name_and_by_path(tmp_path):
    assert load_base("zero2") == load_base("zero2.json") == json.loads((ROOT / "ds_configs/zero2.json").read_text())
    path = tmp_path / "custom.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    assert load_base(path) == load_base(str(path)) == {"zero_optimization": {"stage": 1}}
    assert merge(path)["zero_optimization"] == {"stage": 1}


def test_unknown_base_lists_what_exists():
    with pytest.raises(StiltsError, match="unknown DeepSpeed base config 'zero9'.*zero1, zero2, zero2_offload, zero3"):
        load_base("zero9")


def test_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "zero_optimization": {"stage": 2},\n  oops\n}')
    with pytest.raises(StiltsError, match=rf"{path}:3: not valid JSON"):
        load_base(path)
    path.write_text("[1, 2]")
    with pytest.raises(StiltsError, match="must be a JSON object"):
        load_base(path)


def test_write_merged_writes_run_dir_ds_config(tmp_path):
    cfg = merge(precision="bf16")
    out = write_merged(cfg, tmp_path / "runs" / "r1")
    assert out == tmp_path / "runs" / "r1" / "ds_config.json"
    assert json.loads(out.read_text()) == cfg
    assert os.listdir(out.parent) == ["ds_config.json"]  # no temporary left behind
    cfg2 = merge(precision="fp16")
    write_merged(cfg2, out.parent)
    assert json.loads(out.read_text()) == cfg2


def test_write_merged_is_atomic(tmp_path, monkeypatch):
    first = merge()
    out = write_merged(first, tmp_path)

    def crash(src, dst):
        assert Path(src).parent == tmp_path and Path(src).read_text().strip()  # full temp file, same dir
        raise OSError("disk pulled")

    monkeypatch.setattr(dsc.os, "replace", crash)
    with pytest.raises(OSError, match="disk pulled"):
        write_merged(merge(precision="fp16"), tmp_path)
    assert json.loads(out.read_text()) == first  # the previous file is untouched
    assert os.listdir(tmp_path) == ["ds_config.json"]  # and the temporary is gone


# -- client optimizer ------------------------------------------------------------------


def test_client_optimizer_matches_the_block_and_skips_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    opt = client_optimizer(model, lr=1e-3, weight_decay=0.1)
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and [p.shape for p in decay["params"]] == [(3, 4)]
    assert no_decay["weight_decay"] == 0.0 and len(no_decay["params"]) == 3  # bias, LN weight, LN bias
    assert decay["betas"] == dsc.ADAMW_BETAS and decay["eps"] == dsc.ADAMW_EPS
    assert len(param_groups(list(model.parameters()), 0.1)) == 2


def test_merging_needs_neither_deepspeed_nor_torch():
    import subprocess
    import sys

    code = (
        "import sys; from stilts_ds.engine.ds_config import merge_ds_config; "
        "merge_ds_config('zero3', global_batch=8, micro_batch=4, world_size=2, lr=1e-5, total_steps=10, precision='bf16'); "
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('deepspeed', 'ray', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the real thing --------------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _initialize_and_step(precision: str, workdir: str) -> dict:
    """deepspeed.initialize on the merged zero2 config and three optimizer steps; what the
    test checks, as plain values. Runs in a fresh interpreter (see the test below)."""
    import deepspeed

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    cfg = merge_ds_config(
        "zero2", micro_batch=2, grad_accum=2, world_size=1, lr=0.1, warmup_steps=2, total_steps=6, precision=precision
    )
    path = write_merged(cfg, Path(workdir))
    before = [p.detach().clone().float() for p in model.parameters()]

    t0 = time.perf_counter()
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, optimizer=client_optimizer(model, lr=0.1, weight_decay=0.01), config=str(path)
    )
    elapsed = time.perf_counter() - t0
    dtype = next(engine.module.parameters()).dtype
    lrs = []
    for _ in range(3):  # 3 optimizer steps of 2 micro-batches each
        for _ in range(2):
            x = torch.randn(2, 8, dtype=dtype)
            loss = engine(x).float().pow(2).mean()
            engine.backward(loss)
            engine.step()
        lrs.append(engine.get_lr()[0])
    after = [p.detach().float() for p in engine.module.parameters()]
    return {
        "initialize_s": elapsed,
        "world_size": torch.distributed.get_world_size(),
        "zero_stage": engine.zero_optimization_stage(),
        "batch": [engine.train_batch_size(), engine.train_micro_batch_size_per_gpu(),
                  engine.gradient_accumulation_steps()],
        "scheduler": type(scheduler).__name__,
        "bf16": engine.bfloat16_enabled(),
        "fp16": engine.fp16_enabled(),
        "dtype": str(dtype),
        "lrs": lrs,
        "global_steps": engine.global_steps,
        "stepped": any(not torch.equal(a, b) for a, b in zip(before, after)),
    }


# The child: this file loaded by path (tests/ is no package), the function above, its result
# as the last stdout line (DeepSpeed logs to stdout too).
_CHILD = (
    "import importlib.util, json, sys\n"
    "spec = importlib.util.spec_from_file_location('ds_config_child', sys.argv[1])\n"
    "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
    "print('RESULT ' + json.dumps(mod._initialize_and_step(sys.argv[2], sys.argv[3])), flush=True)\n"
)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_deepspeed_initialize_accepts_the_merged_zero2_config(precision, tmp_path):
    # In a fresh interpreter, always: world size 1 needs a process group of its own, and this
    # pytest process may already hold one (an in-process launch's LocalRuntime group outlives
    # the run) or a later test may rely on one. Skipping when a group existed made the only
    # real deepspeed.initialize test pass silently in some test orders; tearing down another
    # test's group would make the order matter the other way.
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE",
                                                               "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    # Up to 10 minutes: a machine that never ran DeepSpeed JIT-builds its shm op first (module docstring).
    res = subprocess.run([sys.executable, "-c", _CHILD, __file__, precision, str(tmp_path)], env=env, cwd=ROOT,
                         stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600, check=False)
    lines = [line for line in res.stdout.splitlines() if line.startswith("RESULT ")]
    assert res.returncode == 0 and lines, f"exit {res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-8000:]}"
    out = json.loads(lines[-1][len("RESULT "):])
    print(f"deepspeed.initialize ({precision}, zero2, world 1): {out['initialize_s']:.2f} s")

    assert out["world_size"] == 1
    assert out["zero_stage"] == 2
    assert out["batch"] == [4, 2, 2]
    assert out["scheduler"] == "WarmupDecayLR"
    assert out["bf16"] == (precision == "bf16") and not out["fp16"]
    assert out["dtype"] == str(torch.bfloat16 if precision == "bf16" else torch.float32)
    assert out["global_steps"] == 3
    # linear warmup over 2 steps from 0, then linear decay: lr after steps 1, 2, 3
    assert out["lrs"] == pytest.approx([0.0, 0.05, 0.1])
    assert out["stepped"]  # the optimizer really stepped


def test_inference_configs_are_not_training_bases():
    assert not [b for b in dsc.available_bases() if b.startswith("inference_")]
    with pytest.raises(StiltsError, match="DeepSpeed-Inference config"):
        dsc.load_base("inference_fp16")
