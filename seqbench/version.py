"""The code version recorded with every run and hashed into every trained model's identity."""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

from seqbench import __version__


@functools.cache
def code_version() -> str:
    """The package version plus the git commit when running from a checkout (asked once per process)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+{sha}" if sha else __version__
