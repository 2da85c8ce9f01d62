"""What every benchmark JSON records about the machine it ran on: timings mean nothing without it.

CPUs differ from session to session (native bf16 or AVX2 only), two cores are easily oversubscribed, so
each benchmark stores the CPU model and flags, the torch thread count and the load average before and
after the measurement (``machine_info()`` at the start, ``finish(info)`` at the end).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name and which of the flags that matter for torch it reports (Linux /proc/cpuinfo)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return model, [f for f in _FLAGS if f in flags]


def machine_info() -> dict[str, Any]:
    """CPU, flags, whether bf16 is native, threads, cores and the load average at the start of a benchmark."""
    import torch

    from seqbench.llm.backbone import cpu_has_fast_bf16

    model, flags = cpu_model_and_flags()
    return {
        "cpu_model": model,
        "cpu_flags": flags,
        "native_bf16": cpu_has_fast_bf16(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_before": list(os.getloadavg()),
    }


def finish(info: dict[str, Any]) -> dict[str, Any]:
    """``info`` with the load average after the measurement added (a loaded machine inflates timings)."""
    return {**info, "load_avg_after": list(os.getloadavg())}
