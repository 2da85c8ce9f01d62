"""RECFORMER: golden token layout, shuffles move titles and keep positions, what trains, learning, persistence,
determinism and setting errors. Tiny random BERT encoder, tiny synthetic data."""

import io

import numpy as np
import pytest
import torch

from seqbench.context import RunContext, seed_everything
from seqbench.data.histories import Histories
from seqbench.data.permutation import permute_tail
from seqbench.errors import SeqbenchError
from seqbench.models import MODELS, create_model
from seqbench.models.lm.recformer_text import TYPE_KEY, TYPE_VALUE, ItemSentences, item_sentences, layout

from .conftest import step_losses

TINY = {"encoder": "tiny-random", "maxlen": 6, "max_item_tokens": 10, "n_layers": 1}


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _model(n_items: int, **kw):
    seed_everything(0)
    return create_model("recformer", n_items, {**TINY, **kw})


def _hist(rows: list[list[int]]) -> Histories:
    items = np.concatenate([np.asarray(r, dtype=np.int64) for r in rows])
    off = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return Histories(np.arange(1, len(rows) + 1), items, np.arange(len(items), dtype=np.int64), off)


def test_golden_layout():
    # item 1 = "title A", 2 = "title B C", 3 = "title D"  (key id 10, value ids 11..14)
    sent = ItemSentences(ids=np.array([10, 11, 10, 12, 13, 10, 14]), types=np.array([1, 2, 1, 2, 2, 1, 2]),
                         offsets=np.array([0, 0, 2, 5, 7]))
    lay = layout([np.array([1, 2, 3]), np.array([2])], sent, bos=5, pad=0)  # histories oldest first
    assert lay.input_ids.tolist() == [[5, 10, 14, 10, 12, 13, 10, 11], [5, 10, 12, 13, 0, 0, 0, 0]]
    assert lay.token_type.tolist() == [[0, 1, 2, 1, 2, 2, 1, 2], [0, 1, 2, 2, 3, 3, 3, 3]]
    assert lay.item_pos.tolist() == [[0, 1, 1, 2, 2, 2, 3, 3], [0, 1, 1, 1, 0, 0, 0, 0]]  # 1 = most recent
    assert lay.token_pos.tolist() == [list(range(8))] * 2
    assert lay.mask.tolist() == [[1] * 8, [1, 1, 1, 1, 0, 0, 0, 0]]


def test_item_sentences_key_value_and_truncation():
    from seqbench.llm.text_encoder import _tiny

    _, tok = _tiny()
    key = tok("title", add_special_tokens=False)["input_ids"]
    titles = ["", "Toy Story", "a very long title that goes on and on and on and on"]
    sent = item_sentences(titles, tok, max_item_tokens=8)
    assert sent.lengths[0] == 0  # the padding item has no sentence
    ids, types = sent.sentence(1)
    assert ids.tolist() == key + tok("Toy Story", add_special_tokens=False)["input_ids"]
    assert types.tolist() == [TYPE_KEY] * len(key) + [TYPE_VALUE] * (len(ids) - len(key))
    assert sent.lengths[2] == 8  # cut at max_item_tokens, key included


def test_shuffle_moves_titles_and_keeps_positions():
    """A probe's shuffle (Histories.with_items) moves the item sentences between slots; with equal-length
    sentences, token types, item positions, token positions and the mask are unchanged."""
    titles = [""] + [f"item {c}" for c in "0123456789"]
    m = _model(10)
    m._set_titles(np.asarray(titles))
    assert len(set(m.sentences.lengths[1:])) == 1
    hist = _hist([[1, 2, 3, 4, 5, 6, 7, 8], [9, 10, 3]])
    shuf = permute_tail(hist, m.window, seed=1)
    assert not np.array_equal(shuf.items, hist.items)
    a, b = (layout(m._rows(h), m.sentences, m.bos, m.pad) for h in (hist, shuf))
    for name in ("token_type", "item_pos", "token_pos", "mask"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.input_ids, b.input_ids)
    # slot k of the shuffled layout holds exactly the sentence of the k-th most recent shuffled item
    for r, row in enumerate(m._rows(shuf)):
        for k, item in enumerate(row[::-1], start=1):
            at = b.item_pos[r] == k
            assert b.input_ids[r][at].tolist() == m.sentences.sentence(int(item))[0].tolist()
    assert m._rows(hist)[0].tolist() == [3, 4, 5, 6, 7, 8]  # the window is the last maxlen items


def test_which_parameters_train(tiny):
    m = _model(tiny.n_items)
    m._set_titles(tiny.titles)
    names = {n for n, p in m.net.named_parameters() if p.requires_grad}
    assert "item_pos.weight" in names and "bert.embeddings.token_type_embeddings.weight" in names
    assert "bert.embeddings.word_embeddings.weight" in names and "bert.encoder.layer.0.output.dense.weight" in names
    assert not any("pooler" in n for n in names) and "item_table" not in names  # the table is a frozen buffer
    assert m.net.bert.embeddings.token_type_embeddings.weight.shape[0] == 4
    assert m.net.item_pos.weight.shape[0] == m.window + 1
    m._reencode_items()
    table = m.net.item_table.clone()
    m.net.train()
    hist = tiny.histories("train")
    rows = [hist.row(b)[:-1][-m.window:] for b in range(8)]
    loss = m._loss(rows, torch.tensor([int(hist.row(b)[-1]) for b in range(8)]),
                   torch.nn.functional.normalize(table[1:], dim=-1))
    loss.backward()
    for n, p in m.net.named_parameters():
        assert p.grad is not None, n
    assert float(m.net.item_pos.weight.grad.abs().sum()) > 0
    assert float(m.net.bert.embeddings.token_type_embeddings.weight.grad[:3].abs().sum()) > 0
    assert torch.equal(m.net.item_table, table)


def test_a_few_steps_lower_the_loss(tiny):
    m = _model(tiny.n_items, dropout=0.0)
    m._set_titles(tiny.titles)
    # a random item table: the tiny random encoder's one-item <s> states are nearly identical, and the point
    # here is that the sequence side learns against a fixed table (as within a stage-1 epoch)
    d = m.net.bert.config.hidden_size
    table = torch.nn.functional.normalize(torch.randn(tiny.n_items, d, generator=torch.Generator().manual_seed(0)),
                                          dim=-1)
    hist = tiny.histories("train")
    rows = [hist.row(b)[:-1][-m.window:] for b in range(16)]
    targets = torch.tensor([int(hist.row(b)[-1]) for b in range(16)])
    m.net.train()
    losses = step_losses(m.net.parameters(), lambda: m._loss(rows, targets, table), 25, 3e-3, torch.optim.AdamW)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_fit_save_load_round_trip_and_determinism(tiny, tmp_path):
    cfg = {"max_epochs": 2, "stage2_epochs": 1, "lr": 1e-3, "warmup_steps": 2, "batch_size": 32}

    def train():
        m = _model(tiny.n_items, **cfg)
        return m, m.fit(tiny, tiny.histories("train"), RunContext(seed=0))

    (m1, r1), (m2, r2) = train(), train()
    test, cands = tiny.histories("test"), tiny.candidates["test"]
    s1 = m1.score(test, cands)
    assert s1.shape == cands.shape and np.isfinite(s1).all()
    assert r1.curve == r2.curve and np.array_equal(s1, m2.score(test, cands))
    assert r1.epochs_run >= 2 and r1.best_epoch >= 1 and [e for e, _, _ in r1.curve][-1] in (3,)
    m1.save(tmp_path / "m")
    m3 = _model(tiny.n_items, **cfg)
    m3.load(tmp_path / "m")
    assert np.array_equal(m3.score(test, cands), s1)
    rep = m3.user_representation(test)
    assert rep.shape == (tiny.n_users, m3.net.bert.config.hidden_size)
    full = m3.score_all(test)  # full ranking reads the same item table
    assert full.shape == (tiny.n_users, tiny.n_items + 1)
    assert np.allclose(np.take_along_axis(full, cands, 1), s1, atol=1e-5)


def test_prefixes_per_user_multiplies_the_steps(tiny, monkeypatch):
    """k prefixes per user: k times the optimizer steps per epoch, each copy with its own target position."""
    seen: list[list[int]] = []

    def counting(self, rows, targets, table):
        seen.append([int(t) for t in targets])
        return orig(self, rows, targets, table)

    from seqbench.models.lm.recformer import RECFormer
    orig = RECFormer._loss
    monkeypatch.setattr(RECFormer, "_loss", counting)
    cfg = {"max_epochs": 1, "stage2_epochs": 0, "batch_size": 16, "warmup_steps": 1}
    _model(tiny.n_items, **cfg).fit(tiny, tiny.histories("train"), RunContext(seed=0))
    one = sum(len(t) for t in seen)
    seen.clear()
    _model(tiny.n_items, prefixes_per_user=3, **cfg).fit(tiny, tiny.histories("train"), RunContext(seed=0))
    assert sum(len(t) for t in seen) == 3 * one == 3 * int((tiny.histories("train").lengths >= 2).sum())


def test_mean_pooling_ignores_padding_and_differs_from_cls(tiny):
    mean, cls = _model(tiny.n_items, pooling="mean"), _model(tiny.n_items)
    for m in (mean, cls):
        m._set_titles(tiny.titles)
        m.net.eval()
    hist = _hist([[1, 2, 3, 4, 5, 6], [7], [2, 3, 4]])
    short = 1  # padded to the 6-item row's length in the batch
    alone = mean.user_representation(hist.take(np.array([short])))
    np.testing.assert_allclose(mean.user_representation(hist)[short], alone[0], rtol=1e-4, atol=1e-5)
    assert not np.allclose(alone, cls.user_representation(hist.take(np.array([short]))))
    with pytest.raises(SeqbenchError, match="pooling"):
        _model(10, pooling="max")


def test_settings_errors(tmp_path):
    with pytest.raises(SeqbenchError, match="n_layers=3"):
        _model(10, n_layers=3)
    with pytest.raises(SeqbenchError, match="positions"):
        _model(10, maxlen=20, max_item_tokens=10)  # 201 tokens > the tiny encoder's 128 positions
    with pytest.raises(SeqbenchError, match="no room"):
        _model(10, max_item_tokens=1)
    with pytest.raises(SeqbenchError, match="cannot load text encoder"):
        _model(10, encoder=str(tmp_path))
    with pytest.raises(SeqbenchError, match="dtype"):
        _model(10, dtype="fp8")


def test_registered():
    assert MODELS["recformer"].family == "LM-based"
    assert MODELS["recformer"].load_class().name == "recformer"


class _MemoryCheckpointer:
    """Keeps every saved state (serialised, as the file checkpointer does) and resumes from a chosen one."""

    every_s = 0.0

    def __init__(self, resume_from: bytes | None = None):
        self.states: list[bytes] = []
        self.resume_from = resume_from

    def load(self):
        if self.resume_from is None:
            return None
        return torch.load(io.BytesIO(self.resume_from), weights_only=False)  # as FileCheckpointer

    def save(self, state) -> None:
        buf = io.BytesIO()
        torch.save(state, buf)
        self.states.append(buf.getvalue())

    def clear(self) -> None:
        pass


@pytest.mark.parametrize("resume_at", [0, 2])  # after stage-1 epoch 1; after the first stage-2 epoch
def test_resume_from_checkpoint_is_identical(tiny, resume_at):
    cfg = {"max_epochs": 2, "stage2_epochs": 2, "stage2_patience": 2, "lr": 1e-3, "warmup_steps": 2,
           "batch_size": 32}
    full_ckpt = _MemoryCheckpointer()
    m1 = _model(tiny.n_items, **cfg)
    r1 = m1.fit(tiny, tiny.histories("train"), RunContext(seed=0, checkpoint=full_ckpt))
    m2 = _model(tiny.n_items, **cfg)
    r2 = m2.fit(tiny, tiny.histories("train"),
                RunContext(seed=0, checkpoint=_MemoryCheckpointer(full_ckpt.states[resume_at])))
    assert r1.curve == r2.curve and r1.best_epoch == r2.best_epoch
    test, cands = tiny.histories("test"), tiny.candidates["test"]
    assert np.array_equal(m1.score(test, cands), m2.score(test, cands))
