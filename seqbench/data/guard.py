"""A dataset that cannot be evaluated on its test split: what `seqbench tune` hands its trials.

Tuning on test data would make every tuned score an optimistic one (RecBole's hyperparameter search reads the
test set). The guard is structural rather than a promise: the test candidates are not in the copy at all, and
every way of asking for the test stage (its candidates, targets, users or histories) raises
:class:`TestDataError`. Training reads the train histories and validation reads the valid stage, which work
as before; the content hash is the original's, so a trial's trained model has the identity a later
``seqbench run`` of the same config computes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from seqbench.data.dataset import SeqDataset
from seqbench.data.histories import Histories
from seqbench.errors import SeqbenchError

TEST_STAGES = ("test", "test_title")


class TestDataError(SeqbenchError):
    """Something read the test split of a dataset handed to tuning."""

    __test__ = False  # not a pytest test class


class _NoTestCandidates(dict):
    def __getitem__(self, key):
        _refuse(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        _refuse(key)
        return super().get(key, default)


def _refuse(stage: str) -> None:
    if stage in TEST_STAGES:
        raise TestDataError(f"the test split ('{stage}') was read during tuning; tuning may use train and "
                            "validation data only")


@dataclasses.dataclass
class ValidationOnly(SeqDataset):
    """A :class:`SeqDataset` without its test split (see the module docstring)."""

    def stage_users(self, stage: str) -> np.ndarray:
        _refuse(stage)
        return super().stage_users(stage)

    def histories(self, stage: str, users: np.ndarray | None = None) -> Histories:
        _refuse(stage)
        return super().histories(stage, users)

    def targets(self, stage: str) -> np.ndarray:
        _refuse(stage)
        return super().targets(stage)

    def _target_rows(self, stage: str) -> np.ndarray:
        _refuse(stage)
        return super()._target_rows(stage)


def validation_only(data: SeqDataset) -> ValidationOnly:
    """``data`` without its test split: the test candidates are dropped and any read of the test stage raises."""
    values = {f.name: getattr(data, f.name) for f in dataclasses.fields(data) if f.name != "_cache"}
    values["candidates"] = _NoTestCandidates({k: v for k, v in data.candidates.items() if k not in TEST_STAGES})
    return ValidationOnly(**values)
