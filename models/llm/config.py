"""Settings shared by every LLM recommender (docs/models/llmsrec.md) and the LoRA ones (docs/models/llm4rec.md)."""

from __future__ import annotations

from dataclasses import dataclass

from seqbench.config import AT_LEAST_1, DROPOUT, FRACTION, NON_NEGATIVE, RATE, setting
from seqbench.llm.backbone import DEFAULT_LLM
from seqbench.llm.prompts import PROMPT_WINDOW
from seqbench.space import loguniform


@dataclass
class LLMRecConfig:
    llm: str = setting(DEFAULT_LLM, "LLM: a seqbench name, a Hugging Face id or a local folder")
    dtype: str = setting("auto", "LLM precision (auto: bf16 on a CPU with native bf16, else fp32)",
                         choices=("auto", "bf16", "fp16", "fp32", "bfloat16", "float16", "float32"))
    device: str = setting("auto", "auto = the run's device; cpu | cuda | hpu")
    batch_size: int = setting(20, "users per optimizer step (the official 20; 16 for Electronics)", AT_LEAST_1)
    max_epochs: int = setting(10, "most epochs over the training users", AT_LEAST_1)
    max_steps: int | None = setting(None, "stop after this many optimizer steps in all, with a validation check at "
                                    "the last one (a CPU budget; None: max_epochs and patience decide)", AT_LEAST_1)
    lr: float = setting(1e-4, "Adam learning rate of everything that trains", RATE, space=loguniform(1e-5, 1e-3))
    beta2: float = setting(0.98, "Adam beta2", RATE)
    val_every_frac: float = setting(0.1, "validation every floor(steps_per_epoch * frac) steps and at epoch end",
                                    FRACTION)
    patience: int = setting(5, "validation checks without improvement before stopping (code 5, paper 10)",
                            AT_LEAST_1)
    lr_decay: str = setting("check", "check: x factor per validation check (the code); epoch; none",
                            choices=("check", "epoch", "none"))
    lr_decay_factor: float = setting(0.95, "learning-rate multiplier per decay", FRACTION)
    valid_metric: str = setting("hr@10", "model-selection metric on the validation candidates (the code's)",
                                choices=("hr@10", "ndcg@10", "hr@20", "ndcg@20"))
    max_valid_users: int | None = setting(None, "validate on a seeded subset of this many users (None = all)",
                                          AT_LEAST_1)
    autoregressive: bool = setting(False, "App. E.3: every position of the train sequence is a target")
    n_negatives: int = setting(3, "negatives per training user (official: 1 positive + 3 negatives)", AT_LEAST_1)
    in_batch_negatives: bool = setting(False, "also score each user against the other batch users' candidates "
                                       "(no extra LLM pass; the paper: its own 1 + 3 only)")
    head_init: str = setting("official", "official: Xavier-normal heads (the code); centred: f_user's / f_item's "
                             "first bias recentred on the initial states' mean, last Linear x0.1",
                             choices=("official", "centred"))
    task: str = setting("retrieval", "retrieval ([UserOut]/[ItemOut] heads) or generation (candidate titles in the "
                        "prompt, LM loss on the target title); set with `seqbench run --task`",
                        choices=("retrieval", "generation"))
    max_new_tokens: int = setting(64, "generation: most tokens decoded per answer", AT_LEAST_1)
    generation_prompt: str = setting("paper", "generation: wording around the candidate titles. paper: Table 1's "
                                     "'Choose one \"Title\" to recommend for this user to buy next from the "
                                     "following item \"Title\" set: <candidates>.'; seqbench: the earlier wording "
                                     "'The candidate items are: <candidates>. Which candidate will this user "
                                     "purchase next? Answer with its title only:'", choices=("paper", "seqbench"))
    window: int = setting(PROMPT_WINDOW, "most recent items shown in the prompt", AT_LEAST_1)
    d_proj: int = setting(128, "projection size d' (App. D)", AT_LEAST_1)
    teacher_epochs: int = setting(200, "SASRec teacher: most epochs (official: fixed 200)", AT_LEAST_1)
    teacher_patience: int = setting(10, "SASRec teacher: early stopping on validation NDCG@10", AT_LEAST_1)
    teacher_loss: str = setting("bce", "SASRec teacher loss (official bce; seqbench's sasrec defaults to ce)",
                                choices=("ce", "bce"))
    teacher_cache: bool = setting(True, "reuse a teacher trained on the same data, seed, config and histories")
    item_batch_size: int = setting(128, "item prompts per forward in evaluation (the official 128)", AT_LEAST_1)
    user_batch_size: int = setting(32, "user prompts per forward in evaluation", AT_LEAST_1)
    max_batch_tokens: int = setting(16384, "padded tokens per forward in evaluation", AT_LEAST_1)
    group_overhead: int | None = setting(None, "cost of one extra forward, in padded tokens, for length grouping "
                                         "(None: 48 on a CPU; on an accelerator so large that each prompt kind "
                                         "is one forward within the row and token caps)", NON_NEGATIVE)


@dataclass
class LoRARecConfig(LLMRecConfig):
    """LoRA on the LLM through peft; defaults are TALLRec's/CoLLM's official ones."""

    lora_r: int = setting(8, "LoRA rank (TALLRec/CoLLM official 8)", AT_LEAST_1)
    lora_alpha: int = setting(16, "LoRA alpha; the update is scaled by alpha / r", AT_LEAST_1)
    lora_dropout: float = setting(0.05, "dropout on the LoRA input", DROPOUT)
    lora_targets: tuple[str, ...] = setting(("q_proj", "v_proj"),
                                            "LLM module names that get adapters, ';'-separated")
