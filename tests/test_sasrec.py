"""SASRec network: shapes, masking, learning, persistence, determinism."""

import numpy as np
import pytest
import torch

from seqbench.context import RunContext, seed_everything
from seqbench.eval.evaluator import evaluate
from seqbench.models import create_model
from seqbench.models.cf.sasrec import SASRecConfig, SASRecNet

from .conftest import assert_loss_drops


def _net(**kw):
    torch.manual_seed(0)
    return SASRecNet(50, SASRecConfig(d=16, maxlen=12, **kw)).eval()


def test_shapes():
    net = _net()
    seq = torch.randint(1, 51, (4, 12))
    assert net.encode(seq).shape == (4, 12, 16)
    assert net.user_states(seq).shape == (4, 16)
    assert net.score(seq, torch.randint(1, 51, (4, 7))).shape == (4, 7)


def test_padding_does_not_change_the_user_state():
    """No attention to padded slots: more left padding (a shorter window) gives the same state when
    positions are attached to slots, and a garbage item placed *in* a padded slot cannot leak."""
    net = _net(dropout=0.0, attn_dropout=0.0)
    seq = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 5, 9, 3, 8, 2]])
    base = net.user_states(seq)
    assert torch.allclose(base, net.encode(seq)[:, -1], atol=1e-6)  # trimming all-pad columns is exact
    # Same history, but the pad item-embedding row perturbed: must not matter (rows are zeroed + masked).
    with torch.no_grad():
        net.item.weight[0].normal_()
    assert torch.allclose(net.user_states(seq), base, atol=1e-6)
    # The future never leaks: the state at position t ignores items after t.
    full = net.encode(seq)
    changed = seq.clone()
    changed[0, -1] = 7
    assert torch.allclose(net.encode(changed)[0, :-1], full[0, :-1], atol=1e-6)


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    net = SASRecNet(30, SASRecConfig(d=16, maxlen=10))
    assert_loss_drops(net, 30)


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_fit_save_load_round_trip_and_determinism(tiny, tmp_path, loss):
    def train():
        seed_everything(0)
        m = create_model("sasrec", tiny.n_items, {"d": 16, "maxlen": 16, "max_epochs": 3, "eval_every": 1,
                                                   "loss": loss})
        rep = m.fit(tiny, tiny.histories("train"), RunContext(seed=0))
        return m, rep

    m1, r1 = train()
    m2, r2 = train()
    test = tiny.histories("test")
    s1 = evaluate(m1, test, tiny.candidates["test"]).summary
    assert s1 == evaluate(m2, test, tiny.candidates["test"]).summary
    assert r1.curve == r2.curve and r1.best_epoch >= 1
    m1.save(tmp_path / "m")
    m3 = create_model("sasrec", tiny.n_items, {"d": 16, "maxlen": 16, "loss": loss})
    m3.load(tmp_path / "m")
    assert np.allclose(m3.score(test, tiny.candidates["test"]), m1.score(test, tiny.candidates["test"]))
    assert m1.user_representation(test).shape == (tiny.n_users, 16)
