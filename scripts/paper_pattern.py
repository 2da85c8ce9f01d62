"""The paper-pattern table (does shuffling move SASRec and LLM-SRec but not TALLRec, LLaRA, CoLLM, A-LLMRec?) is
the study studies/paper-pattern.yaml. Where the options went: --recipe cpu is the study's `recipe: cpu-proxy`;
--resume is the sweep's own resume (a result already in the experiment is not run again), and a row killed
mid-fit resumes from its checkpoint (`seqbench sweep --checkpoint-minutes`); --tracking-uri is the sweep's and
the report's; the vs-pop test, Holm over a dataset's rows, the proxy marks and the verdict are the report's
paper-pattern view; --llm / --set / --sasrec-set are the study's `set.<model>` tables.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retired import main  # noqa: E402  (sibling script)

if __name__ == "__main__":
    sys.exit(main("paper_pattern.py", __doc__, ["paper-pattern"]))
