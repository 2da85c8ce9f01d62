"""Shared fixtures: tiny synthetic datasets in temporary data homes, and a temporary MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.sources.options import SourceOptions
from seqbench.data.store import load_dataset

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY = SourceOptions(users=150, items=160, order=0.9, seed=3, min_len=5, max_len=20)


@pytest.fixture(scope="session")
def tiny_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("data_home")
    prepare_source("synthetic", None, "tiny", home, PrepareParams(), TINY)
    return home


@pytest.fixture(scope="session")
def tiny(tiny_home):
    return load_dataset("tiny", tiny_home)


@pytest.fixture()
def tracking_uri(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def shared_file(*parts: str) -> Path:
    return SHARED_DATA.joinpath(*parts)


requires_ml100k = pytest.mark.skipif(
    not shared_file("ml-100k", "ml-100k.inter").exists(),
    reason="real data ../shared/data/ml-100k is not present (only available beside the development checkout)",
)
