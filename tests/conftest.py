"""Shared fixtures: tiny synthetic datasets in temporary data homes, and a temporary MLflow store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

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


def assert_loss_drops(net, steps: int) -> None:
    """Train ``net`` for ``steps`` Adam steps on 16 rotated copies of one 11-item sequence; the mean loss of
    the last 5 steps must be below 70 % of the first 5."""
    data = torch.stack([torch.roll(torch.arange(1, 12), -s)[:11] % 30 + 1 for s in range(16)])
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        net.train()
        loss = net.loss(data, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


@pytest.fixture(autouse=True)
def fresh_model_store(tmp_path_factory, monkeypatch):
    """Every test starts with an empty trained-model store (never the user's ~/.seqbench/cache)."""
    monkeypatch.setenv("SEQBENCH_MODEL_STORE", str(tmp_path_factory.mktemp("model_store")))
