"""Source loaders: each turns files in a published format into :class:`RawData`.

A loader is ``load(path, opts) -> RawData``. Register new formats in ``SOURCES``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from seqbench.data.raw import RawData
from seqbench.data.sources.options import SourceOptions
from seqbench.errors import UnknownNameError

Loader = Callable[[Path | None, SourceOptions], RawData]


def _registry() -> dict[str, Loader]:
    from seqbench.data.sources import amazon2023, csvsource, movielens, recbole, synthetic

    return {
        "recbole": recbole.load,
        "movielens": movielens.load,
        "amazon2023": amazon2023.load,
        "csv": csvsource.load,
        "synthetic": synthetic.load,
    }


SOURCE_KINDS = ("recbole", "movielens", "amazon2023", "csv", "synthetic")


def get_loader(kind: str) -> Loader:
    reg = _registry()
    if kind not in reg:
        raise UnknownNameError("source kind", kind, list(reg))
    return reg[kind]
