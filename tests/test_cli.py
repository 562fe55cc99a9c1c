"""The stilts-ds command: task table, scoring official files, and clean errors."""
import json
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from stilts_ds.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_tasks_json_lists_all_eighteen():
    result = run("tasks", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    from stilts_ds.tasks.registry import TASKS

    assert len(rows) == len(TASKS) >= 18 + 3  # the study's 18, XTREME-R's xcopa/mewslix/lareqa, ...
    assert {"xcopa", "mewslix", "lareqa"} <= {r["name"] for r in rows}
    for row in rows:
        assert {"name", "kind", "format", "metric", "languages", "sources"} <= set(row)
    kinds = {r["name"]: r["kind"] for r in rows}
    assert sum(k == "intermediate" for k in kinds.values()) == 9
    assert {r["name"]: r["sources"] for r in rows}["ccg"] == ["local"]


def test_tasks_table():
    result = run("tasks")
    assert result.exit_code == 0
    assert "xnli" in result.output and "seqeval_f1" in result.output


def _last_json(output):
    return json.loads(output.strip().splitlines()[-1])


def test_score_xcopa_reads_json_lines_whatever_the_file_names(tmp_path):
    """XCOPA's answers are JSON lines: perfect predictions in a file named .json used to be
    read as one label per line and score 0."""
    import json

    rows = [{"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": label, "idx": i}
            for i, label in enumerate([0, 1, 1])]
    (tmp_path / "predictions.json").write_text("".join(json.dumps({"idx": r["idx"], "label": r["label"]}) + "\n"
                                                        for r in rows))
    (tmp_path / "gold.txt").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run("score", "--task", "xcopa", "--lang", "zh", "--predictions", str(tmp_path / "predictions.json"),
                 "--references", str(tmp_path / "gold.txt"))
    assert result.exit_code == 0, result.output
    assert _last_json(result.output) == {"accuracy": 100.0}


def test_score_labels(tmp_path):
    (tmp_path / "p.tsv").write_text("entailment\nneutral\ncontradiction\nneutral\n")
    (tmp_path / "g.tsv").write_text("entailment\nneutral\ncontradiction\nentailment\n")
    result = run("score", "--task", "xnli", "--lang", "de", "--predictions", str(tmp_path / "p.tsv"),
                 "--references", str(tmp_path / "g.tsv"))
    assert result.exit_code == 0, result.output
    assert _last_json(result.output) == {"accuracy": 75.0}


def test_score_tags(tmp_path):
    (tmp_path / "p.tsv").write_text("B-PER\nI-PER\nO\n\nB-LOC\nO\n")
    (tmp_path / "g.tsv").write_text("B-PER\nI-PER\nO\n\nB-ORG\nO\n")
    result = run("score", "--task", "panx", "--lang", "de", "--predictions", str(tmp_path / "p.tsv"),
                 "--references", str(tmp_path / "g.tsv"))
    assert _last_json(result.output) == pytest.approx({"f1": 50.0, "precision": 50.0, "recall": 50.0})


def test_score_qa(tmp_path):
    refs = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "The cat sat in Paris.", "qas": [
        {"id": "q1", "question": "Where?", "answers": [{"text": "Paris", "answer_start": 15}]},
        {"id": "q2", "question": "Who?", "answers": [{"text": "The cat", "answer_start": 0}]}]}]}]}
    (tmp_path / "r.json").write_text(json.dumps(refs))
    (tmp_path / "p.json").write_text(json.dumps({"q1": "in Paris", "q2": "cat"}))
    result = run("score", "--task", "xquad", "--lang", "en", "--predictions", str(tmp_path / "p.json"),
                 "--references", str(tmp_path / "r.json"))
    # q1: EM 0, F1 2*(1/2*1)/(1/2+1)=2/3; q2: 'the' is dropped -> EM 1, F1 1.
    assert _last_json(result.output) == pytest.approx({"exact_match": 50.0, "f1": (2 / 3 + 1) / 2 * 100})


def test_score_mlqa_needs_lang(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"data": []}))
    (tmp_path / "p.json").write_text("{}")
    result = CliRunner().invoke(main, ["score", "--task", "mlqa", "--predictions", str(tmp_path / "p.json"),
                                       "--references", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "lang" in result.output


def test_score_bucc(tmp_path):
    (tmp_path / "p.tsv").write_text("de-1\ten-1\nde-2\ten-3\n")
    (tmp_path / "g.tsv").write_text("de-1\ten-1\nde-2\ten-2\n")
    result = run("score", "--task", "bucc", "--lang", "de", "--predictions", str(tmp_path / "p.tsv"),
                 "--references", str(tmp_path / "g.tsv"))
    assert _last_json(result.output) == pytest.approx({"f1": 50.0, "precision": 50.0, "recall": 50.0})


@pytest.mark.parametrize("args,message", [
    (["score", "--task", "xnlii", "--predictions", "{p}", "--references", "{g}"], "unknown task 'xnlii'"),
    (["score", "--task", "xnli", "--lang", "xx", "--predictions", "{p}", "--references", "{g}"], "no language 'xx'"),
    (["score", "--task", "xnli", "--predictions", "{p}", "--references", "{short}"], "short.tsv"),
    (["prepare", "--task", "tatoeba", "--split", "train"], "has no split 'train'"),
])
def test_bad_input_exits_2_with_a_message(tmp_path, args, message):
    (tmp_path / "p.tsv").write_text("entailment\nneutral\n")
    (tmp_path / "g.tsv").write_text("entailment\nneutral\n")
    (tmp_path / "short.tsv").write_text("entailment\n")
    args = [a.format(p=tmp_path / "p.tsv", g=tmp_path / "g.tsv", short=tmp_path / "short.tsv") for a in args]
    result = CliRunner().invoke(main, args + (["--cache-dir", str(tmp_path / "c")] if args[0] == "prepare" else []))
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_console_script_is_installed():
    exe = shutil.which("stilts-ds") or str(__import__("pathlib").Path(sys.executable).parent / "stilts-ds")
    out = subprocess.run([exe, "tasks", "--json"], capture_output=True, text=True, check=True)
    from stilts_ds.tasks.registry import TASKS

    assert len(json.loads(out.stdout)) == len(TASKS)


def test_scale_options_and_their_help_come_from_the_sweep_schema():
    """Each sweep key marked as an option is a `scale` option whose help holds the schema's
    text (written once, in sweep_spec), and `scale` has no other axis options."""
    from stilts_ds.studies.sweep_spec import INFERENCE_KEYS, SWEEP_KEYS, TRAINING_KEYS

    params = {p.name: p for p in main.get_command(None, "scale").params}
    keys = {}
    for table in (SWEEP_KEYS, INFERENCE_KEYS, TRAINING_KEYS):
        keys.update({name: key for name, key in table.items() if key.option})
    assert set(params) == set(keys) | {"sweep_path", "mode", "output", "force"}
    for name, key in keys.items():
        assert key.help[1:] in params[name].help, name  # [1:]: an axis with two texts lowercases each
    assert params["ray"].opts == ["--no-ray"] and params["ray"].is_flag
    assert "Default: inference 1,8; training 8." in params["batch_sizes"].help


@pytest.mark.parametrize("args, message", [
    (["--batch-sizes", "0"], "--batch-sizes: every batch size must be at least 1, got [0]"),
    (["--precisions", "fp8"], "--precisions: 'fp8' is not one of fp32, fp16, bf16"),
    (["--seq-len", "4096"], "--seq-len 4096: the model has 514 positions, 512 usable tokens per row"),
])
def test_bench_refuses_bad_options_before_building_anything(tmp_path, args, message):
    result = run("bench", "--preset", "tiny", "--no-ray", "--output", str(tmp_path / "b"), *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "b").exists()


def test_bench_refuses_a_checkpoint_folder_without_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("bench", "--checkpoint", str(tmp_path / "empty"), "--no-ray", "--output", str(tmp_path / "b"))
    assert result.exit_code == 2 and "no config.json there, so no model" in result.output
