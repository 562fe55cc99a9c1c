"""The experiment YAMLs in configs/: each parses, says what it claims, and bad ones fail loudly.

A bad config must fail in ``load_config`` (before any worker starts) with a ``ConfigError``
whose message names the offending option, so a typo never silently becomes a default.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from stilts_ds.config import ConfigError, ExperimentConfig, load_config
from stilts_ds.engine.ds_config import resolve_batch
from stilts_ds.errors import StiltsError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
PAPER = ROOT / "configs" / "paper.yaml"
QUICKSTART = ROOT / "configs" / "quickstart.yaml"

INTERMEDIATE = ("anli_plus", "mnli", "qqp", "squad_v1", "squad_v2", "hellaswag", "cosmosqa",
                "commonsenseqa", "ccg")
FINETUNE = ("xnli", "pawsx", "udpos", "panx", "xquad", "mlqa", "tydiqa")
EVALUATE = FINETUNE + ("bucc", "tatoeba")

# jiant's XTREME recipe, jiant/scripts/benchmarks/xtreme/subscripts/d_write_configs.sh:
# task -> (--epochs, --train_batch_size x --gradient_accumulation_steps)
JIANT_XTREME = {
    "xnli": (2, 4 * 8), "pawsx": (5, 4 * 8), "udpos": (10, 4 * 8), "panx": (10, 4 * 8),
    "xquad": (2, 4 * 4), "mlqa": (2, 4 * 4), "tydiqa": (2, 4 * 4),
}


@pytest.fixture(scope="module")
def paper() -> ExperimentConfig:
    return load_config(PAPER)


@pytest.fixture(scope="module")
def quickstart() -> ExperimentConfig:
    return load_config(QUICKSTART)


# ----------------------------------------------------------------------------- every config parses
def test_shipped_configs_exist():
    assert {p.name for p in CONFIGS} >= {"quickstart.yaml", "paper.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    # Every finetune recipe resolves (per_task overrides are valid TrainConfig fields).
    for task in cfg.finetune.tasks:
        assert cfg.finetune.recipe(task).tasks == (task,)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_batches_resolve_at_its_world_size(path):
    """Batch settings must resolve for the configured worker count, or the run fails after data prep."""
    cfg = load_config(path)
    world = cfg.cluster.num_workers
    recipes = ([cfg.intermediate] if cfg.intermediate else []) + [cfg.finetune.recipe(t) for t in cfg.finetune.tasks]
    for train in recipes:
        # The pipeline's rule (stilts_ds/studies/pipeline.py): accumulation 1 unless either is set.
        accum = train.grad_accum if (train.grad_accum or train.global_batch) else 1
        resolve_batch(train.global_batch, train.micro_batch, accum, world)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_numbers_are_numbers(path):
    """YAML 1.1 reads '1e-5' (no dot) as a string, and the config does not type-check it."""
    cfg = load_config(path)
    recipes = ([cfg.intermediate] if cfg.intermediate else []) + [cfg.finetune.recipe(t) for t in cfg.finetune.tasks]
    for train in recipes:
        for name in ("lr", "warmup_ratio", "weight_decay", "epochs"):
            value = getattr(train, name)
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (path.name, name, value)


# ----------------------------------------------------------------------------- paper.yaml
def test_paper_model_and_data(paper):
    assert paper.model.encoder == "FacebookAI/xlm-roberta-large"
    assert paper.model.tokenizer_name() == "FacebookAI/xlm-roberta-large"
    assert paper.data.source == "hub"
    assert paper.data.max_length == 256
    assert paper.data.qa_max_length == 384


def test_paper_intermediate_recipe(paper):
    inter = paper.intermediate
    assert inter is not None
    assert inter.tasks == INTERMEDIATE and len(inter.tasks) == 9
    assert inter.lr == pytest.approx(1e-5)
    assert inter.epochs == 3 and inter.max_steps is None
    assert inter.warmup_ratio == pytest.approx(0.1)
    assert inter.schedule == "linear"
    # jiant guides/projects/xstilts.md: --train_batch_size 4, no gradient accumulation.
    assert resolve_batch(inter.global_batch, inter.micro_batch, inter.grad_accum, paper.cluster.num_workers)[0] == 4


def test_paper_finetune_follows_jiant_xtreme_recipe(paper):
    assert paper.finetune.tasks == FINETUNE + ("xcopa",) and len(paper.finetune.tasks) == 8
    world = paper.cluster.num_workers
    for task, (epochs, rows_per_step) in JIANT_XTREME.items():
        recipe = paper.finetune.recipe(task)
        assert recipe.epochs == epochs, task
        assert recipe.lr == pytest.approx(1e-5), task
        assert recipe.warmup_ratio == pytest.approx(0.1), task
        assert recipe.schedule == "linear", task
        assert recipe.global_batch == rows_per_step, task
        # Same rows per optimizer step on the configured cluster and on one GPU.
        for ws in sorted({1, world}):
            global_batch, micro, accum = resolve_batch(recipe.global_batch, recipe.micro_batch, recipe.grad_accum, ws)
            assert global_batch == micro * accum * ws == rows_per_step, (task, ws)


def test_paper_evaluate(paper):
    assert paper.evaluate.tasks == EVALUATE + ("xcopa",) and len(paper.evaluate.tasks) == 10
    assert paper.evaluate.split == "test"
    assert paper.evaluate.retrieval_layer == 14


def test_paper_cluster_and_deepspeed(paper):
    c = paper.cluster
    assert c.use_gpu and c.multi_node
    assert c.placement_strategy == "PACK" and c.max_concurrent_jobs == 16  # jobs side by side, each packed
    assert c.max_failures == 3
    assert c.storage_path and ("://" in c.storage_path or c.storage_path.startswith("/"))
    assert paper.deepspeed.base == "zero2"
    assert paper.deepspeed.precision == "bf16"


def test_paper_has_run_command_and_cites_every_number():
    text = PAPER.read_text(encoding="utf-8")
    # The file opens with the exact command that runs it.
    assert "#   stilts-ds pipeline --config configs/paper.yaml" in text.splitlines()[:5]
    # Every line that sets a number carries a comment, on that line or the comment lines just above it.
    lines = text.splitlines()
    number = re.compile(r"^\s*[\w.]+:\s*(\{.*\d.*\}|-?\d[\d.e+-]*)\s*(#.*)?$")
    for i, line in enumerate(lines):
        if number.match(line) and "#" not in line:
            assert i > 0 and lines[i - 1].lstrip().startswith("#"), f"paper.yaml:{i + 1} has no comment: {line!r}"


def test_paper_documented_overrides_parse():
    """The command lines in paper.yaml's comments: no ccg, the faster batch."""
    eight = load_config(PAPER, {"skip_tasks": ["ccg"]})
    assert eight.intermediate.tasks == INTERMEDIATE[:-1]
    faster = load_config(PAPER, {"cluster.num_workers": 8, "intermediate.global_batch": 8})
    resolve_batch(faster.intermediate.global_batch, faster.intermediate.micro_batch, None, 8)


def test_skip_tasks_reaches_every_arm_and_drops_the_emptied_ones():
    """Without CCGbank: ccg leaves the base list and every arm's list; its single-task arm
    goes (what is left would be a second baseline); translated copies go with their base."""
    cfg = load_config(PAPER, {"skip_tasks": ["ccg"]})
    arms = cfg.arm_configs()
    assert "ccg" not in arms and {"baseline", "multi-task", "plus-mlm", "plus-translated"} <= set(arms)
    for arm in arms.values():
        assert "ccg" not in (arm.config.intermediate.tasks if arm.config.intermediate else ())
    assert arms["plus-mlm"].config.intermediate.tasks == (*INTERMEDIATE[:-1], "mlm")
    assert arms["plus-mlm"].config.intermediate.weights == {"mlm": 0.1}
    no_mnli = load_config(PAPER, {"skip_tasks": ["mnli"]}).arm_configs()
    assert "mnli" not in no_mnli
    assert not [t for t in no_mnli["plus-translated"].config.intermediate.tasks if t.startswith("mnli")]
    with pytest.raises(ConfigError, match=r"skip_tasks: unknown task 'cgg'.*Did you mean 'ccg'"):
        load_config(PAPER, {"skip_tasks": ["cgg"]})
    with pytest.raises(ConfigError, match="leaves intermediate.tasks empty"):
        load_config(QUICKSTART, {"skip_tasks": list(INTERMEDIATE)})


def test_a_set_that_arms_override_warns_naming_them():
    """--set of a key that arms set themselves does not reach them: say so, naming the arms."""
    from stilts_ds.config import ConfigWarning

    with pytest.warns(ConfigWarning, match=r"intermediate.tasks does not reach arm\(s\) anli_plus, .*plus-translated"):
        load_config(PAPER, {"intermediate.tasks": list(INTERMEDIATE[:-1])})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        load_config(PAPER, {"intermediate.lr": 2e-5, "cluster.num_workers": 2})  # reaches every arm


def test_a_batch_the_workers_cannot_split_fails_at_load_time():
    """4 rows per step over 8 workers: refused when the config loads, naming the phase and
    the worker count, not at the first phase-1 launch after the baseline arm has run."""
    with pytest.raises(ConfigError, match=r"paper.yaml: intermediate: global_batch 4 is not divisible .*"
                                          r"cluster.num_workers=8"):
        load_config(PAPER, {"cluster.num_workers": 8})
    with pytest.raises(ConfigError, match=r"finetune \(xnli\): global_batch 32 .*num_workers=3"):
        load_config(PAPER, {"cluster.num_workers": 3, "intermediate.global_batch": 3})
    # A stage of a recipe (xcopa's SIQA stage) is checked too.
    with pytest.raises(ConfigError, match=r"finetune \(siqa\): global_batch 6 .*num_workers=2"):
        load_config(PAPER, {"cluster.num_workers": 2, "finetune.per_task.siqa.global_batch": 6})


# ----------------------------------------------------------------------------- quickstart.yaml
def test_quickstart_is_the_laptop_run(quickstart):
    assert quickstart.model.encoder == "tiny"
    assert quickstart.model.tokenizer == "bundled"
    assert quickstart.data.source == "local"
    assert quickstart.cluster.num_workers == 2
    assert quickstart.cluster.use_gpu is False
    assert quickstart.cluster.multi_node is False
    assert quickstart.deepspeed.base == "zero2"
    assert quickstart.intermediate.tasks == INTERMEDIATE
    assert quickstart.finetune.tasks == FINETUNE + ("xcopa",)
    assert quickstart.evaluate.tasks == EVALUATE + ("xcopa", "mewslix", "lareqa")
    arms = quickstart.arm_configs()
    assert list(arms) == ["english", "multilingual"]
    assert not arms["english"].multilingual and arms["english"].config.intermediate.tasks == INTERMEDIATE
    multi = arms["multilingual"].config.intermediate
    assert arms["multilingual"].multilingual and multi.tasks[:9] == INTERMEDIATE and "mlm" in multi.tasks
    assert multi.weights == {"mlm": 0.2} and any("@" in t for t in multi.tasks)


def test_paper_declares_the_study_arms(paper):
    arms = paper.arm_configs()
    assert arms["baseline"].config.intermediate is None
    for task in INTERMEDIATE:  # the paper's single-task arms
        assert arms[task].config.intermediate.tasks == (task,)
    assert arms["multi-task"].config.intermediate.tasks == INTERMEDIATE
    assert "mlm" in arms["plus-mlm"].config.intermediate.tasks and arms["plus-mlm"].multilingual
    translated = [t for t in arms["plus-translated"].config.intermediate.tasks if "@" in t]
    assert len(translated) == 14 and all(t.startswith("mnli@") for t in translated)
    # Arms share the feature cache; each has its own run dir.
    assert {a.config.cache_dir() for a in arms.values()} == {paper.cache_dir()}
    assert len({a.config.run_dir for a in arms.values()}) == len(arms)


# ----------------------------------------------------------------------------- bad configs
def _base() -> dict:
    return yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _fails(path: Path, *needles: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message, message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    return message


def test_base_of_bad_configs_is_good(tmp_path):
    load_config(_write(tmp_path, _base()))


def test_unknown_top_level_key(tmp_path):
    data = _base()
    data["clustr"] = data.pop("cluster")
    _fails(_write(tmp_path, data), "clustr", "unknown option")


def test_unknown_nested_key(tmp_path):
    data = _base()
    data["intermediate"]["learning_rate"] = data["intermediate"].pop("lr")
    _fails(_write(tmp_path, data), "intermediate", "learning_rate", "unknown option")


def test_unknown_per_task_key(tmp_path):
    data = _base()
    data["finetune"]["per_task"] = {"xnli": {"epoch": 3}}
    _fails(_write(tmp_path, data), "finetune.per_task.xnli", "epoch")


def test_staged_recipes_and_their_per_task_keys(tmp_path):
    data = _base()
    assert "xcopa" in data["finetune"]["tasks"]
    data["finetune"]["per_task"] = {"siqa": {"epochs": 2}}  # a stage of xcopa's recipe
    cfg = load_config(_write(tmp_path, data))
    assert cfg.finetune.stages("xcopa") == ("siqa", "xcopa") and cfg.finetune.stages("xnli") == ("xnli",)
    assert cfg.finetune.recipe("siqa").epochs == 2 and cfg.finetune.recipe("siqa").tasks == ("siqa",)
    data["finetune"]["staged"] = False
    _fails(_write(tmp_path, data, "unstaged.yaml"), "finetune.per_task names 'siqa'", "not in finetune.tasks")
    del data["finetune"]["per_task"]
    assert load_config(_write(tmp_path, data, "copa_only.yaml")).finetune.stages("xcopa") == ("xcopa",)
    data = _base()
    data["finetune"]["tasks"] = ["xnli"]
    data["finetune"]["per_task"] = {"siqa": {"epochs": 2}}
    _fails(_write(tmp_path, data, "no_xcopa.yaml"), "finetune.per_task names 'siqa'")
    data = _base()
    data["finetune"]["tasks"] = ["xcopa", "siqa"]  # a stage is not a target task: say where it runs
    _fails(_write(tmp_path, data, "siqa_target.yaml"), "'siqa' is not an XTREME task", "a stage of xcopa's recipe")


def test_multi_node_without_storage_path(tmp_path):
    data = _base()
    data["cluster"]["multi_node"] = True
    data["cluster"].pop("storage_path", None)
    _fails(_write(tmp_path, data), "cluster.multi_node", "cluster.storage_path")


@pytest.mark.parametrize("weights, needle", [({"mlmm": 0.2}, "not trained in this phase"),
                                             ({"mnli": 1.5}, "shares in (0, 1)"),
                                             ({"mnli": 0.6, "qqp": 0.5}, "leave nothing for")])
def test_bad_sampling_weights(tmp_path, weights, needle):
    data = _base()
    data["intermediate"]["weights"] = weights
    _fails(_write(tmp_path, data), "intermediate", needle)


def test_max_length_too_small(tmp_path):
    data = _base()
    data["data"]["max_length"] = 8
    _fails(_write(tmp_path, data), "data.max_length", "at least 16")


def test_multi_node_with_relative_storage_path(tmp_path):
    data = _base()
    data["cluster"].update(multi_node=True, storage_path="runs/ray")
    _fails(_write(tmp_path, data), "cluster.storage_path", "runs/ray")


def test_non_xtreme_task_in_finetune(tmp_path):
    data = _base()
    data["finetune"]["tasks"] = ["xnli", "mnli"]
    _fails(_write(tmp_path, data), "finetune.tasks", "'mnli'", "not an XTREME task")


@pytest.mark.parametrize("task", ["bucc", "tatoeba"])
def test_retrieval_task_in_finetune(tmp_path, task):
    data = _base()
    data["finetune"]["tasks"] = ["xnli", task]
    _fails(_write(tmp_path, data), "finetune.tasks", repr(task), "no training data")


def test_fp8_precision(tmp_path):
    data = _base()
    data["deepspeed"]["precision"] = "fp8"
    _fails(_write(tmp_path, data), "deepspeed.precision", "'fp8'")


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\n"
                    "cluster:\n"
                    "  num_workers: 2\n"
                    "  use_gpu: false: true\n"        # line 4: a second ':' in a plain scalar
                    "deepspeed:\n"
                    "  base: zero2\n", encoding="utf-8")
    message = _fails(path, "not valid YAML")
    assert f"{path}:4:" in message, message


def test_missing_config_file(tmp_path):
    _fails(tmp_path / "nope.yaml", "no such config file")


def test_bad_override_is_reported(tmp_path):
    """--set goes through the same checks as the file."""
    with pytest.raises(ConfigError, match=r"deepspeed\.precision"):
        load_config(QUICKSTART, {"deepspeed.precision": "fp8"})


def test_unknown_task_name_is_reported_with_a_suggestion(tmp_path):
    data = _base()
    data["intermediate"]["tasks"] = ["squad_v3"]
    with pytest.raises(StiltsError, match=r"unknown task 'squad_v3'.*squad_v2"):
        load_config(_write(tmp_path, data))


def test_unknown_task_name_is_a_config_error(tmp_path):
    data = _base()
    data["intermediate"]["tasks"] = ["squad_v3"]
    _fails(_write(tmp_path, data), "intermediate.tasks", "squad_v3")


def test_values_are_type_checked(tmp_path):
    data = _base()
    data["intermediate"]["lr"] = "1e-5"  # YAML 1.1 reads 1e-5 as a string: accepted as the number it means
    assert load_config(_write(tmp_path, data)).intermediate.lr == 1e-5
    data["intermediate"]["micro_batch"] = "eight"
    _fails(_write(tmp_path, data), "intermediate.micro_batch", "expected an integer")


def test_evaluate_split_is_checked(tmp_path):
    data = _base()
    data.setdefault("evaluate", {})["split"] = "tset"
    _fails(_write(tmp_path, data), "evaluate.split", "tset")


def test_bad_input_that_used_to_pass_or_crash(tmp_path):
    """Each of these was accepted silently or ended in a traceback naming nothing."""
    with pytest.raises(ConfigError, match="max_steps must be at least 1, not 0"):
        load_config(QUICKSTART, {"intermediate.max_steps": 0})
    with pytest.raises(ConfigError, match=r"finetune.defaults: lr must be a positive learning rate below 1, not -0.1"):
        load_config(QUICKSTART, {"finetune.defaults.lr": -0.1})
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty.yaml: the config is empty; start from configs/quickstart.yaml"):
        load_config(empty)
    listed = tmp_path / "list.yaml"
    listed.write_text("- model\n- data\n")
    with pytest.raises(ConfigError, match=r"list.yaml: expected a mapping of sections .* got a list"):
        load_config(listed, {"cluster.num_workers": 1})
    with pytest.raises(ConfigError, match=r"--set name.x: name is 'quickstart' in .*quickstart.yaml, not a section"):
        load_config(QUICKSTART, {"name.x": 1})
    # A section the file sets to null takes the override as a new section (and is then validated).
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(QUICKSTART.read_text() + "\nintermediate: null\n")
    assert load_config(baseline).intermediate is None
    with pytest.raises(ConfigError, match="intermediate.tasks is empty"):
        load_config(baseline, {"intermediate.lr": 2e-5})
