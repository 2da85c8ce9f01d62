"""`seqbench ui`: the MLflow server on a tracking store, owned completely by this process.

``mlflow server`` starts its own workers; killing only the process we started leaves them serving the port.
So the server runs in a new session (its own process group), SIGINT/SIGTERM sent to us are forwarded to the
whole group, and on the way out anything left in the group is terminated, then killed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from seqbench.tracking import artifact_location

STOP_GRACE_S = 10.0


def server_command(tracking_uri: str, host: str, port: int) -> list[str]:
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", tracking_uri, "--host", host,
           "--port", str(port), "--workers", "1"]
    root = artifact_location(tracking_uri)
    if root is not None:  # new experiments created from the UI put their artifacts beside the database too
        cmd += ["--default-artifact-root", root]
    return cmd


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a foreign process reused the id
        return True
    return True


def stop_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM the whole group, wait up to ``grace_s``, then SIGKILL whatever is left."""
    pgid = proc.pid
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if not group_alive(pgid):
            break
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=0.2)
            elif not group_alive(pgid):
                break
            else:
                time.sleep(0.1)
    if proc.poll() is None:
        proc.wait()


def serve(tracking_uri: str, host: str, port: int, announce: Callable[[str], None]) -> int:
    """Run the server until it exits or we get SIGINT/SIGTERM; returns its exit status (0 when stopped by us)."""
    proc = subprocess.Popen(server_command(tracking_uri, host, port), start_new_session=True)
    stopping = False

    def forward(signum, _frame):
        nonlocal stopping
        stopping = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        announce(f"MLflow UI on {tracking_uri}: http://{host}:{port} (server process group {proc.pid}; "
                 "Ctrl-C stops it)")
        rc = proc.wait()
    finally:
        stop_group(proc)
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0 if stopping else rc
