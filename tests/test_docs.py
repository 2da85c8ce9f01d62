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


def heading_anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens, and
    ``-1``, ``-2`` … on repeats (headings inside fenced code are not headings)."""
    anchors: set[str] = set()
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"#{1,6}\s+(.*)", line)):
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            anchor, n = slug, 0
            while anchor in anchors:
                n += 1
                anchor = f"{slug}-{n}"
            anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.relative_to(ROOT)} links to {target}, which does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in heading_anchors(path), f"{page.relative_to(ROOT)} links to {target}: no such heading"


@pytest.mark.parametrize("page", [p for p in PAGES if p.name not in HISTORY], ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_repository_paths_exist(page):
    for cited in CITED.findall(page.read_text(encoding="utf-8")):
        assert (ROOT / cited).exists(), f"{page.relative_to(ROOT)} cites {cited}, which does not exist"


def test_readme_is_a_front_door():
    assert len((ROOT / "README.md").read_bytes()) <= 15_000
    for page in PAGES:
        if page.name not in HISTORY:
            assert not re.search(r"\b[Ss]top \d+\b", page.read_text(encoding="utf-8")), f"{page}: a 'stop N' label"


def test_heading_anchors_follow_github(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Sweeps, studies and clusters\n## Without Ray or MLflow (`--offline`)\n```bash\n# not a heading\n"
                    "```\n## Notes\n### Notes\n")
    assert heading_anchors(page) == {"sweeps-studies-and-clusters", "without-ray-or-mlflow---offline", "notes",
                                     "notes-1"}
    linked = [t for p in PAGES for t in LINK.findall(p.read_text(encoding="utf-8")) if "#" in t and "://" not in t]
    assert len(linked) >= 5  # the check above has links to check
