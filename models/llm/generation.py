"""The title-generation task for the LLM recommenders (paper Tables 1 and 4, Fig. 1a;
docs/models.md#llm4rec-baselines-tallrec-llara-collm-a-llmrec).

The prompt shows the model's own history lines (its soft tokens included: [HistoryEmb] after each title for
LLaRA / CoLLM / A-LLMRec, [UserRep] for CoLLM / A-LLMRec) and then 20 candidate titles (target + 19
non-interacted items whose normalised titles all differ), each followed by [HistoryEmb] when the model has
that token (LLaRA's candidate embeddings). Training is LM cross-entropy on the target title plus the
end-of-sequence token (paper App. A.1, Eq. 5); evaluation decodes greedily and names the candidate with
``seqbench.eval.generation``'s matching rule, on the titles exactly as the prompt shows them.

Wording (``generation_prompt``):
* ``paper`` (default): the paper's Table 1, verbatim: after the history, ``. Choose one "Title" to recommend
  for this user to buy next from the following item "Title" set: `` then the candidates and ``.``. Table 1's
  "(History Item List: [No.# Time: YYYY/MM/DD Title: ...])" is rendered by the model's own history lines
  (the official code strings its retrieval prompt uses);
* ``seqbench``: seqbench's earlier wording, ``. The candidate items are: `` then the candidates and ``. Which
  candidate will this user purchase next? Answer with its title only:``.
Either way the answer is `` {title}`` (the space belongs to the title's first token, as in running text), so a
valid output is exactly a listed title.

Choices where the paper is silent:
* candidate order: sorted by a hash of (user, item, ``LISTING_SEED``), so it is seeded, the same for every
  model and probe, and independent of which other users are evaluated (validation subsets). Training examples
  draw 19 fresh negatives and a random order per batch from the loop's generator;
* decoding stops at the end-of-sequence token or after ``min(max_new_tokens, longest listed title + 4)``
  tokens of the row (a valid answer is one listed title, so nothing longer can be valid).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from seqbench.data.histories import Histories
from seqbench.eval.generation import score_generation
from seqbench.llm.backbone import TokenIds, attention_kernels
from seqbench.llm.prompts import HISTORY_SEP, PromptBuilder, collate, group_overhead, last_k, plan_groups

from .config import LLMRecConfig
from .data import TEACHER_MAXLEN, training_candidates
from .heads import RetrievalHeads

N_CANDIDATES = 20  # target + 19 title negatives
LISTING_SEED = 20250713
CANDIDATE = '"{title}"'
CANDIDATE_EMB = '"{title}"[HistoryEmb]'
# generation_prompt -> (text between the history and the candidates, text after the candidates)
GENERATION_PROMPTS = {
    "paper": ('. Choose one "Title" to recommend for this user to buy next from the following item "Title" set: ',
              "."),
    "seqbench": (". The candidate items are: ",
                 ". Which candidate will this user purchase next? Answer with its title only:"),
}


class TitleGenerator(Protocol):
    """What the generation task needs from a model (``LLMRecommender`` is one): it never imports the model's
    module."""

    name: str
    n_items: int
    config: LLMRecConfig
    device: torch.device
    progress: Any  # a rich Progress, or None
    builder: PromptBuilder
    tok: Any  # the LLM's tokenizer
    llm: Any  # the (LoRA-wrapped) causal LM: ``generate`` and its output embeddings
    body: Any  # its decoder: hidden states from input embeddings
    ids: TokenIds
    heads: RetrievalHeads
    E: torch.Tensor | None  # frozen item table feeding f_I
    history_emb: bool  # the prompt has [HistoryEmb] slots
    user_rep: bool  # the prompt has a [UserRep] slot

    def teacher_user(self, hist: Histories) -> torch.Tensor: ...

    def embed_with_soft(self, ids: torch.Tensor, soft: list[tuple[int, torch.Tensor]]) -> torch.Tensor: ...

    def set_training(self, on: bool) -> None: ...


def listing_order(users: np.ndarray, candidates: np.ndarray, seed: int = LISTING_SEED) -> np.ndarray:
    """Column order in which each row's candidates are listed: by a 64-bit hash of (user, item, seed)."""
    u = np.asarray(users, dtype=np.uint64)[:, None]
    c = np.asarray(candidates, dtype=np.uint64)
    with np.errstate(over="ignore"):  # wrap-around is the point of the mix
        x = u * np.uint64(0x9E3779B97F4A7C15) ^ c * np.uint64(0xBF58476D1CE4E5B9) ^ np.uint64(seed)
        x ^= x >> np.uint64(31)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(29)
    return np.argsort(x, axis=1, kind="stable")


class GenerationPrompts:
    """Token ids of generation prompts for one model (its template, soft tokens and title cache)."""

    def __init__(self, model: TitleGenerator):
        self.m = model
        self.b = model.builder
        self.cand_line = CANDIDATE_EMB if model.history_emb else CANDIDATE
        self.eos = model.tok.eos_token_id
        wording = model.config.generation_prompt
        if wording not in GENERATION_PROMPTS:
            raise ValueError(f"generation_prompt '{wording}' is not one of {', '.join(GENERATION_PROMPTS)}")
        self.intro, self.outro = GENERATION_PROMPTS[wording]

    def texts(self, hist: Histories, listed: np.ndarray) -> tuple[list[str], Histories]:
        """(prompt strings, the shown history): the model's history lines (last ``window`` items), then the
        candidates in ``listed`` order ((B, n) item ids) and the question."""
        b = self.b
        shown = last_k(hist, np.minimum(hist.lengths, b.window))
        texts = [head + self.intro
                 + HISTORY_SEP.join(self.cand_line.format(title=b.titles[i]) for i in listed[row].tolist())
                 + self.outro for row, head in enumerate(b.history_texts(shown))]
        return texts, shown

    def prompt_rows(self, hist: Histories, listed: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(token ids per row, the items behind each row's [HistoryEmb] slots in prompt order; empty lists for
        models without the token)."""
        texts, shown = self.texts(hist, listed)
        ids = self.b.assemble(texts)
        if not self.m.history_emb:
            return ids, []
        off = shown.offsets
        return ids, [np.concatenate([shown.items[off[r]:off[r + 1]], listed[r]]).astype(np.int64)
                     for r in range(len(listed))]

    def prompts(self, hist: Histories, listed: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """(token ids per row, the [HistoryEmb] items of all rows flattened in prompt order)."""
        ids, rows = self.prompt_rows(hist, listed)
        return ids, np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)

    def answer(self, item: int) -> np.ndarray:
        """The target title's tokens + end-of-sequence (what the LM loss is on)."""
        return np.concatenate([self.b.piece(" " + self.b.titles[item]), [self.eos]]).astype(np.int64)

    def budgets(self, listed: np.ndarray) -> np.ndarray:
        """Tokens each row may decode: its longest listed title + 4, at most ``max_new_tokens``. Per row, so an
        answer never depends on which other rows share its batch."""
        uniq, inv = np.unique(listed, return_inverse=True)
        lens = np.array([len(self.b.piece(" " + self.b.titles[int(i)])) for i in uniq], dtype=np.int64)
        return np.minimum(lens[inv.reshape(listed.shape)].max(axis=1) + 4, self.m.config.max_new_tokens)


def _soft(model: TitleGenerator, items_per_row: list[np.ndarray],
          o_u: torch.Tensor | None) -> list[tuple[int, torch.Tensor]]:
    heads, soft = model.heads, []
    if heads.f_I is not None:
        flat = torch.from_numpy(np.concatenate(items_per_row)).to(model.device)
        soft.append((model.ids.history_emb, heads.f_I(model.E[flat])))
    if o_u is not None and heads.f_U is not None:
        soft.append((model.ids.user_rep, heads.f_U(o_u)))
    return soft


def generation_loss(model: TitleGenerator, hist: Histories, targets: np.ndarray, o_u: torch.Tensor | None,
                    rng: np.random.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """LM cross-entropy on the target title (+ EOS) after a prompt listing it among 19 fresh negatives."""
    gp = GenerationPrompts(model)
    cands = training_candidates(hist.padded(TEACHER_MAXLEN), targets, model.n_items, N_CANDIDATES - 1, rng)
    listed = np.take_along_axis(cands, np.argsort(rng.random(cands.shape), axis=1), axis=1)
    prompt_ids, items = gp.prompt_rows(hist, listed)
    answers = [gp.answer(int(t)) for t in targets]
    rows = [np.concatenate([p, a]) for p, a in zip(prompt_ids, answers, strict=True)]
    ids, mask = collate(rows, model.ids.pad)
    x = model.embed_with_soft(ids, _soft(model, items, o_u if model.user_rep else None))
    with attention_kernels(model.device):
        hidden = model.body(inputs_embeds=x, attention_mask=mask.to(model.device),
                            use_cache=False).last_hidden_state
    # position t-1 predicts token t: gather the states before each answer token, then the LM head on those only
    pos = np.concatenate([np.arange(len(p) - 1, len(p) + len(a) - 1) for p, a in zip(prompt_ids, answers,
                                                                                       strict=True)])
    row = np.repeat(np.arange(len(rows)), [len(a) for a in answers])
    states = hidden[torch.from_numpy(row).to(model.device), torch.from_numpy(pos).to(model.device)]
    logits = model.llm.get_output_embeddings()(states).float()
    gold = torch.from_numpy(np.concatenate(answers)).to(model.device)
    loss = F.cross_entropy(logits, gold)
    return loss, {"generation": float(loss.detach())}


@torch.no_grad()
def generate_titles(model: TitleGenerator, hist: Histories, listed: np.ndarray, task=None) -> list[str]:
    """Greedy decoding (transformers' ``generate`` on left-padded prompt embeddings), rows in input order."""
    gp = GenerationPrompts(model)
    prompt_ids, items = gp.prompt_rows(hist, listed)
    o_u = model.teacher_user(hist) if model.user_rep else None
    budget = gp.budgets(listed)
    lens = np.fromiter((len(p) for p in prompt_ids), dtype=np.int64, count=len(prompt_ids))
    out: list[str] = [""] * len(prompt_ids)
    cfg = model.config
    overhead = group_overhead(cfg.group_overhead, model.device)
    for g in plan_groups(lens, cfg.user_batch_size, cfg.max_batch_tokens, overhead):
        ids, mask = collate_left([prompt_ids[i] for i in g], model.ids.pad)
        rows_items = [items[i] for i in g] if items else []
        soft = _soft(model, rows_items, None if o_u is None else o_u[torch.from_numpy(g).to(model.device)])
        x = model.embed_with_soft(ids, soft)
        with attention_kernels(model.device):
            new = model.llm.generate(inputs_embeds=x, attention_mask=mask.to(model.device),
                                     max_new_tokens=int(budget[g].max()), do_sample=False, num_beams=1,
                                     pad_token_id=model.ids.pad, eos_token_id=gp.eos).cpu()
        texts = model.tok.batch_decode([row[:budget[i]] for i, row in zip(g, new, strict=True)],
                                       skip_special_tokens=True)
        for i, text in zip(g, texts, strict=True):
            out[i] = text.strip()
        if task is not None:
            model.progress.update(task, advance=len(g))
    return out


def evaluate_generation(model: TitleGenerator, hist: Histories, candidates: np.ndarray) -> dict:
    """Per-user ``hr@1`` (strict), ``hr@1_lenient``, ``invalid`` and the outputs for persisted (target-first)
    candidate rows. Outputs are matched against the titles as the prompt showed them (cleaned: a missing title
    reads "Empty title"), so every target can be named."""
    cands = np.asarray(candidates, dtype=np.int64)
    listed = np.take_along_axis(cands, listing_order(hist.users, cands), axis=1)
    target_at = np.argmax(listed == cands[:, :1], axis=1)
    task = model.progress.add_task(f"{model.name} generate", total=len(hist)) if model.progress else None
    model.set_training(False)
    outputs = generate_titles(model, hist, listed, task)
    if task is not None:
        model.progress.remove_task(task)
    shown = model.builder.titles
    titles = [[shown[int(i)] for i in row] for row in listed]
    scored = score_generation(outputs, titles, target_at)
    return {"hr@1": scored["hr@1"], "hr@1_lenient": scored["hr@1_lenient"], "invalid": scored["invalid"],
            "outputs": outputs}


def collate_left(seqs: list[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and mask (decoding appends on the right, so every row's last token lines up)."""
    ids, mask = collate([s[::-1] for s in seqs], pad_id)
    return ids.flip(1), mask.flip(1)
