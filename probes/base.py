"""The interface of a probe: it takes a trained model (and the means to train another) and measures one
behaviour, as two conditions compared on per-user NDCG@10."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from seqbench.context import RunContext
from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.eval.evaluator import EvalResult, candidate_set, evaluate
from seqbench.stats.paired import PairedTest, independent_test, paired_test


@dataclass
class ProbeContext:
    """Everything a probe may need. ``fit`` trains a *fresh* model with the run's config and seed on the
    given train histories (shuffle-train); ``load_dataset`` opens another prepared dataset (cross-domain)."""

    model: object  # a trained Recommender
    data: SeqDataset
    run: RunContext
    fit: Callable[[SeqDataset, Histories], object]
    load_dataset: Callable[[str], SeqDataset]
    options: dict[str, str] = field(default_factory=dict)
    task: str = "retrieval"  # generation: the 20 title candidates and HR@1 (probes listing it in ``tasks``)
    protocol: str = "sampled"  # how targets are ranked (seqbench.eval.evaluator.PROTOCOLS)

    def evaluate(self, model: object | None = None, hist: Histories | None = None) -> EvalResult:
        """``model`` (default: the run's) on the test stage in the run's task and protocol; original inputs
        unless ``hist``."""
        return evaluate_test(self.model if model is None else model, self.data, hist, self.task, self.protocol)


@dataclass
class ProbeResult:
    """Per-condition evaluations, the comparison of the two named in ``compare``, and extra figures."""

    probe: str
    conditions: dict[str, EvalResult]
    compare: tuple[str, str]
    test: PairedTest
    probe_stats: dict = field(default_factory=dict)
    steps: list[tuple[str, float, int]] = field(default_factory=list)  # (metric, value, step) series to log
    protocol: str = "sampled"  # how the conditions ranked their targets (set by the runner)

    @property
    def original(self) -> EvalResult:
        return self.conditions[self.compare[0]]

    @property
    def probed(self) -> EvalResult:
        return self.conditions[self.compare[1]]


@runtime_checkable
class Probe(Protocol):
    name: str
    summary: str
    option_help: dict[str, str]  # the --probe-set keys it reads, with one line of help each

    def run(self, pc: ProbeContext) -> ProbeResult: ...


def probe_tasks(probe: Probe) -> tuple[str, ...]:
    """The tasks a probe works in: ``tasks`` when it declares them, else retrieval only."""
    return tuple(getattr(probe, "tasks", ("retrieval",)))


def paired_result(probe: str, original: EvalResult, probed: EvalResult, seed: int, **stats) -> ProbeResult:
    """The common shape: same users under two conditions, Wilcoxon on the per-user primary metric (NDCG@10;
    HR@1 in the generation task)."""
    m = original.metric
    test = paired_test(original.per_user[m], probed.per_user[m], m, seed=seed)
    return ProbeResult(probe, {"original": original, "probed": probed}, ("original", "probed"), test, stats)


def group_result(probe: str, groups: dict[str, EvalResult], compare: tuple[str, str], seed: int,
                 **stats) -> ProbeResult:
    """Different users per group (e.g. warm vs cold): Mann-Whitney U on the per-user primary metric."""
    m = groups[compare[0]].metric
    a, b = (groups[k].per_user[m] for k in compare)
    test = independent_test(a, b, m, seed=seed)
    return ProbeResult(probe, groups, compare, test, stats)


def evaluate_test(model, data: SeqDataset, hist: Histories | None = None, task: str = "retrieval",
                  protocol: str = "sampled") -> EvalResult:
    """The model on the test stage (original inputs unless ``hist`` is given) with the persisted candidates
    of ``task`` (their targets only, under full ranking)."""
    return evaluate(model, hist if hist is not None else data.histories("test"),
                    data.candidates[candidate_set("test", task)], task, protocol)


def subset(result: EvalResult, mask) -> EvalResult:
    outputs = None if result.outputs is None else [o for o, k in zip(result.outputs, mask, strict=True) if k]
    top = None if result.top_items is None else result.top_items[mask]
    return EvalResult(result.users[mask], result.ranks[mask], {k: v[mask] for k, v in result.per_user.items()},
                      metric=result.metric, outputs=outputs, protocol=result.protocol, top_items=top)
