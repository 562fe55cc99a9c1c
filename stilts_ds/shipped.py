"""Where the files stilts-ds ships live: experiment configs, DeepSpeed JSONs, the task
fixtures and the bundled tokenizer, as real filesystem paths.

    from stilts_ds import shipped
    shipped.config_file("quickstart.yaml")          # .../configs/quickstart.yaml
    shipped.config_file("sweeps/quickstart.yaml")   # the scaling-study sweep
    shipped.ds_config_dir() / "zero2.json"
    shipped.fixtures_dir() / "xnli"
    shipped.tokenizer_dir() / "tokenizer.json"

Two layouts are served, tried in this order:

- An installed wheel (or an sdist built into one): setup.py's build_py copies the
  repository's top-level ``configs/`` and ``ds_configs/`` into the package as
  ``stilts_ds/_shipped/configs`` and ``stilts_ds/_shipped/ds_configs``.
- A source checkout or editable install: no ``_shipped`` copy exists (the top-level
  directories stay the one source, nothing is duplicated in git), so the repository's
  ``configs/`` and ``ds_configs/`` next to the ``stilts_ds`` package are used.

The fixtures and tokenizer are package data (``stilts_ds/resources/...``) in both layouts.

Paths, not ``Traversable`` objects: DeepSpeed, tokenizers and ``glob`` need files on disk.
``importlib.resources.files`` returns a ``pathlib.Path`` whenever the package is a plain
directory, which is how pip installs wheels (unpacked into site-packages). ``as_file`` is
deliberately not used for a package inside a zip: it would extract to a temporary copy
that is deleted when its context exits, yet these paths are kept in module constants and
handed to other processes (Ray workers). Such an install raises ``ShippedFilesError``.

Relative paths inside a shipped config (``output_dir: runs/quickstart``, and any
``data_dir``, ``cache_dir`` or ``deepspeed.base`` JSON path) resolve against the current
directory, not the config file's directory (``ExperimentConfig.run_dir``): a run started
with the config inside site-packages writes ``./runs/quickstart`` where the user is, never
into the installed package, exactly as ``stilts-ds demo`` does in a checkout.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from stilts_ds.errors import StiltsError

_PACKAGE = "stilts_ds"
_SHIPPED = "_shipped"  # the build-time copies (setup.py's build_py); absent in a checkout


class ShippedFilesError(StiltsError):
    """A shipped file or directory is not on disk where this install should have it."""


def package_dir() -> Path:
    """The installed ``stilts_ds`` package directory (site-packages, or the checkout)."""
    root = resources.files(_PACKAGE)
    if not isinstance(root, Path):
        raise ShippedFilesError(
            f"stilts_ds is installed as {root!r}, not as a directory: its configs, fixtures and "
            "tokenizer must be real files (DeepSpeed and tokenizers read paths). Install the wheel "
            "with pip (it unpacks into site-packages) rather than importing from a zip.")
    return root


def _top_level(name: str) -> Path:
    """``stilts_ds/_shipped/<name>`` in a wheel, else ``<checkout>/<name>``."""
    pkg = package_dir()
    candidates = (pkg / _SHIPPED / name, pkg.parent / name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise ShippedFilesError(
        f"no {name}/ directory in this stilts-ds install (looked in "
        f"{' and '.join(str(c) for c in candidates)}); build the wheel with setup.py, whose build_py "
        f"copies the repository's {name}/ into the package")


def _resource(*parts: str) -> Path:
    # Package data sits at this one place in both layouts, so it is not checked here: module
    # constants are computed at import, and tools/build_tokenizer.py swaps the tokenizer
    # directory by rename, which an import in that instant must survive. Readers name the
    # missing file themselves.
    return package_dir().joinpath("resources", *parts)


def configs_dir() -> Path:
    """The shipped experiment configs (``quickstart.yaml``, ``paper.yaml``, ``sweeps/``)."""
    return _top_level("configs")


def config_file(name: str) -> Path:
    """A shipped config by its path under ``configs/``, e.g. ``"sweeps/quickstart.yaml"``."""
    base = configs_dir()
    path = base / name
    if not path.is_file():
        known = sorted(str(p.relative_to(base)) for p in base.rglob("*.yaml"))
        raise ShippedFilesError(f"no shipped config {name!r} in {base}; shipped: {', '.join(known) or '(none)'}")
    return path


def ds_config_dir() -> Path:
    """The DeepSpeed JSONs: ZeRO bases (``zero2.json``) and ``inference_<precision>.json``."""
    return _top_level("ds_configs")


def fixtures_dir() -> Path:
    """The bundled task fixtures, laid out as ``<task>/<split>[.<lang>].jsonl``."""
    return _resource("fixtures")


def tokenizer_dir() -> Path:
    """The bundled offline tokenizer (``load_tokenizer("bundled")``)."""
    return _resource("tokenizer")
