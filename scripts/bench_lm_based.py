"""The LM-based table (CTRL and RECFORMER beside SASRec and pop: shuffle-infer at window 10 and at each model's
own, every other inference probe on the same trained model) is the study studies/lm-based.yaml. Where the
options went: --datasets / --models / --set are the study's lists and `set.<model>` tables; --resume is the
sweep's own resume; --row LABEL=MODEL:k=v (a variant of a model) is a second study file with the same
`experiment` and that model's `set`.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retired import main  # noqa: E402  (sibling script)

if __name__ == "__main__":
    sys.exit(main("bench_lm_based.py", __doc__, ["lm-based"]))
