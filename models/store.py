"""Trained-model store: a trained model is kept under its identity so no run trains the same thing twice.

Identity = hash of (model name, resolved config, dataset content hash, train-histories hash, seed, code
version). Anything that changes what training would produce changes the identity; nothing else does (the
probe, the device, the tracking store). Entries live under ``$SEQBENCH_CACHE/models/<identity>/`` and are
written into a temporary folder renamed into place, so a crash never leaves a half-written model that a later
run would load. Resumable training state (:class:`FileCheckpointer`) lives beside them under
``<identity>.ckpt`` until the fit finishes.

Pre-trained parts that are not recommenders (frozen text embeddings, A-LLMRec's stage 1) are cached beside
the store, under ``$SEQBENCH_CACHE/<kind>/`` (:func:`cache_path`, :func:`save_atomic`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seqbench.atomic import write_atomic
from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.llm.backbone import cache_root

from .base import FitReport, Recommender


def histories_hash(hist: Histories) -> str:
    """Content hash of train histories (users, items, times, offsets): shuffled histories hash differently."""
    h = hashlib.sha256()
    for a in (hist.users, hist.items, hist.times, hist.offsets):
        h.update(np.ascontiguousarray(a))  # the buffer itself, without a copy
    return h.hexdigest()


def identity(model: str, config: dict[str, Any], dataset_hash: str, train_hash: str, seed: int,
             code_version: str) -> str:
    """The trained model's identity (24 hex digits of a SHA-256 over its canonical JSON description)."""
    desc = {"model": model, "config": config, "dataset": dataset_hash, "train": train_hash, "seed": int(seed),
            "code": code_version}
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()[:24]


class FileCheckpointer:
    """A :class:`~seqbench.context.Checkpointer` backed by one file, replaced atomically at every save."""

    def __init__(self, path: Path, every_s: float = 0.0):
        self.path = Path(path)
        self.every_s = every_s

    def load(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def save(self, state: dict[str, Any]) -> None:
        write_atomic(self.path, lambda p: torch.save(state, p))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Stored:
    """What the store hands back: the model ready to score, its fit figures, and whether they were reused."""

    model: Recommender
    fit: FitReport
    reused: bool
    identity: str


class ModelStore:
    """Folder of trained models keyed by identity: ``root``, else ``$SEQBENCH_MODEL_STORE``, else
    ``$SEQBENCH_CACHE/models`` (the variable lets tests and benchmarks use a fresh store without moving the
    converted LLMs that also live in the cache)."""

    def __init__(self, root: Path | None = None):
        env = os.environ.get("SEQBENCH_MODEL_STORE")
        self.root = Path(root) if root is not None else Path(env) if env else cache_root() / "models"

    def path(self, ident: str) -> Path:
        return self.root / ident

    def has(self, ident: str) -> bool:
        return (self.path(ident) / "fit_report.json").is_file()

    def checkpointer(self, ident: str, every_s: float = 0.0) -> FileCheckpointer:
        return FileCheckpointer(self.root / f"{ident}.ckpt" / "state.pt", every_s)

    def load(self, ident: str, model: Recommender, device: torch.device | None = None) -> FitReport:
        """Load the stored weights into ``model`` (built with the same config); returns the original fit."""
        path = self.path(ident)
        if device is not None and hasattr(model, "device"):
            model.device = device
        model.load(path / "model")
        if device is not None and hasattr(model, "net"):
            model.net.to(device)
        raw = json.loads((path / "fit_report.json").read_text())
        raw["curve"] = [tuple(row) for row in raw.get("curve", [])]
        return FitReport(**raw)

    def save(self, ident: str, model: Recommender, fit: FitReport, meta: dict[str, Any],
             replace: bool = False) -> None:
        """Write model + FitReport + meta into a temporary folder, then rename it into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{ident}.", dir=self.root))
        try:
            model.save(tmp / "model")
            (tmp / "fit_report.json").write_text(json.dumps(dataclasses.asdict(fit), default=float))
            (tmp / "meta.json").write_text(json.dumps({**meta, "identity": ident, "saved_at": time.time()},
                                                      indent=2, default=str))
            target = self.path(ident)
            if target.exists():
                if not replace:  # a concurrent writer won the race; the content is the same by construction
                    shutil.rmtree(tmp, ignore_errors=True)
                    return
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def get_or_fit(self, ident: str, build: Callable[[], Recommender],
                   fit: Callable[[Recommender, RunContext], FitReport], ctx: RunContext,
                   meta: dict[str, Any] | None = None, retrain: bool = False, every_s: float = 0.0) -> Stored:
        """The stored model under ``ident`` if there is one (unless ``retrain``), else ``fit`` it with a
        checkpointer keyed by ``ident`` (a crashed fit resumes), store it and return it.

        This is the one entry point for "a trained model of this identity": the runner, the sweep tasks and
        the LLM models' SASRec teacher (``teacher.sasrec_teacher``) use it; ``build`` makes an untrained model,
        ``fit(model, ctx)`` trains it.
        ``every_s``: the training loop also checkpoints at most that many seconds apart.
        """
        model = build()
        if not retrain and self.has(ident):
            return Stored(model, self.load(ident, model, ctx.device), True, ident)
        ckpt = self.checkpointer(ident, every_s)
        report = fit(model, dataclasses.replace(ctx, checkpoint=ckpt))
        self.save(ident, model, report, meta or {}, replace=retrain)
        ckpt.clear()
        shutil.rmtree(ckpt.path.parent, ignore_errors=True)
        return Stored(model, report, False, ident)


def cache_path(kind: str, tag: str, data: SeqDataset, key: dict[str, Any]) -> Path:
    """``$SEQBENCH_CACHE/<kind>/<dataset>-<tag>-<hash of key>``: the key names everything the cached part
    depends on (JSON-serialisable values)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root() / kind / f"{data.name}-{tag}-{digest}"


def save_atomic(path: Path, save: Callable[[Path], None]) -> None:
    """Write a cache entry into a temporary folder and rename it into place; an unwritable cache only costs
    time, so OSError is swallowed."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
        save(tmp)
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except OSError:
        pass
