"""Resumable CF training: a run killed after some validation checks and started again ends exactly where an
uninterrupted run at the same seed ends."""

import numpy as np
import pytest

from seqbench.context import RunContext, seed_everything
from seqbench.models import create_model
from seqbench.models.store import FileCheckpointer

CFG = {"max_epochs": "6", "eval_every": "1", "d": "16", "maxlen": "16", "patience": "10"}


class Crash(Exception):
    pass


class CrashAfter(FileCheckpointer):
    """Saves like the file checkpointer, then dies after ``n`` saves (a killed process, simulated)."""

    def __init__(self, path, n):
        super().__init__(path)
        self.n = n

    def save(self, state):
        super().save(state)
        self.n -= 1
        if self.n == 0:
            raise Crash


def _fit(tiny, model_name, checkpoint):
    seed_everything(0)
    model = create_model(model_name, tiny.n_items, CFG)
    fit = model.fit(tiny, tiny.histories("train"), RunContext(seed=0, checkpoint=checkpoint))
    return fit, model.score(tiny.histories("test"), tiny.candidates["test"])


@pytest.mark.parametrize("model_name", ["sasrec", "gru4rec"])
def test_resume_after_crash_equals_uninterrupted(tiny, tmp_path, model_name):
    ref_fit, ref_scores = _fit(tiny, model_name, None)
    path = tmp_path / "state.pt"
    with pytest.raises(Crash):
        _fit(tiny, model_name, CrashAfter(path, 3))
    assert FileCheckpointer(path).load()["loop"]["epoch"] == 3
    # the restart begins from a fresh seed-0 RNG state, not the crashed run's: the checkpoint must restore it
    fit, scores = _fit(tiny, model_name, FileCheckpointer(path))
    assert fit.curve == ref_fit.curve and fit.best_epoch == ref_fit.best_epoch
    assert fit.best_valid == ref_fit.best_valid and fit.epochs_run == ref_fit.epochs_run
    np.testing.assert_array_equal(scores, ref_scores)
