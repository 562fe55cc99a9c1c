"""The commands in README.md and cluster/README.md run as written.

Every ```bash block of both documents is read as a shell would (backslash continuations
joined, comments dropped), and each ``stilts-ds`` command line in it (bare, as
``.venv/bin/stilts-ds``, inside the quoted command of ``ray exec``, or after
``tools/run_study.py --``) is checked against the CLI without running it:

* the command exists and its options parse (click's own parser, types and ranges included);
* ``--config`` names a file of this repository, and the config loads with the line's
  ``--set`` values (so a documented override that fails at load time fails here) and knows
  each ``--arm``;
* paths of the quick-start run (``runs/quickstart/...``) are collected: the end-to-end test
  runs ``stilts-ds demo`` from an empty directory and checks each one exists afterwards,
  then runs the documented ``status`` and ``report`` lines against that run.

    .venv/bin/python -m pytest -q tests/test_readme_commands.py          # both
    .venv/bin/python -m pytest -q tests/test_readme_commands.py -m "not ray_cluster"   # the parse checks, 2 s
"""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from stilts_ds.cli import main
from stilts_ds.config import load_config
from stilts_ds.studies.arms import select_arms

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", ROOT / "cluster" / "README.md")
QUICKSTART_RUN = "runs/quickstart"
# Files a reader brings (their own predictions and gold files): the score examples name them.
USER_FILES = re.compile(r"^(test|gold)-\w+\.(tsv|json)$|^MLQA-\w+\.json$")
SEPARATORS = {"&&", "||", ";", "|"}


@dataclass
class Invocation:
    doc: str
    line: int
    argv: list[str]
    quickstart_paths: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: stilts-ds {shlex.join(self.argv)}"


def _logical_lines(path: Path):
    """(line number, text) of each command in the bash blocks, continuations joined."""
    in_block, pending, first = False, "", 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            in_block = line.strip() == "```bash" if not in_block else False
            continue
        if not in_block:
            continue
        if not pending:
            first = n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield first, pending + line
        pending = ""


def _split(text: str) -> list[str]:
    lex = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    lex.commenting = True
    return list(lex)


def _stilts_argvs(tokens: list[str]):
    """The argument lists given to stilts-ds in one tokenized command line."""
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "stilts-ds" or tok.endswith("/stilts-ds"):
            j = i + 1
            while j < len(tokens) and tokens[j] not in SEPARATORS:
                j += 1
            yield tokens[i + 1:j]
            i = j
            continue
        if tok.endswith("run_study.py") and "--" in tokens[i:]:
            sys.path.insert(0, str(ROOT / "tools"))
            try:
                import run_study
            finally:
                sys.path.pop(0)
            j = i + 1
            while j < len(tokens) and tokens[j] not in SEPARATORS:
                j += 1
            # `ray submit` and `ray job submit` hand the script's arguments to the head's shell
            # as one line, which splits them again (hence the documents' double quoting).
            args = tokens[i + 1:j]
            if tokens[:2] == ["ray", "submit"] and args[:1] == ["--"]:
                args = args[1:]  # `ray submit` (click) takes this "--" as its own end of options
            _, argv = run_study.build(_split(" ".join(args)))
            yield argv
            i = j
            continue
        if " " in tok and "stilts-ds" in tok:  # the quoted command of `ray exec '...'`
            yield from _stilts_argvs(_split(tok))
        i += 1


def invocations() -> list[Invocation]:
    out = []
    for doc in DOCS:
        for line, text in _logical_lines(doc):
            for argv in _stilts_argvs(_split(text)):
                out.append(Invocation(doc.relative_to(ROOT).as_posix(), line, argv))
    return out


INVOCATIONS = invocations()


def test_the_documents_have_stilts_commands():
    by_doc = {d.relative_to(ROOT).as_posix(): 0 for d in DOCS}
    for inv in INVOCATIONS:
        by_doc[inv.doc] += 1
    assert by_doc["README.md"] >= 25 and by_doc["cluster/README.md"] >= 5, by_doc
    commands = {inv.argv[0] for inv in INVOCATIONS if inv.argv}
    assert {"pipeline", "status", "plan", "train", "finetune", "evaluate", "bench", "report", "scale",
            "score", "prepare", "tasks"} <= commands


def _check(inv: Invocation) -> None:
    """Parse ``inv`` as the CLI would, run nothing; collect quick-start paths."""
    assert inv.argv, f"{inv}: no command"
    name, *args = inv.argv
    command = main.get_command(click.Context(main), name)
    assert command is not None, f"{inv}: no such command {name!r}"
    values: dict[str, list[str]] = {}
    for opt, value in zip(args, args[1:], strict=False):
        if opt.startswith("--"):
            values.setdefault(opt, []).append(value)
    inv.quickstart_paths = []
    for given in (v for vs in values.values() for v in vs):
        path = given.rpartition("=")[2]  # --results ARM=PATH
        if path == QUICKSTART_RUN or path.startswith(QUICKSTART_RUN + "/"):
            inv.quickstart_paths.append(path)
    try:
        command.make_context(name, list(args))
    except click.BadParameter as e:
        # Options with exists=True: a quick-start path exists once the demo ran (checked by
        # the end-to-end test), a reader's own file is theirs to bring.
        bad = str(getattr(e, "message", e))
        assert "does not exist" in bad and (QUICKSTART_RUN in bad or USER_FILES.search(
            bad.split("'")[1] if "'" in bad else "")), f"{inv}: {bad}"
    except click.ClickException as e:
        raise AssertionError(f"{inv}: {e.format_message()}") from None
    config = values.get("--config", [None])[-1]
    if config is None:
        return
    assert (ROOT / config).is_file(), f"{inv}: --config {config} is not a file of this repository"
    sets = {}
    for item in values.get("--set", []):
        key, _, value = item.partition("=")
        sets[key] = yaml.safe_load(value)
    try:
        select_arms(load_config(ROOT / config, sets), values.get("--arm", []))
    except Exception as e:
        raise AssertionError(f"{inv}: {e}") from None


@pytest.mark.parametrize("inv", INVOCATIONS, ids=str)
def test_command_parses_as_written(inv):
    _check(inv)


def test_a_wrong_command_is_caught():
    """The checker itself: a stale path, option or arm fails it."""
    for argv, why in ((["finetune", "--config", "configs/paper.yaml", "--tsk", "xnli"], "No such option"),
                      (["evaluate", "--config", "configs/nope.yaml"], "not a file"),
                      (["train", "--config", "configs/paper.yaml", "--arm", "english"], "no such arm"),
                      (["train", "--config", "configs/paper.yaml", "--set", "cluster.num_workers=8"],
                       "not divisible"),
                      (["bench", "--checkpoint", "/nonexistent/model", "--output", "x"], "does not exist")):
        with pytest.raises(Exception, match=why):
            _check(Invocation("test", 0, argv))


def _quickstart_invocations() -> list[Invocation]:
    out = []
    for inv in INVOCATIONS:
        try:
            _check(inv)
        except Exception:  # reported by test_command_parses_as_written
            continue
        out.append(inv)
    return out


@pytest.mark.ray_cluster
def test_quickstart_paths_exist_after_the_demo(tmp_path, ray_cluster_factory):
    """`stilts-ds demo` from an empty directory (the config found in the package), then every
    runs/quickstart path the documents name exists, and the documented `status` and `report`
    lines run against it."""
    cluster = ray_cluster_factory("demo", num_nodes=1, cpus_per_node=2)
    demo = subprocess.run([str(Path(sys.executable).parent / "stilts-ds"), "demo"], cwd=tmp_path,
                          env=cluster.subprocess_env(), capture_output=True, text=True, timeout=900)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-5000:]
    run = tmp_path / QUICKSTART_RUN
    for name in ("tradeoff.md", "report.md", "index.html"):  # what stilts-ds demo prints; the report; its page
        assert (run / "report" / name).is_file(), name
    # RQ2's answer carries the paired test of the two arms (studies.significance.arm_comparisons,
    # from the per-example files phase 3 wrote), not only each arm's own interval.
    answers = (run / "report" / "report.md").read_text(encoding="utf-8").split("## RQ1")[0]
    assert re.search(r"\*\*multilingual\*\* .* against \*\*english\*\* .*XTREME avg vs english \(95% interval "
                     r"\[[-+][\d.]+, [-+][\d.]+\], (not )?significant at 95%, p = [\d.]+, paired bootstrap", answers), answers
    named = sorted({p for inv in _quickstart_invocations() for p in inv.quickstart_paths})
    assert named, "the documents name no quick-start path"
    missing = [p for p in named if not (tmp_path / p).exists()]
    assert not missing, f"named by the documents, not written by the demo: {missing}"

    # The documented lines that read the run, run as written (paths relative to the run's cwd).
    runner = CliRunner()
    for inv in _quickstart_invocations():
        if inv.argv[0] not in ("status", "report") or not (
                inv.quickstart_paths or "configs/quickstart.yaml" in inv.argv):
            continue
        argv = [_rooted(a, tmp_path) for a in inv.argv]
        if argv[0] == "status":
            argv += ["--set", f"output_dir={run}"]
        out = runner.invoke(main, argv, catch_exceptions=False)
        assert out.exit_code == 0, f"{inv}\n{out.output}"
        if argv[0] == "status" and "--json" in argv:
            rows = json.loads(out.output)
            assert rows and all(r["state"] == "done" for r in rows), [r for r in rows if r["state"] != "done"]


def _rooted(arg: str, cwd: Path) -> str:
    """A documented argument with its repository or run-relative path made absolute."""
    if arg.startswith("configs/"):
        return str(ROOT / arg)
    key, sep, value = arg.rpartition("=")
    if value.startswith("runs/"):
        return f"{key}{sep}{cwd / value}"
    return arg
