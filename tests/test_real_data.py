"""Checks on the real MovieLens-100K (RecBole atomic files); skipped where ../shared/data is absent."""

import numpy as np

from seqbench.data.pipeline import prepare_source
from seqbench.data.preprocess import PrepareParams
from seqbench.data.store import load_dataset

from .conftest import requires_ml100k, shared_file


@requires_ml100k
def test_ml100k_prepares_with_titles_and_a_clean_protocol(tmp_path):
    src = shared_file("ml-100k")
    _, report = prepare_source("recbole", src, "ml", tmp_path)
    d = load_dataset("ml", tmp_path)
    assert report["rows_read"] == 100_000 and d.n_users == 943
    assert report["items_without_title"] == 0 and d.titles[1]
    # Timestamps are seconds in the file, milliseconds here, and sorted within users.
    assert d.timestamp.min() > 8e11 and (np.diff(d.timestamp)[np.diff(d.user) == 0] >= 0).all()
    # Same source, same seed: identical protocol (content hash covers interactions, split, candidates).
    prepare_source("recbole", src, "ml2", tmp_path)
    assert load_dataset("ml2", tmp_path).content_hash == d.content_hash
    # A different negative seed changes only the candidates.
    prepare_source("recbole", src, "ml3", tmp_path, PrepareParams(neg_seed=1))
    other = load_dataset("ml3", tmp_path)
    assert (other.item == d.item).all() and not (other.candidates["test"] == d.candidates["test"]).all()
