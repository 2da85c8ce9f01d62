"""Shared fixtures: tiny synthetic datasets in temporary data homes, and a temporary MLflow store."""

from __future__ import annotations

import importlib.util
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


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (the scripts are not a package), so tests call its ``main``."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def step_losses(params, loss_fn, steps: int, lr: float = 1e-2, optimizer=torch.optim.Adam) -> list[float]:
    """The loss of each of ``steps`` optimizer steps on ``loss_fn()`` (the tests' "does it learn" loop)."""
    opt = optimizer(params, lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def assert_loss_drops(net, steps: int) -> None:
    """Train ``net`` for ``steps`` Adam steps on 16 rotated copies of one 11-item sequence; the mean loss of
    the last 5 steps must be below 70 % of the first 5."""
    data = torch.stack([torch.roll(torch.arange(1, 12), -s)[:11] % 30 + 1 for s in range(16)])
    gen = torch.Generator().manual_seed(0)

    def loss():
        net.train()
        return net.loss(data, gen)

    losses = step_losses(net.parameters(), loss, steps)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


@pytest.fixture(scope="module")
def one_thread():
    """Tiny-LLM tests run on one thread: their matrices are too small to gain from intra-op threads, and on a
    busy 2-core machine two threads per process made them several times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


REPO = Path(__file__).resolve().parents[1]
_CACHES = ("__pycache__", ".pytest_cache", ".ruff_cache", ".egg-info")


def _repo_files() -> set[str] | None:
    """Untracked and ignored paths in the checkout (None outside a git checkout), caches left out."""
    import subprocess

    try:
        proc = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=REPO,
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return {line[3:] for line in proc.stdout.splitlines()
            if line[:2] in ("??", "!!") and not any(c in line for c in _CACHES)}


@pytest.fixture(scope="session", autouse=True)
def repository_stays_clean():
    """The suite must leave no file in the repository (no mlruns/, mlflow.db, data): checked at the end."""
    before = _repo_files()
    yield
    after = _repo_files()
    if before is not None and after is not None:
        assert after <= before, f"the test suite left files in the repository: {sorted(after - before)}"


@pytest.fixture(autouse=True)
def fresh_model_store(tmp_path_factory, monkeypatch):
    """Every test starts with an empty trained-model store (never the user's ~/.seqbench/cache)."""
    monkeypatch.setenv("SEQBENCH_MODEL_STORE", str(tmp_path_factory.mktemp("model_store")))
