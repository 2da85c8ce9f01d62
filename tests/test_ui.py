"""`seqbench ui` with a real MLflow server on a free local port: it prints its URL, and SIGTERM or SIGINT
to seqbench stops the server and every process in its group."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_ui_serves_and_stops_its_whole_process_group(tmp_path):
    """SIGTERM (what a service manager or `kill` sends); Ctrl-C's SIGINT takes the same forwarding path."""
    port = _free_port()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.Popen([sys.executable, "-m", "seqbench.cli", "ui", "--tracking-uri", uri, "--port", str(port)],
                            stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line, line
        pgid = int(re.search(r"process group (\d+)", line).group(1))
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and status != 200:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status
            except OSError:
                time.sleep(0.5)
        assert status == 200, "the MLflow server did not come up"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 10
        while not _gone(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _gone(pgid), "a process of the server's group survived"
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert not (tmp_path / "mlruns").exists()
