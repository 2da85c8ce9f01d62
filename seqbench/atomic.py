"""Files written whole or not at all: through a temporary file in the same folder, renamed into place.

Every writer of results, reports, checkpoints and datasets goes through here, so a reader never sees half a
file and a crash leaves none behind. ``mkstemp``/``mkdtemp`` create 0600/0700 entries; results are meant to be
shared, so they get the permissions any new file or folder gets under the umask.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def umask_mode(folder: bool = False) -> int:
    """The mode ``open``/``mkdir`` would give a new file (or folder) under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if folder else 0o666) & ~mask


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(obj: Any, path: Path) -> None:
    write_atomic(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=float)))
