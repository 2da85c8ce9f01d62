"""One envelope for every performance benchmark, the machine it ran on, and the generated index of results.

Timings mean nothing without the machine: CPUs differ from session to session (native bf16 or AVX2 only) and
two cores are easily oversubscribed. So each benchmark script starts a run with :func:`begin` (benchmark name,
variant, command, commit, start time, CPU model and flags, torch threads, load average) and stores it with
:func:`record` (the result, the load average after, the device) into its results file
``benchmarks/results/<benchmark>.json``::

    {"benchmark": "quickstart", "runs": [RUN, ...]}

where every RUN is one envelope::

    {"benchmark": str,           # the file's name without .json
     "variant": {key: value},    # what sets this run apart: the script's options that differ from their
                                 # defaults ({} = the script as it ships); not a file-name suffix
     "command": str | None,      # the command line that produced it
     "commit": str | None,       # seqbench.version.code_version(): version+git commit
     "started": str | None,      # UTC, 2026-12-07T06:02:32Z
     "machine": {...} | None,    # machine_info() + load_avg_after (+ device)
     "result": {...},            # the benchmark's own payload
     "provenance": {...}}        # optional: where a converted run came from and which fields it lacks

A new run replaces the runs of the same variant in its file (git keeps the history); other variants stay.
``python -m seqbench.benchinfo index`` rewrites ``benchmarks/README.md``, the index of every run (``--check``
only compares); the test suite checks that it is up to date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni")

ENVELOPE = ("benchmark", "variant", "command", "commit", "started", "machine", "result")
RESULTS = Path("benchmarks") / "results"
INDEX = Path("benchmarks") / "README.md"
# benchmark -> (script, what it measures); a results file's name must be one of these
BENCHMARKS: dict[str, tuple[str, str]] = {
    "cf": ("scripts/bench_cf.py", "CF-SRec models and `pop` on ml-100k: seconds per epoch, to best, test NDCG@10"),
    "controls": ("scripts/bench_controls.py",
                 "SASRec x shuffle-infer, shuffle-train, cosine on synthetic order 0 vs strong, N seeds"),
    "eval_protocols": ("scripts/bench_eval_protocols.py",
                       "one trained SASRec evaluated under sampled, full and full-unseen ranking"),
    "llm": ("scripts/bench_llm.py", "LLM recommenders' training and evaluation throughput vs the bare LLM (CPU)"),
    "prepare": ("scripts/bench_prepare.py", "a synthetic Amazon raw review file prepared end to end"),
    "quickstart": ("scripts/bench_quickstart.py", "the README quickstart from a fresh clone and an empty home"),
    "sweep": ("scripts/bench_sweep.py", "serial `seqbench run` vs `seqbench sweep`, then the same sweep again"),
    "tune": ("scripts/bench_tune.py", "`seqbench tune`: trials per hour, epochs ASHA saves against running the same "
             "trials to their end, a killed tune resumed against the same tune uninterrupted"),
    "gpu_check": ("scripts/gpu_check.py", "LLM recommenders on a random-weight LLM on an accelerator: tokens/s, MFU"),
    "gpu_probe_check": ("scripts/gpu_probe_check.py", "the probes' own paths on an accelerator, seconds per case"),
    "gpu_step_profile": ("scripts/gpu_step_profile.py",
                         "where an LLM training step spends its time on an accelerator, per settings variant"),
}


def repo_root() -> Path:
    """The checkout this module runs from (seqbench is installed editable from it)."""
    return Path(__file__).resolve().parents[1]


def result_file(benchmark: str, root: Path | None = None) -> Path:
    """``benchmarks/results/<benchmark>.json`` under ``root`` (default: this checkout)."""
    if benchmark not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
    return (root or repo_root()) / RESULTS / f"{benchmark}.json"


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


def device_name(device: Any) -> str:
    """``"cpu"``, or the accelerator's name: ``"NVIDIA H200"`` for a CUDA ``torch.device``, Intel's name
    (``"GAUDI2"``, ``"GAUDI3"``) for an HPU one."""
    import torch

    device = torch.device(device)
    if device.type == "hpu":
        import habana_frameworks.torch.hpu as hthpu

        return hthpu.get_device_name()
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


def command_line(script: str | Path, argv: list[str] | None = None) -> str:
    """``python scripts/x.py ARGS``: the script (relative to the checkout when inside it) and its arguments
    (``argv``; None: this process's)."""
    path = Path(script).resolve()
    if path.is_relative_to(repo_root()):
        path = path.relative_to(repo_root())
    args = list(sys.argv[1:] if argv is None else argv)
    return "python " + shlex.join([str(path), *args])


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def variant_of(parser: argparse.ArgumentParser, args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict:
    """The options of ``args`` whose value differs from the parser's default (``skip``: where results go,
    tokenizer folders and other paths that do not change what is measured); {} for the script as it ships."""
    out = {}
    for action in parser._actions:  # the public API has no list of options
        dest = action.dest
        if dest in ("help", *skip) or not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if value != action.default:
            out[dest] = [_plain(v) for v in value] if isinstance(value, list) else _plain(value)
    return out


def begin(benchmark: str, script: str | Path, argv: list[str] | None = None,
          variant: dict[str, Any] | None = None) -> dict[str, Any]:
    """The envelope of a run starting now, without its result: benchmark, variant, command, commit, started and
    the machine with the load average before."""
    from seqbench.version import code_version

    return {"benchmark": benchmark, "variant": dict(variant or {}), "command": command_line(script, argv),
            "commit": code_version(), "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": machine_info()}


def load_runs(path: Path) -> list[dict[str, Any]]:
    """The runs stored in the results file ``path`` ([] when there is none)."""
    path = Path(path)
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise ValueError(f"{path} is not a benchmark results file ({{'benchmark': ..., 'runs': [...]}})")
    return data["runs"]


def find_run(path: Path, variant: dict[str, Any]) -> dict[str, Any] | None:
    """The last stored run of ``variant`` in ``path``, or None."""
    runs = [r for r in load_runs(path) if r.get("variant") == variant]
    return runs[-1] if runs else None


def record(run: dict[str, Any], result: dict[str, Any], path: Path, device: str | None = None) -> dict[str, Any]:
    """Store ``run`` (from :func:`begin`) with ``result`` into the results file ``path`` (:func:`store`); the
    machine gets the load average after, and ``device``. Returns the stored envelope. A long benchmark calls it
    after every part, so a cut-off run keeps what it measured."""
    machine = finish(run["machine"]) if run.get("machine") else run.get("machine")
    if device is not None and machine is not None:
        machine["device"] = device
    env = {**{k: run.get(k) for k in ENVELOPE}, "machine": machine, "result": result}
    env.update({k: v for k, v in run.items() if k not in ENVELOPE})
    store(env, path)
    return env


def store(env: dict[str, Any], path: Path) -> None:
    """Write the envelope ``env`` into the results file ``path``: it replaces every stored run of the same
    variant, in place of the first of them; runs of other variants are kept."""
    from seqbench.atomic import write_json_atomic

    missing = [k for k in ENVELOPE if k not in env]
    if missing:
        raise ValueError(f"not a benchmark envelope: no {', '.join(missing)}")
    runs, placed = [], False
    for old in load_runs(path):
        if old.get("variant") != env["variant"]:
            runs.append(old)
        elif not placed:
            runs.append(env)
            placed = True
    if not placed:
        runs.append(env)
    write_json_atomic({"benchmark": env["benchmark"], "runs": runs}, Path(path))


# ---------------------------------------------------------------- the index -------------------------------------


def _num(x: Any, fmt: str = ".3g") -> str:
    return format(x, fmt) if isinstance(x, int | float) and not isinstance(x, bool) else "?"


def _head_cf(r: dict) -> str:
    rows = [f"{m} {_num(v.get('test_ndcg@10'), '.4f')} ({_num(v.get('seconds_per_epoch'), '.2f')} s/epoch)"
            for m, v in r.items() if isinstance(v, dict) and "test_ndcg@10" in v]
    return "test NDCG@10: " + ", ".join(rows) if rows else ""


def _head_controls(r: dict) -> str:
    parts = []
    for label in ("order_0", "order_strong"):
        block = r.get(label) or {}
        rates = [f"{p} {_num(b.get('significant_rate'), '.0%')}" for p, b in block.items()
                 if isinstance(b, dict) and "significant_rate" in b]
        if rates:
            parts.append(f"{label}: " + ", ".join(rates))
    return "significant: " + "; ".join(parts) if parts else ""


def _head_eval_protocols(r: dict) -> str:
    p = r.get("protocols") or {}
    rows = [f"{k} {_num(v.get('median_seconds'), '.2f')} s ({_num(v.get('ratio_to_sampled'), '.2f')}x)"
            for k, v in p.items()]
    return f"{r.get('dataset')}, {r.get('users')} users: " + ", ".join(rows) if rows else ""


def _head_llm(r: dict) -> str:
    models = r.get("models") or ({"llmsrec": r} if "train_useful_tok_s" in r else {})
    rows = [f"{m} {_num(v.get('train_useful_tok_s'), '.0f')} / {_num(v.get('eval_useful_tok_s'), '.0f')}"
            for m, v in models.items()]
    ceiling = f"; bare LLM fwd+bwd {_num(r.get('ceiling_fwdbwd_tok_s'), '.0f')}" if "ceiling_fwdbwd_tok_s" in r else ""
    return "train / eval useful tok/s: " + ", ".join(rows) + ceiling if rows else ""


def _head_prepare(r: dict) -> str:
    return (f"{_num(r.get('lines'), ',')} lines in {_num(r.get('seconds'), '.1f')} s "
            f"({_num(r.get('lines_per_s'), ',')} lines/s), peak RSS {_num(r.get('peak_rss_mb'), ',.0f')} MB")


def _head_quickstart(r: dict) -> str:
    steps = " + ".join(_num(s.get("wall_s"), ".1f") for s in r.get("steps", []))
    return f"total {_num(r.get('total_wall_s'), '.1f')} s ({steps})"


def _head_sweep(r: dict) -> str:
    serial = (r.get("serial_seconds") or {}).get("total")
    return (f"serial {_num(serial, '.1f')} s, sweep {_num(r.get('sweep_seconds'), '.1f')} s "
            f"({_num(r.get('sweep_vs_serial'), '.2f')}x), again {_num(r.get('sweep_again_seconds'), '.1f')} s")


def _head_tune(r: dict) -> str:
    asha, fifo, resume = r.get("asha") or {}, r.get("fifo") or {}, r.get("resume") or {}
    return (f"{r.get('trials')} trials: asha {_num(asha.get('trials_per_hour'), '.1f')}/h, fifo "
            f"{_num(fifo.get('trials_per_hour'), '.1f')}/h, {_num(r.get('epochs_saved_share'), '.0%')} of epochs "
            f"saved, best valid {_num(asha.get('best_valid'), '.4f')} vs {_num(fifo.get('best_valid'), '.4f')}; "
            f"resumed best equal: {resume.get('resumed_best_equal', 'not run')}")


def _head_gpu_check(r: dict) -> str:
    rows = [f"{m} {_num((v.get('train') or {}).get('useful_tokens_per_s'), ',.0f')} tok/s "
            f"(MFU {_num((v.get('mfu') or {}).get('train'), '.1%')})" for m, v in (r.get("models") or {}).items()]
    size = (r.get("llm") or {}).get("architecture", "")
    return f"{size} train: " + ", ".join(rows) if rows else ""


def _head_gpu_probe_check(r: dict) -> str:
    cases = r.get("cases") or []
    total = sum(c.get("seconds", 0) for c in cases)
    return f"{len(cases)} cases, {_num(total, '.1f')} s in all"


def _head_gpu_step_profile(r: dict) -> str:
    rows = []
    for model, batches in (r.get("results") or {}).items():
        for batch, variants in batches.items():
            secs = [f"{_num(v.get('step_seconds'), '.3f')}" for v in variants.values()]
            rows.append(f"{model} {batch.replace('batch_', 'b')} " + "/".join(secs))
    names = "/".join(r.get("variants") or {})
    return f"s/step ({names}): " + ", ".join(rows) if rows else ""


HEADLINES = {"cf": _head_cf, "controls": _head_controls, "eval_protocols": _head_eval_protocols, "llm": _head_llm,
             "prepare": _head_prepare, "quickstart": _head_quickstart, "sweep": _head_sweep, "tune": _head_tune,
             "gpu_check": _head_gpu_check, "gpu_probe_check": _head_gpu_probe_check,
             "gpu_step_profile": _head_gpu_step_profile}


def machine_summary(m: dict | None) -> str:
    """One line: device (when not the CPU), CPU and its bf16, threads, load average before -> after."""
    if not m:
        return "not recorded"
    parts = []
    if m.get("device") and m["device"] != "cpu":
        parts.append(str(m["device"]))
    cpu = m.get("cpu_model")
    if cpu:
        bf16 = {True: ", native bf16", False: ", no native bf16"}.get(m.get("native_bf16"), "")
        parts.append(f"{cpu}{bf16}")
    if m.get("torch_threads") is not None:
        parts.append(f"{m['torch_threads']} thread{'s' if m['torch_threads'] != 1 else ''}")
    elif m.get("cores") is not None:
        parts.append(f"{m['cores']} cores")
    before, after = m.get("load_avg_before"), m.get("load_avg_after")
    if before:
        parts.append(f"load {before[0]:.2f}" + (f" -> {after[0]:.2f}" if after else ""))
    return ", ".join(parts) or "not recorded"


def _variant_text(v: dict | None) -> str:
    if not v:
        return "defaults"
    return ", ".join(f"{k}={','.join(map(str, x)) if isinstance(x, list) else x}" for k, x in v.items())


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _date(run: dict) -> str:
    if run.get("started"):
        return str(run["started"])[:10]
    committed = (run.get("provenance") or {}).get("committed") or {}
    return f"by {committed['date']} (committed)" if committed.get("date") else "not recorded"


def _commit(run: dict) -> str:
    c = run.get("commit")
    if not c:
        return "not recorded"
    return c[:7] if len(c) == 40 and "+" not in c else c


def result_files(root: Path | None = None) -> list[Path]:
    """Every JSON under ``benchmarks/`` (all of them results files), sorted."""
    return sorted(((root or repo_root()) / "benchmarks").rglob("*.json"))


def render_index(root: Path | None = None) -> str:
    """The text of ``benchmarks/README.md``: every run of every results file, with its variant, machine, date,
    commit, command and headline numbers, then the fields converted runs lack."""
    root = root or repo_root()
    lines = [
        "# Benchmark results",
        "",
        "<!-- generated by `python -m seqbench.benchinfo index` from results/*.json; do not edit by hand -->",
        "",
        "Performance benchmarks only; study results (the paper's comparison, window checks, model comparisons)",
        "are in [`reports/`](../reports). Each file under [`results/`](results) is one benchmark,",
        '`{"benchmark": NAME, "runs": [RUN, ...]}`, and every run is one envelope (`seqbench/benchinfo.py`):',
        "",
        "| key | what |",
        "|---|---|",
        "| `benchmark` | the file's name |",
        "| `variant` | the script's options that differ from their defaults (`{}`: the script as it ships) |",
        "| `command` | the command line that produced the run |",
        "| `commit` | seqbench's version and git commit |",
        "| `started` | UTC start time |",
        "| `machine` | CPU model and flags, native bf16, cores, torch threads, load average before and after, device |",
        "| `result` | the benchmark's own numbers |",
        "| `provenance` | converted runs only: the file it came from, the commit that last wrote it, missing fields |",
        "",
        "A new run replaces the runs of the same variant in its file; git keeps the older ones. Rerun a script",
        "(its docstring has the command), then `python -m seqbench.benchinfo index` to refresh this page.",
        "A date \"by D (committed)\" means the run recorded no start time; D is when its file was committed.",
    ]
    gaps = []
    for path in result_files(root):
        data = json.loads(path.read_text())
        name = data.get("benchmark", path.stem)
        script, what = BENCHMARKS.get(name, ("?", ""))
        rel = path.relative_to(root / "benchmarks").as_posix()
        lines += ["", f"## {name}", "", f"`{script}`: {what}. File: [`{rel}`]({rel}).", "",
                  "| run | variant | machine | date | commit | command | headline |",
                  "|---|---|---|---|---|---|---|"]
        for i, run in enumerate(data.get("runs", [])):
            head = HEADLINES.get(name, lambda r: "")(run.get("result") or {})
            command = f"`{run['command']}`" if run.get("command") else "not recorded"
            lines.append("| " + " | ".join(_cell(x) for x in (
                f"{path.stem}#{i}", _variant_text(run.get("variant")), machine_summary(run.get("machine")),
                _date(run), _commit(run), command, head)) + " |")
            prov = run.get("provenance") or {}
            if prov.get("missing"):
                gaps.append(f"- {path.stem}#{i} (from `{prov.get('converted_from', '?')}`): "
                            f"{', '.join(prov['missing'])}" + (f". {prov['note']}" if prov.get("note") else ""))
    if gaps:
        lines += ["", "## Converted runs: what they do not record", "",
                  "Runs converted from the files `reports/` held before this folder existed keep those files' "
                  "payloads whole under `result`; what a file did not record is null in its envelope:", "", *gaps]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m seqbench.benchinfo", description="benchmark results index")
    ap.add_argument("action", choices=["index"])
    ap.add_argument("--root", type=Path, default=None, help="checkout (default: the one seqbench runs from)")
    ap.add_argument("--check", action="store_true", help="only say whether benchmarks/README.md is up to date")
    args = ap.parse_args(argv)
    root = args.root or repo_root()
    text, path = render_index(root), root / INDEX
    if args.check:
        current = path.read_text() if path.exists() else ""
        print(f"{path}: {'up to date' if current == text else 'out of date'}")
        return 0 if current == text else 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
