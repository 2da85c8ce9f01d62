"""The window-check table (shuffle-infer at the common window 10 and at each model's own, on one trained model,
with the order-horizon curve) is the study studies/window-check.yaml, with window-check-cpu-proxy.yaml and
window-check-beauty.yaml in the same experiment. Where the options went: --datasets / --models / --set are the
studies' lists and `set.<model>` tables; --include RUN.json has no equivalent (the study trains and logs the
LLM-SRec run itself); --horizon-models: every model of a study gets the curve.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from retired import main  # noqa: E402  (sibling script)

if __name__ == "__main__":
    sys.exit(main("window_check.py", __doc__, ["window-check"]))
