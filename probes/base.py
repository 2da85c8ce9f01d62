"""The interface of a probe: it takes a trained model and the dataset and measures one behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.eval.evaluator import EvalResult
from seqbench.stats.paired import PairedTest


@dataclass
class ProbeResult:
    """Original vs probed evaluation of the same users, their paired test, and probe-specific figures."""

    probe: str
    original: EvalResult
    probed: EvalResult
    test: PairedTest
    probe_stats: dict = field(default_factory=dict)


@runtime_checkable
class Probe(Protocol):
    name: str
    summary: str

    def run(self, model, data: SeqDataset, ctx: RunContext) -> ProbeResult: ...
