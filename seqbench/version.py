"""The code version recorded with every run and hashed into every trained model's identity."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from seqbench import __version__

# A copy of the checkout without its .git (the working tree a lent accelerator machine receives) names its
# commit in this file, written by scripts/device_pack.py; git's answer wins wherever git has one.
COMMIT_FILE = Path(__file__).parent / "COMMIT"


def commit() -> str:
    """The checkout's short git commit, else the one its ``COMMIT`` file names, else ""."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    if not sha and COMMIT_FILE.is_file():
        sha = COMMIT_FILE.read_text().strip()
    return sha


@functools.cache
def code_version() -> str:
    """The package version plus the git commit when running from a checkout, or from a copy of one whose
    ``COMMIT`` file names it (asked once per process)."""
    sha = commit()
    return f"{__version__}+{sha}" if sha else __version__
