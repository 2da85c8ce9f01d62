"""CTRL (docs/models/ctrl.md): the title-initialised item table, the text-embedding cache, the contrastive
variant's stage 1, and the usual fit / save / load contract, with the seeded ``tiny-random`` text encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqbench.context import RunContext, seed_everything
from seqbench.errors import SeqbenchError
from seqbench.eval.evaluator import evaluate
from seqbench.llm.prompts import clean_title
from seqbench.models import MODELS, create_model
from seqbench.models import item_text as item_text_mod
from seqbench.models.item_text import text_embeddings
from seqbench.models.lm.ctrl import Aligner, CTRLConfig, CTRLNet, pca_table, user_texts

from .conftest import step_losses

SMALL = {"d": 16, "maxlen": 16, "max_epochs": 3, "eval_every": 1, "text_encoder": "tiny-random"}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQBENCH_CACHE", str(tmp_path / "cache"))


def test_registered_as_lm_based():
    assert MODELS["ctrl"].family == "LM-based"
    cfg = CTRLConfig()
    assert cfg.variant == "init" and cfg.text_encoder == "all-minilm-l6-v2"


def test_pca_table_keeps_the_principal_axes_and_takes_the_target_scale():
    gen = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(40, 40, generator=gen))[0]
    scales = torch.cat([torch.tensor([10.0, 8.0, 6.0, 4.0]), torch.linspace(1.0, 0.1, 36)])  # decreasing variances
    coords = torch.randn(300, 40, generator=gen) * scales
    text = coords @ basis.T + 3.0
    table = pca_table(text, 4, 0.05)
    assert table.shape == (300, 4) and table.std().item() == pytest.approx(0.05, rel=1e-4)
    var = table.var(0)
    assert torch.all(var[:-1] > var[1:])  # ordered like the components, not whitened
    # the 4 columns span the same space as the 4 largest true components
    top = coords[:, :4] - coords[:, :4].mean(0)
    resid = table.double() - top.double() @ torch.linalg.lstsq(top.double(), table.double()).solution
    assert resid.norm() / table.double().norm() < 0.05
    with pytest.raises(SeqbenchError, match="principal axes"):
        pca_table(text[:3], 4, 0.05)


def test_item_table_starts_from_the_titles(tiny):
    seed_everything(0)
    m = create_model("ctrl", tiny.n_items, SMALL)
    before = m.net.item.weight.detach().clone()
    m.init_items_from_text(tiny, [clean_title(t) for t in tiny.titles], RunContext(seed=0))
    table = m.net.item.weight.detach()
    text = text_embeddings(tiny, [clean_title(t) for t in tiny.titles], "tiny-random")[1:]
    assert torch.equal(table[0], torch.zeros(16))
    assert torch.allclose(table[1:], pca_table(text, 16, float(before[1:].std())))
    assert table[1:].std().item() == pytest.approx(before[1:].std().item(), rel=1e-3)


def test_text_embeddings_are_cached_per_texts(tiny, monkeypatch):
    texts = ["a red lipstick", "blue shampoo", "a red lipstick"]
    first = text_embeddings(tiny, texts, "tiny-random")
    assert first.shape[0] == 3 and torch.allclose(first[0], first[2])

    def no_encoder(*a, **k):
        raise AssertionError("the cached embeddings should have been loaded")

    monkeypatch.setattr(item_text_mod, "load_text_encoder", no_encoder)
    assert torch.equal(text_embeddings(tiny, texts, "tiny-random"), first)
    with pytest.raises(AssertionError, match="cached"):  # other texts: a new entry, so the encoder is needed
        text_embeddings(tiny, texts[:2], "tiny-random")


def test_user_texts_list_recent_titles_newest_first(tiny):
    train = tiny.histories("train")
    titles = [f"t{i}" for i in range(tiny.n_items + 1)]
    texts = user_texts(titles, train, 3)
    row = train.row(0)
    assert texts[0] == "; ".join(f"t{i}" for i in row[-3:][::-1])


def test_fit_is_deterministic_trains_the_table_and_round_trips(tiny, tmp_path):
    def train():
        seed_everything(0)
        m = create_model("ctrl", tiny.n_items, SMALL)
        return m, m.fit(tiny, tiny.histories("train"), RunContext(seed=0))

    m1, r1 = train()
    m2, r2 = train()
    test = tiny.histories("test")
    assert evaluate(m1, test, tiny.candidates["test"]).summary == evaluate(m2, test, tiny.candidates["test"]).summary
    assert r1.curve == r2.curve
    # fine-tuning moved the text-initialised table (every SASRec parameter trains)
    seed_everything(0)
    fresh = create_model("ctrl", tiny.n_items, SMALL)
    fresh.init_items_from_text(tiny, [clean_title(t) for t in tiny.titles], RunContext(seed=0))
    assert not torch.allclose(fresh.net.item.weight, m1.net.item.weight)
    m1.save(tmp_path / "m")
    m3 = create_model("ctrl", tiny.n_items, SMALL)
    m3.load(tmp_path / "m")
    assert np.allclose(m3.score(test, tiny.candidates["test"]), m1.score(test, tiny.candidates["test"]))


def test_aligner_learns_to_pair_states_with_their_texts():
    torch.manual_seed(0)
    aligner = Aligner(8, 12, 3)
    states, text = torch.randn(16, 8), torch.randn(16, 12)
    losses = step_losses(aligner.parameters(), lambda: aligner.loss(states, text), 60)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_contrastive_variant_aligns_then_fine_tunes_with_a_head(tiny):
    logged: list[tuple[str, float, int]] = []
    ctx = RunContext(seed=0, log_metric=lambda n, v, s: logged.append((n, v, s)))
    seed_everything(0)
    m = create_model("ctrl", tiny.n_items, SMALL | {"variant": "contrastive", "align_epochs": 4,
                                                     "align_batch_size": 16})
    assert isinstance(m.net, CTRLNet) and m.net.head is not None
    m.fit(tiny, tiny.histories("train"), ctx)
    align = [v for n, v, _ in logged if n == "align_loss"]
    assert len(align) == 4 and align[-1] < align[0]
    assert any(n == "valid_ndcg@10" for n, _, _ in logged)
    seq = torch.randint(1, tiny.n_items + 1, (3, 5))
    assert torch.allclose(m.net.user_states(seq), m.net.head(m.net.backbone(seq)[:, -1]), atol=1e-6)
