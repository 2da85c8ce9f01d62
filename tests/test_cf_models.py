"""GRU4Rec, BERT4Rec, NextItNet and the popularity floor: shapes, masking, learning, persistence,
determinism (docs/models/gru4rec.md, bert4rec.md, nextitnet.md; ties: docs/protocols.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqbench.context import RunContext, seed_everything
from seqbench.data.histories import Histories
from seqbench.eval.evaluator import evaluate
from seqbench.models import MODELS, create_model
from seqbench.models.cf.bert4rec import BERT4RecConfig, BERT4RecNet, sliding_windows
from seqbench.models.cf.common import CFNet
from seqbench.models.cf.gru4rec import GRU4RecConfig, GRU4RecNet, right_align
from seqbench.models.cf.nextitnet import NextItNetConfig, NextItNetNet

from .conftest import assert_loss_drops

N_ITEMS = 50
NETS = {
    "gru4rec": (GRU4RecNet, GRU4RecConfig),
    "bert4rec": (BERT4RecNet, BERT4RecConfig),
    "nextitnet": (NextItNetNet, NextItNetConfig),
}
SMALL = {"gru4rec": {}, "bert4rec": {"n_heads": 2}, "nextitnet": {"dilations": (1, 2, 4)}}


def _net(name: str, maxlen: int = 12, **kw) -> CFNet:
    torch.manual_seed(0)
    net_cls, cfg_cls = NETS[name]
    return net_cls(N_ITEMS, cfg_cls(d=16, maxlen=maxlen, dropout=0.0, **SMALL[name], **kw)).eval()


def _no_attn_dropout(name: str) -> dict:
    return {"attn_dropout": 0.0} if name == "bert4rec" else {}


@pytest.mark.parametrize("name", list(NETS))
def test_registered_and_shapes(name):
    assert MODELS[name].family == "CF-SRec" and MODELS["pop"].family == "baseline"
    net = _net(name)
    seq = torch.randint(1, N_ITEMS + 1, (4, 11))
    assert net.user_states(seq).shape == (4, 16)
    assert net.score(seq, torch.randint(1, N_ITEMS + 1, (4, 7))).shape == (4, 7)
    loss = net.train().loss(torch.randint(1, N_ITEMS + 1, (4, 13)), torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)


@pytest.mark.parametrize("name", list(NETS))
def test_left_padding_does_not_change_the_user_state(name):
    """The same history with more or less left padding, or with the padding row of the item table
    perturbed, gives the same state (GRU: right-aligned recurrence; CNN: pads re-zeroed after every
    conv; BERT: padded keys masked, positions attached to slots from the right)."""
    net = _net(name, **_no_attn_dropout(name))
    hist = torch.tensor([[5, 9, 3, 8, 2]])
    base = net.user_states(torch.cat([torch.zeros(1, 6, dtype=torch.long), hist], 1))
    for pad in (0, 1, 3):
        padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), hist], 1)
        assert torch.allclose(net.user_states(padded), base, atol=1e-5), pad
    # a batch mixing lengths gives every row the state it has alone
    other = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 7]])
    both = net.user_states(torch.cat([torch.cat([torch.zeros(1, 6, dtype=torch.long), hist], 1), other]))
    assert torch.allclose(both[0], base[0], atol=1e-5)
    assert torch.allclose(both[1], net.user_states(other[:, -3:])[0], atol=1e-5)
    with torch.no_grad():
        net.item.weight[0].normal_()
    assert torch.allclose(net.user_states(torch.cat([torch.zeros(1, 6, dtype=torch.long), hist], 1)), base,
                          atol=1e-5)


def test_gru4rec_state_is_the_plain_recurrence():
    net = _net("gru4rec")
    seq = torch.tensor([[0, 0, 0, 4, 8, 15], [16, 23, 42, 1, 2, 3]])
    right, length = right_align(seq)
    assert right.tolist() == [[4, 8, 15, 0, 0, 0], [16, 23, 42, 1, 2, 3]] and length.tolist() == [3, 6]
    with torch.no_grad():
        h = torch.zeros(1, 1, 16)
        _, h = net.gru(net.item(torch.tensor([[4, 8, 15]])), h)
    assert torch.allclose(net.user_states(seq)[0], h[0, 0], atol=1e-6)


@pytest.mark.parametrize("name", ["gru4rec", "nextitnet"])
def test_causal_models_do_not_see_the_future(name):
    net = _net(name)
    seq = torch.tensor([[0, 0, 3, 9, 4, 7, 1, 12, 30, 2, 6, 5]])  # last item 5 as in states[5]
    states = {}
    for last in (5, 40):
        s = seq.clone()
        s[0, -1] = last
        # the state after every prefix: the user state of that prefix
        states[last] = torch.stack([net.user_states(s[:, : t + 1]) for t in range(2, s.size(1))])
    assert torch.allclose(states[5][:-1], states[40][:-1], atol=1e-6)
    assert not torch.allclose(states[5][-1], states[40][-1])
    if name == "nextitnet":  # the per-position encoder agrees with prefix states
        full = net.encode(seq)[0, 2:]
        assert torch.allclose(full, states[5][:, 0], atol=1e-5)


def test_bert4rec_cloze_masks_and_targets():
    net = _net("bert4rec", maxlen=20, max_predictions=5, last_only_prob=0.3)
    gen = torch.Generator().manual_seed(0)
    batch = torch.zeros(64, 20, dtype=torch.long)
    lens = torch.randint(1, 21, (64,), generator=gen)
    for b, n in enumerate(lens.tolist()):
        batch[b, 20 - n :] = torch.randint(1, N_ITEMS + 1, (n,), generator=gen)
    masked = net.cloze(batch, gen)
    real = batch != 0
    assert not (masked & ~real).any()  # only real items are ever masked, so targets are never pad
    assert (batch[masked] >= 1).all() and (batch[masked] <= N_ITEMS).all()  # ... nor [MASK]
    n_masked = masked.sum(1)
    expect = torch.round(lens.double() * 0.6).long().clamp(1, 5).minimum(lens)
    only_last = (n_masked == 1) & masked[:, -1]
    assert ((n_masked == expect) | only_last).all()
    assert only_last.sum() > 5 and (n_masked > 1).sum() > 20  # both instance kinds occur
    # the model's input holds [MASK] wherever it predicts: the target item is never visible there
    inp = batch.masked_fill(masked, net.mask_id)
    assert (inp[masked] == net.mask_id).all() and not (inp[~masked] == net.mask_id).any()
    # swapping the targets at masked slots cannot change anything the model computes
    swapped = batch.clone()
    swapped[masked] = swapped[masked] % N_ITEMS + 1
    assert torch.equal(swapped.masked_fill(masked, net.mask_id), inp)


def test_bert4rec_inference_appends_mask_and_ignores_older_items():
    net = _net("bert4rec", maxlen=8, attn_dropout=0.0)
    hist = torch.tensor([[0, 0, 3, 9, 4, 7, 1, 12, 30, 2, 6]])
    state = net.user_states(hist)
    assert torch.allclose(state, net.user_states(hist[:, -7:]), atol=1e-6)  # window = maxlen - 1
    with torch.no_grad():
        direct = net.head(net.encode(torch.tensor([[4, 7, 1, 12, 30, 2, 6, net.mask_id]]))[:, -1])
    assert torch.allclose(state, direct, atol=1e-6)
    # bidirectional: an earlier item does change the state
    changed = hist.clone()
    changed[0, -3] = 44
    assert not torch.allclose(net.user_states(changed), state)
    rec = create_model("bert4rec", N_ITEMS, {"maxlen": 8})
    assert rec.window == 7


def test_sliding_windows_follow_the_official_builder():
    lens = [3, 5, 12]
    items = np.concatenate([np.arange(1, n + 1) + 100 * i for i, n in enumerate(lens)]).astype(np.int64)
    off = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    hist = Histories(np.arange(1, 4), items, np.zeros_like(items), off)
    win = sliding_windows(hist, 5, 2)
    # official: starts range(n - maxlen, 0, -step) then 0, i.e. 7, 5, 3, 1, 0 for n = 12
    expect = [[0, 0, 1, 2, 3], [101, 102, 103, 104, 105]] + [list(range(201 + s, 206 + s)) for s in (7, 5, 3, 1, 0)]
    assert win.tolist() == expect
    assert sliding_windows(hist, 5, 0).tolist() == hist.padded(5).tolist()


@pytest.mark.parametrize("name", list(NETS))
def test_a_few_steps_lower_the_loss(name):
    torch.manual_seed(0)
    net_cls, cfg_cls = NETS[name]
    net = net_cls(30, cfg_cls(d=16, maxlen=10, dropout=0.0, **SMALL[name]))
    assert_loss_drops(net, 100 if name == "bert4rec" else 40)  # attention learns after a plateau


TINY_SETTINGS = {
    "gru4rec": {"d": 16, "maxlen": 16},
    "bert4rec": {"d": 16, "maxlen": 12, "d_ffn": 32},
    "nextitnet": {"d": 16, "maxlen": 16, "dilations": (1, 2, 4)},
}


@pytest.mark.parametrize("name", list(TINY_SETTINGS))
def test_fit_save_load_round_trip_and_determinism(tiny, tmp_path, name):
    settings = {**TINY_SETTINGS[name], "max_epochs": 3, "eval_every": 1}

    def train():
        seed_everything(0)
        m = create_model(name, tiny.n_items, settings)
        return m, m.fit(tiny, tiny.histories("train"), RunContext(seed=0))

    m1, r1 = train()
    m2, r2 = train()
    test = tiny.histories("test")
    s1 = evaluate(m1, test, tiny.candidates["test"]).summary
    assert s1 == evaluate(m2, test, tiny.candidates["test"]).summary
    assert r1.curve == r2.curve and r1.best_epoch >= 1 and r1.epochs_run == 3
    m1.save(tmp_path / "m")
    m3 = create_model(name, tiny.n_items, TINY_SETTINGS[name])
    m3.load(tmp_path / "m")
    assert np.allclose(m3.score(test, tiny.candidates["test"]), m1.score(test, tiny.candidates["test"]))
    assert m1.user_representation(test).shape == (tiny.n_users, 16)


def test_pop_scores_by_train_counts_and_ties_equal(tiny, tmp_path):
    model = create_model("pop", tiny.n_items)
    train = tiny.histories("train")
    rep = model.fit(tiny, train, RunContext(seed=0))
    counts = np.bincount(train.items, minlength=tiny.n_items + 1)
    cands = tiny.candidates["test"]
    scores = model.score(tiny.histories("test"), cands)
    assert np.array_equal(scores, counts[cands])
    same = counts[cands[:, :, None]] == counts[cands[:, None, :]]
    assert np.array_equal(scores[:, :, None] == scores[:, None, :], same)  # equal counts -> equal scores
    res = evaluate(model, tiny.histories("test"), cands).summary
    assert 0.0 <= res["ndcg@10"] <= 1.0 and rep.best_valid >= 0.0 and rep.epochs_run == 0
    assert model.user_representation(train).shape == (tiny.n_users, 1) and model.window == 0
    model.save(tmp_path / "pop")
    again = create_model("pop", tiny.n_items)
    again.load(tmp_path / "pop")
    assert np.array_equal(again.score(tiny.histories("test"), cands), scores)
