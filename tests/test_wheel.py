"""stilts-ds installed from a wheel works away from the source checkout (issue #12).

SLOW (about 30-60 s): ``test_wheel_installs_and_runs_outside_the_checkout`` copies the
sources to a temporary directory, builds an sdist there and a wheel from that sdist (so
MANIFEST.in is tested too), installs the wheel into a fresh venv and runs it from a
temporary directory. No network: the build uses this venv's setuptools
(--no-build-isolation), and the fresh venv borrows this venv's installed dependencies
through a ``.pth`` line instead of installing torch, deepspeed and ray again.

The other tests are fast: in a checkout, ``stilts_ds.shipped`` resolves to the repository's
top-level configs/ and ds_configs/ and to stilts_ds/resources.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from stilts_ds import shipped

ROOT = Path(__file__).resolve().parents[1]
# What an sdist is built from: setup.py, MANIFEST.in and what they name.
SOURCE_ENTRIES = ("setup.py", "MANIFEST.in", "README.md", "stilts_ds", "configs", "ds_configs")
STEP_TIMEOUT_S = 180  # per subprocess: a hung build or import fails here, not the whole run


# ----------------------------------------------------------------------------- checkout


def test_checkout_resolves_the_top_level_dirs():
    assert shipped.package_dir() == ROOT / "stilts_ds"
    # A stray build copy in the source tree would shadow the top-level directories.
    assert not (ROOT / "stilts_ds" / "_shipped").exists()
    assert shipped.configs_dir() == ROOT / "configs"
    assert shipped.config_file("quickstart.yaml") == ROOT / "configs" / "quickstart.yaml"
    assert shipped.config_file("sweeps/quickstart.yaml") == ROOT / "configs" / "sweeps" / "quickstart.yaml"
    assert shipped.ds_config_dir() == ROOT / "ds_configs"
    assert shipped.fixtures_dir() == ROOT / "stilts_ds" / "resources" / "fixtures"
    assert shipped.tokenizer_dir() == ROOT / "stilts_ds" / "resources" / "tokenizer"


def test_module_constants_come_from_shipped():
    from stilts_ds.cli import QUICKSTART
    from stilts_ds.data.sources import FIXTURES_DIR
    from stilts_ds.engine.ds_config import DS_CONFIG_DIR
    from stilts_ds.inference.engines import DEFAULT_DS_CONFIG_DIR
    from stilts_ds.modeling.presets import BUNDLED_TOKENIZER_DIR

    assert QUICKSTART == shipped.config_file("quickstart.yaml")
    assert DS_CONFIG_DIR == DEFAULT_DS_CONFIG_DIR == shipped.ds_config_dir()
    assert FIXTURES_DIR == shipped.fixtures_dir()
    assert BUNDLED_TOKENIZER_DIR == shipped.tokenizer_dir()


def test_unknown_config_names_the_shipped_ones():
    with pytest.raises(shipped.ShippedFilesError, match=r"no shipped config 'nope\.yaml'.*sweeps/quickstart\.yaml"):
        shipped.config_file("nope.yaml")


def test_every_source_directory_is_a_package():
    """find_packages drops a directory without __init__.py, and the wheel with it."""
    dirs = {p.parent for p in (ROOT / "stilts_ds").rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(str(d.relative_to(ROOT)) for d in dirs if not (d / "__init__.py").is_file()) == []


# ----------------------------------------------------------------------------- the wheel

# Run by the fresh venv's python from a temporary directory; prints one JSON object.
CHECK_SCRIPT = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    from pathlib import Path

    import stilts_ds
    from stilts_ds import shipped

    failures, imported = {}, []

    def record(name):
        failures[name] = repr(sys.exc_info()[1])

    for mod in pkgutil.walk_packages(stilts_ds.__path__, "stilts_ds.", onerror=record):
        try:
            importlib.import_module(mod.name)
            imported.append(mod.name)
        except Exception as e:
            failures[mod.name] = f"{type(e).__name__}: {e}"

    from stilts_ds.config import load_config
    from stilts_ds.data.sources import FIXTURES_DIR, local_splits
    from stilts_ds.engine.ds_config import DS_CONFIG_DIR, load_base
    from stilts_ds.inference.engines import load_ds_inference_config
    from stilts_ds.modeling.presets import BUNDLED_TOKENIZER_DIR, load_tokenizer
    from stilts_ds.tasks.registry import get_task

    print(json.dumps({
        "file": stilts_ds.__file__,
        "sys_path": sys.path,
        "editable_modules": sorted(m for m in sys.modules if "editable" in m),
        "meta_path": [repr(f) for f in sys.meta_path],
        # Every importable stilts_ds on sys.path, to show that the checkout's is not one.
        "stilts_ds_dirs": [p for p in sys.path if (Path(p or ".") / "stilts_ds" / "__init__.py").is_file()],
        "import_failures": failures,
        "imported": imported,
        "quickstart": str(shipped.config_file("quickstart.yaml")),
        "sweep": str(shipped.config_file("sweeps/quickstart.yaml")),
        "zero2": str(shipped.ds_config_dir() / "zero2.json"),
        "fixtures": str(shipped.fixtures_dir()),
        "tokenizer": str(shipped.tokenizer_dir()),
        "constants": [str(DS_CONFIG_DIR), str(FIXTURES_DIR), str(BUNDLED_TOKENIZER_DIR)],
        "zero2_stage": load_base("zero2")["zero_optimization"]["stage"],
        "inference_fp32": bool(load_ds_inference_config("fp32")),
        "xnli_splits": len(local_splits(get_task("xnli"), FIXTURES_DIR)),
        "vocab": len(load_tokenizer("bundled")),
        "run_dir": str(load_config(shipped.config_file("quickstart.yaml")).run_dir),
        "cwd": str(Path.cwd()),
    }))
""")


def _run(cmd, cwd, env=None) -> subprocess.CompletedProcess:
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=STEP_TIMEOUT_S, check=False)  # the assert below shows the output
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out


def _clean_env() -> dict:
    """This environment, minus what would let the checkout or this venv leak in."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _build_wheel(tmp_path: Path, env: dict) -> tuple[Path, Path, Path]:
    """(source copy, sdist, wheel), built from a copy so that concurrent builds never share
    the checkout's build/ or egg-info."""
    src = tmp_path / "src"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.py[cod]", "_shipped", "*.egg-info")
    for name in SOURCE_ENTRIES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=skip)
        else:
            shutil.copy2(ROOT / name, src / name)
    dist = tmp_path / "dist"
    _run([sys.executable, "-c", "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])",
          dist], cwd=src, env=env)
    (sdist,) = dist.glob("*.tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", dist, sdist], cwd=tmp_path, env=env)
    (wheel,) = dist.glob("*.whl")
    return src, sdist, wheel


def _fresh_venv(tmp_path: Path, wheel: Path, env: dict) -> Path:
    """A new venv holding only the wheel, plus a path line to this venv's dependencies."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path, env=env)
    python = venv / "bin" / "python"
    # This venv's pip installs into the new one (--python): no ensurepip, no network.
    # Installed before the .pth exists, so pip cannot see this venv's editable stilts-ds and
    # call the wheel "already installed".
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel],
         cwd=tmp_path, env=env)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=tmp_path, env=env).stdout.strip())
    # A plain path line only appends the directory to sys.path: .pth files in it, such as the
    # editable install's finder hook, are not processed, so the checkout stays invisible.
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_stilts_test_deps.pth").write_text("".join(f"{d}\n" for d in deps), encoding="utf-8")
    return venv


def _files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    """SLOW (about 30-60 s): sdist -> wheel -> fresh venv -> run from elsewhere."""
    env = _clean_env()
    src, sdist, wheel = _build_wheel(tmp_path, env)

    # The sdist carries what a wheel build needs beyond the Python sources.
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for name in ("configs", "ds_configs", "stilts_ds/resources"):
        missing = {f"{name}/{f}" for f in _files_under(src / name)} - in_sdist
        assert not missing, f"sdist lacks {sorted(missing)} (MANIFEST.in)"

    # The wheel: every module and resource, and the in-package copies of configs/ and ds_configs/.
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"stilts_ds/{f}" for f in _files_under(src / "stilts_ds")}
    expected |= {f"stilts_ds/_shipped/{d}/{f}" for d in ("configs", "ds_configs") for f in _files_under(src / d)}
    assert not expected - in_wheel, f"wheel lacks {sorted(expected - in_wheel)}"
    assert {"stilts_ds/data/__init__.py", "stilts_ds/resources/tokenizer/tokenizer.json",
            "stilts_ds/_shipped/configs/quickstart.yaml", "stilts_ds/_shipped/configs/sweeps/quickstart.yaml",
            "stilts_ds/_shipped/ds_configs/zero2.json"} <= in_wheel

    venv = _fresh_venv(tmp_path, wheel, env)
    installed = next((venv / "lib").glob("python*/site-packages")) / "stilts_ds"
    work = tmp_path / "elsewhere"  # not the checkout: no stilts_ds/ in the current directory
    work.mkdir()

    result = json.loads(_run([venv / "bin" / "python", "-c", CHECK_SCRIPT], cwd=work, env=env).stdout.splitlines()[-1])
    assert Path(result["file"]) == installed / "__init__.py"
    assert result["editable_modules"] == []
    assert not [f for f in result["meta_path"] if "editable" in f.lower()]
    assert [Path(p) for p in result["stilts_ds_dirs"]] == [installed.parent]
    assert str(ROOT) not in result["sys_path"] and "" not in result["sys_path"][1:]
    assert result["import_failures"] == {}
    modules = {".".join(Path(f).with_suffix("").parts).removesuffix(".__init__")
               for f in _files_under(src / "stilts_ds") if f.endswith(".py")}
    assert {f"stilts_ds.{m}" for m in modules if m != "__init__"} == set(result["imported"])
    assert Path(result["quickstart"]) == installed / "_shipped" / "configs" / "quickstart.yaml"
    assert Path(result["sweep"]) == installed / "_shipped" / "configs" / "sweeps" / "quickstart.yaml"
    assert Path(result["zero2"]) == installed / "_shipped" / "ds_configs" / "zero2.json"
    assert Path(result["fixtures"]) == installed / "resources" / "fixtures"
    assert Path(result["tokenizer"]) == installed / "resources" / "tokenizer"
    assert [Path(p) for p in result["constants"]] == [installed / "_shipped" / "ds_configs",
                                                      installed / "resources" / "fixtures",
                                                      installed / "resources" / "tokenizer"]
    assert result["zero2_stage"] == 2 and result["inference_fp32"]
    assert result["xnli_splits"] > 0 and result["vocab"] > 0
    # The packaged quickstart's relative output_dir lands under the current directory.
    assert Path(result["run_dir"]) == Path(result["cwd"]) / "runs" / "quickstart"

    cli = venv / "bin" / "stilts-ds"
    assert "xnli" in _run([cli, "tasks"], cwd=work, env=env).stdout
    help_text = _run([cli, "demo", "--help"], cwd=work, env=env).stdout
    assert "_shipped/configs/quickstart.yaml" in help_text.replace("\n", "").replace(" ", "")
