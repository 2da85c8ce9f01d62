"""What a retired table script does now: print the studies that replaced it and their commands, run nothing.

The table scripts (paper_pattern.py, window_check.py, bench_lm_based.py) became studies, run by
``seqbench sweep studies/NAME.yaml`` (resumable by result identity) and rendered by ``seqbench report --study
NAME``. The commands are read from each study file's header comment, so they cannot drift from the study.
"""

from __future__ import annotations

import sys
from pathlib import Path

STUDIES = Path(__file__).resolve().parents[1] / "studies"
NOTHING_RAN = 2  # exit status of a call that used to run something: a chain `script && next` stops here


def commands(study: str) -> list[str]:
    """The shell lines of ``studies/<study>.yaml``'s header comment: ``seqbench …`` and their continuations."""
    out: list[str] = []
    continued = False
    for line in (STUDIES / f"{study}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        if continued or text.startswith("seqbench "):
            out.append(("    " if continued else "") + text)
            continued = text.endswith("\\")
    return out


def main(script: str, doc: str, studies: list[str], argv: list[str] | None = None) -> int:
    """Print ``doc`` (what the script did and where each of its options went) and every study's commands.
    Exit 0 for ``--help`` alone, else 2: the call ran nothing and wrote no table."""
    argv = sys.argv[1:] if argv is None else argv
    print(f"scripts/{script} is retired and ran nothing.\n\n{doc.strip()}")
    for study in studies:
        print(f"\nstudies/{study}.yaml:")
        print("\n".join(f"  {c}" for c in commands(study)))
    asked_help = bool(argv) and all(a in ("-h", "--help") for a in argv)
    return 0 if asked_help else NOTHING_RAN
