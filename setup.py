"""stilts-ds: English intermediate-task training for zero-shot cross-lingual transfer, at cluster scale.

Install for development (CPU, this repository's pins):  make .venv
"""
from setuptools import find_packages, setup

setup(
    name="stilts-ds",
    version="0.1.0",
    description=(
        "Intermediate-task training (STILTs) for zero-shot cross-lingual transfer on XTREME, "
        "launched by Ray Train as DeepSpeed ZeRO workers, with a DeepSpeed-Inference benchmark."
    ),
    python_requires=">=3.10",
    packages=find_packages(include=["stilts_ds", "stilts_ds.*"]),
    include_package_data=True,
    package_data={"stilts_ds": ["resources/**/*", "resources/*"]},
    install_requires=[
        # torch is pinned by the Makefile for the CPU install (torch==2.13.0); GPU clusters
        # bring their own CUDA build, so only a floor is stated here.
        "torch>=2.4",
        "transformers>=5.0",
        "tokenizers>=0.21",
        "datasets>=3.0",
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
    extras_require={"test": ["pytest>=8", "sentencepiece>=0.2", "ray[default]"],
                    "build": ["sentencepiece>=0.2"]},
    entry_points={"console_scripts": ["stilts-ds=stilts_ds.cli:main"]},
)
