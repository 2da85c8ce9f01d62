"""What a model needs from the run around it: seed, device, progress display and a metric sink."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from rich.progress import Progress

from seqbench.errors import SeqbenchError


def resolve_device(name: str = "auto") -> torch.device:
    """auto -> cuda if available, else hpu if Intel Gaudi's habana_frameworks imports, else cpu; an explicit
    hpu needs habana_frameworks (clear error if not)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("hpu" if _gaudi_available() else "cpu")
    if name == "hpu":
        try:
            import habana_frameworks.torch.core  # noqa: F401
        except ImportError as e:
            raise SeqbenchError("--device hpu needs Intel Gaudi's habana_frameworks, which is not installed") from e
        return torch.device("hpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SeqbenchError("--device cuda was asked for but torch sees no CUDA device")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise SeqbenchError(f"unknown device '{name}'; use auto, cpu, cuda or hpu")
    return torch.device(name)


def _gaudi_available() -> bool:
    try:
        import habana_frameworks.torch.core  # noqa: F401
    except ImportError:
        return False
    return True


def seed_everything(seed: int, device: torch.device | None = None) -> None:
    """Seed Python, NumPy and torch; on the CPU (``device`` None or cpu) also torch's deterministic kernels, so
    CPU runs repeat bit for bit (the protocol's promise). On an accelerator deterministic mode is switched off:
    on an H200 it made an LLM training step 1.2-2.9x slower (``benchmarks/results/gpu_step_profile.json``, run
    ``variants=grid``), and seeded accelerator runs are repeatable only up to kernel nondeterminism anyway."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    deterministic = device is None or device.type == "cpu"
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


@runtime_checkable
class Checkpointer(Protocol):
    """Where a training loop keeps its resumable state, so a killed run continues where it stopped.

    The training loop (``seqbench.train.loop``) calls ``load()`` once before training (``None``: start fresh)
    and ``save(state)`` at every validation check, and whenever ``every_s`` seconds have passed since the last
    save (0: only at checks). ``state`` holds everything needed to continue bit-identically: weights, optimizer,
    scheduler, RNG states, position (epoch, step), best-so-far and the curve. ``clear()`` runs after a
    finished fit.
    """

    every_s: float

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...

    def clear(self) -> None: ...


@dataclass
class RunContext:
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    progress: Progress | None = None
    log_metric: Callable[[str, float, int], None] | None = None  # (name, value, step)
    checkpoint: Checkpointer | None = None  # resumable training state (None: no checkpoints)

    def metric(self, name: str, value: float, step: int) -> None:
        if self.log_metric is not None:
            self.log_metric(name, value, step)
