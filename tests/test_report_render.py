"""The HTML report is one self-contained page: opened in headless Chromium (no network, no JS), its tables and
inline images are there and the screenshot is not blank. Markdown renders the same tables."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.image
import mlflow
import pytest

from seqbench.report import write_report
from seqbench.report.document import Document, Section, Table
from seqbench.report.render import to_html, to_markdown
from seqbench.tracking import artifact_location
from tests.report_fakes import full_experiment

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser")) if p), None)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _parse(text: str) -> list[tuple[str, dict]]:
    p = _Collect()
    p.feed(text)
    return p.tags


def test_markdown_and_html_render_the_same_table():
    t = Table("T", ["model", "x|y"], [["a<b", "1"], ["c", "2"]], ["note with `code` and **bold**"], {(1, 1)})
    doc = Document("R", ["pre"], [Section("S", tables=[t])])
    md = to_markdown(doc)
    assert "| model | x\\|y |" in md and "| c | **2** |" in md and "| a<b | 1 |" in md
    html = to_html(doc)
    assert "<td>a&lt;b</td>" in html and "<td><strong>2</strong></td>" in html
    assert "<code>code</code>" in html and "<strong>bold</strong>" in html and "<script" not in html


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (.ci/run installs Debian's chromium with apt-get)")
def test_html_report_opens_in_headless_chromium(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    full_experiment(client, client.create_experiment("seqbench", artifact_location=artifact_location(uri)))
    out = tmp_path / "report"
    written = write_report(uri, out, fmt="html")
    assert written == [out / "report.html"] and not (out / "figures").exists()
    text = (out / "report.html").read_text()
    tags = _parse(text)
    assert sum(t == "table" for t, _ in tags) >= 6 and not any(t == "script" for t, _ in tags)
    images = [a["src"] for t, a in tags if t == "img"]
    assert len(images) >= 6 and all(src.startswith("data:image/png;base64,") for src in images)
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    shot = tmp_path / "screenshot.png"
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1200,6000", f"--screenshot={shot}", (out / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    pixels = matplotlib.image.imread(shot)[..., :3]
    assert pixels.shape[:2] == (6000, 1200)
    assert pixels.std() > 0.05  # text, tables and figures, not a blank page
    assert (pixels.reshape(-1, 3).std(axis=1) > 0.1).mean() > 0.001  # some coloured (figure) pixels too
