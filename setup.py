"""stilts-ds: English intermediate-task training for zero-shot cross-lingual transfer, at cluster scale.

Install for development (CPU, this repository's pins):  make .venv
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# Top-level directories a wheel carries inside the package, as stilts_ds/_shipped/<name>
# (stilts_ds/shipped.py reads them there; a checkout reads the top-level ones in place).
SHIPPED_DIRS = ("configs", "ds_configs")


class BuildPyWithShipped(build_py):
    """build_py that also copies configs/ and ds_configs/ into the built package.

    They stay where users of a checkout expect them (configs/quickstart.yaml), the one copy
    in git; only the build output gets the in-package copy that an installed wheel needs.
    """

    def run(self):
        super().run()
        # An editable install maps stilts_ds onto the source tree, which has no _shipped
        # copy: shipped.py falls back to the top-level directories there.
        if getattr(self, "editable_mode", False):
            return
        for name in SHIPPED_DIRS:
            target = Path(self.build_lib) / "stilts_ds" / "_shipped" / name
            # A fresh copy each build, so a file deleted from configs/ leaves no stale twin
            # in a reused build/ directory.
            shutil.rmtree(target, ignore_errors=True)
            self.copy_tree(name, str(target))


setup(
    name="stilts-ds",
    version="0.1.0",
    description=(
        "Intermediate-task training (STILTs) for zero-shot cross-lingual transfer on XTREME, "
        "launched by Ray Train as DeepSpeed ZeRO workers, with a DeepSpeed-Inference benchmark."
    ),
    python_requires=">=3.10",
    packages=find_packages(include=["stilts_ds", "stilts_ds.*"]),
    # package_data alone names the wheel's data files (MANIFEST.in shapes the sdist only):
    # include_package_data=True would add the same files again via MANIFEST.in, with one
    # "Package would be ignored" warning per fixture directory.
    include_package_data=False,
    # Every file under resources/, nested ones included: fixtures/<task>/*.jsonl, tokenizer/*.
    package_data={"stilts_ds": ["resources/**/*", "resources/*"]},
    install_requires=[
        # torch is pinned by the Makefile for the CPU install (torch==2.13.0); GPU clusters
        # bring their own CUDA build, so only a floor is stated here.
        "torch>=2.4",
        "transformers>=5.0",
        "tokenizers>=0.21",
        "datasets>=3.0",
        # The feature cache: memory-mapped Arrow IPC files with ragged token columns.
        "pyarrow>=15",
        # deepspeed is a source package: install it with --no-build-isolation after torch
        # (the Makefile does), or its build environment downloads a CUDA torch.
        "deepspeed>=0.19",
        "ray[train]>=2.50",
        "tensorboard>=2.18",
        "click>=8.1",
        "pyyaml>=6.0",
        "numpy>=1.26",
        # The official XTREME scorer uses seqeval for udpos/panx; using the same library keeps
        # its chunking quirks (POS tags read as chunks) bit-for-bit.
        "seqeval==1.2.2",
        "tqdm>=4.66",
        "matplotlib>=3.8",
    ],
    # sentencepiece trains the bundled tokenizer (tools/build_tokenizer.py); a test rebuilds it.
    # ray[default] brings the dashboard's job server (aiohttp, ...) that `ray job submit` talks to
    # (tests/test_cluster_launch.py); the cluster YAMLs install ray[default,train] on the nodes.
    # pytest-timeout: pytest.ini's timeout fails a hung test (Ray, DeepSpeed) instead of stalling the run.
    extras_require={"test": ["pytest>=8", "pytest-timeout>=2.3", "sentencepiece>=0.2", "ray[default]"],
                    "build": ["sentencepiece>=0.2"]},
    entry_points={"console_scripts": ["stilts-ds=stilts_ds.cli:main"]},
    cmdclass={"build_py": BuildPyWithShipped},
)
