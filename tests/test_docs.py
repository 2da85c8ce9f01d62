"""The docs point at things that exist: every relative link and every repository path cited in code spans."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CITED = re.compile(r"`((?:reports|benchmarks|studies|scripts|docs|models|probes|seqbench|tests)/[\w./-]+"
                   r"\.(?:json|yaml|py|md|sh))`")
HISTORY = {"CHANGELOG.md"}  # the changelog may name files that no longer exist


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in HISTORY], ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_repository_paths_exist(page):
    for cited in CITED.findall(page.read_text(encoding="utf-8")):
        assert (ROOT / cited).exists(), f"{page.relative_to(ROOT)} cites {cited}, which does not exist"


def test_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_bytes()) <= 15_000
    for page in PAGES:
        if page.name not in HISTORY:
            assert not re.search(r"\b[Ss]top \d+\b", page.read_text(encoding="utf-8")), f"{page}: a 'stop N' label"
