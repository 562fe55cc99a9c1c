"""Shared test fixtures: the bundled offline tokenizer and fixture data root."""
import pytest

from stilts_ds.data.sources import FIXTURES_DIR


@pytest.fixture(scope="session")
def tokenizer():
    from stilts_ds.modeling.presets import load_tokenizer

    return load_tokenizer("bundled")


@pytest.fixture(scope="session")
def fixtures_dir():
    return FIXTURES_DIR
