"""The retrieval heads' CPU-recipe options: in-batch negatives and the centred initialisation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqbench.context import RunContext
from seqbench.models import create_model
from seqbench.models.llm.data import in_batch_exclusions
from seqbench.models.llm.heads import centre_mlp, in_batch_retrieval_loss, mlp, retrieval_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_in_batch_exclusions_mask_other_rows_targets_and_history_only():
    cands = np.array([[5, 1, 2], [6, 5, 3], [7, 8, 4]])  # column 0 = target
    avoid = np.array([[0, 3, 9], [0, 0, 7], [1, 2, 6]])  # histories, 0 = padding
    ex = in_batch_exclusions(avoid, cands)
    assert ex.shape == (3, 9)
    want = np.zeros((3, 9), dtype=bool)
    want[0, 4] = True  # row 1's negative 5 is row 0's target
    want[0, 5] = True  # row 1's negative 3 is in row 0's history
    want[1, 6] = True  # row 2's target 7 is in row 1's history
    want[2, [1, 2, 3]] = True  # row 0's negatives 1, 2 and row 1's target 6 are in row 2's history
    np.testing.assert_array_equal(ex, want)


def test_in_batch_loss_by_hand():
    torch.manual_seed(0)
    u, items = torch.randn(2, 4), torch.randn(2, 3, 4)
    exclude = torch.zeros(2, 6, dtype=torch.bool)
    exclude[1, 2] = True
    flat = items.reshape(6, 4)
    want = []
    for b in range(2):
        cols = [j for j in range(6) if not exclude[b, j]]
        logits = torch.stack([u[b] @ flat[j] for j in cols])
        want.append(-F.log_softmax(logits, 0)[cols.index(3 * b)])
    torch.testing.assert_close(in_batch_retrieval_loss(u, items, exclude), torch.stack(want).mean())
    # one user alone is the plain 1 + C - 1 loss
    torch.testing.assert_close(in_batch_retrieval_loss(u[:1], items[:1], exclude[:1, :3]),
                               retrieval_loss(u[:1], items[:1]))


def test_centre_mlp_shifts_the_input_and_shrinks_the_output_only():
    torch.manual_seed(0)
    net = mlp(6, 16, 3, torch.nn.LeakyReLU())
    ref = copy.deepcopy(net)
    mean = torch.randn(6) * 10
    centre_mlp(net, mean, out_scale=0.1)
    with torch.no_grad():
        ref[-1].weight.mul_(0.1)
        x = torch.randn(5, 6) + mean
        torch.testing.assert_close(net(x), ref(x - mean), rtol=1e-5, atol=1e-5)
    assert torch.equal(net[0].weight, ref[0].weight) and torch.equal(net[-1].bias, ref[-1].bias)


@pytest.mark.parametrize("name", ["llmsrec", "tallrec"])
def test_centred_setup_recentres_on_the_initial_states(name, tiny, tmp_path, monkeypatch):
    """setup() with head_init=centred changes exactly f_user's / f_item's first bias and last weights, and the
    centred f_user sees its sample's states with zero mean at the first Linear (up to its old bias)."""
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path))
    base = {"llm": "tiny-random", "dtype": "fp32", "teacher_epochs": 1}
    models = {}
    for init in ("official", "centred"):
        models[init] = create_model(name, tiny.n_items, {**base, "head_init": init})
        models[init].setup(tiny, tiny.histories("train"), RunContext(seed=0))
    off, cen = (dict(models[k].heads.named_parameters()) for k in ("official", "centred"))
    changed = {k for k in off if not torch.equal(off[k], cen[k])}
    assert changed == {"f_user.0.bias", "f_user.3.weight", "f_item.0.bias", "f_item.3.weight"}
    torch.testing.assert_close(cen["f_user.3.weight"], off["f_user.3.weight"] * 0.1)
    shift = (off["f_user.0.bias"] - cen["f_user.0.bias"]).detach()
    mean = torch.linalg.lstsq(off["f_user.0.weight"].detach(), shift[:, None]).solution[:, 0]
    torch.testing.assert_close(off["f_user.0.weight"].detach() @ mean, shift, rtol=1e-4, atol=1e-4)
    assert mean.norm() > 0
