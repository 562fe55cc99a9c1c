"""Run a stilts-ds stage on a Ray cluster: the entry script for ``ray submit``.

    ray up -y cluster/aws.yaml
    ray submit --tmux cluster/aws.yaml tools/run_study.py -- --config configs/paper.yaml \\
        --set cluster.storage_path=s3://YOUR-BUCKET/stilts-ds \\
        --set output_dir=/mnt/shared/stilts-ds/runs/paper
    ray submit cluster/aws.yaml tools/run_study.py -- --stage finetune --config configs/paper.yaml --task xnli ...
    ray submit cluster/aws.yaml tools/run_study.py -- --stage bench --preset xlmr-large \\
        --engines ds-kernel,torch-sdpa --precisions bf16 --batch-sizes 1,32 --output /mnt/shared/bench

``--stage`` picks the stilts-ds command (pipeline, the default; train, finetune, evaluate;
bench); every other argument goes to that command unchanged, so a cluster run takes exactly
the options of ``stilts-ds <stage>`` on a laptop (``--stage train -- --help`` lists them).
The script calls the stilts-ds CLI in this process (``stilts_ds.cli.main``).

``ray submit`` copies only this file to ``~/run_study.py`` on the head and runs it there with the
head's ``python``; stilts-ds itself is installed on every node by the cluster YAML's
setup_commands (``pip install -e ~/stilts-ds``). Before calling the CLI the script:

* changes into the stilts-ds checkout the package is installed from (``~/stilts-ds`` on the
  cluster), so relative paths such as ``configs/paper.yaml`` resolve as they do in the
  repository; ``--workdir DIR`` picks another directory;
* sets ``RAY_ADDRESS=auto`` unless ``RAY_ADDRESS`` or ``--address`` says otherwise, so the
  driver joins the running cluster and fails if there is none, instead of quietly starting a
  one-machine Ray on the head (``--address local`` allows that). ``--address`` belongs to this
  script, also with ``--stage bench``: ``stilts-ds bench`` then reads it from RAY_ADDRESS.

``ray submit`` joins the arguments after ``--`` into one command line for the head's shell:
quote values with spaces or brackets twice, e.g. ``--set "'intermediate.tasks=[mnli,qqp]'"``.

Locally (no cluster): ``.venv/bin/python tools/run_study.py --address local --dry-run -- --config
configs/quickstart.yaml`` prints what would run.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

STAGES = ("pipeline", "train", "finetune", "evaluate", "bench")


def _checkout() -> Path | None:
    """The repository stilts_ds is installed from (an editable install), if it has configs/."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("stilts_ds")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    root = Path(spec.origin).resolve().parent.parent
    return root if (root / "configs").is_dir() else None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_study.py",
        allow_abbrev=False,
        description="Run `stilts-ds <stage> ARGS...` in this process on a Ray cluster (the `ray submit` entry point). "
                    "Arguments other than the ones below go to the stilts-ds command unchanged.",
        epilog="Example: ray submit cluster/aws.yaml tools/run_study.py -- --config configs/paper.yaml "
               "--set cluster.storage_path=s3://YOUR-BUCKET/stilts-ds --set output_dir=/mnt/shared/stilts-ds/runs/paper",
    )
    p.add_argument("--stage", choices=STAGES, default="pipeline",
                   help="stilts-ds command to run (default: pipeline, all three phases)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="directory to run in (default: the stilts-ds checkout the package is installed from)")
    p.add_argument("--address", default=None,
                   help="Ray address for the driver (default: $RAY_ADDRESS, else 'auto': the running cluster); "
                        "'local' lets Ray start a one-machine cluster")
    p.add_argument("--dry-run", action="store_true", help="print the directory and command, run nothing")
    return p


def build(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    ns, rest = _parser().parse_known_args(argv)
    if rest and rest[0] == "--":
        rest = rest[1:]
    return ns, [ns.stage, *rest]


def main(argv: list[str] | None = None) -> None:
    ns, cli_args = build(sys.argv[1:] if argv is None else argv)
    workdir = ns.workdir or _checkout() or Path.cwd()
    address = ns.address or os.environ.get("RAY_ADDRESS") or "auto"
    env = "" if address == "local" else f"RAY_ADDRESS={address} "
    print(f"run_study: cd {workdir} && {env}stilts-ds {shlex.join(cli_args)}", flush=True)
    if ns.dry_run:
        return
    os.chdir(workdir)
    if address == "local":
        os.environ.pop("RAY_ADDRESS", None)
    else:
        os.environ["RAY_ADDRESS"] = address

    from stilts_ds.cli import main as stilts_ds

    stilts_ds(cli_args, prog_name="stilts-ds")


if __name__ == "__main__":
    main()
