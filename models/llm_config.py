"""Settings shared by every LLM recommender (docs/MODELS.md §2 "Shared recipe") and the LoRA ones (§5)."""

from __future__ import annotations

from dataclasses import dataclass

from seqbench.llm.prompts import PROMPT_WINDOW


@dataclass
class LLMRecConfig:
    llm: str = "smollm2-135m"  # name, HF id or local folder (seqbench.llm.load_llm)
    dtype: str = "auto"  # auto | bf16 | fp16 | fp32, for the LLM
    device: str = "auto"  # auto = the run's device; cpu | cuda | hpu
    batch_size: int = 20  # §6 (16 for Electronics)
    max_epochs: int = 10
    lr: float = 1e-4
    beta2: float = 0.98
    val_every_frac: float = 0.1  # validation every floor(steps_per_epoch * frac) steps and at epoch end
    patience: int = 5  # validation checks without improvement (code 5, paper 10)
    lr_decay: str = "check"  # check (x0.95 per validation check, the code) | epoch | none
    lr_decay_factor: float = 0.95
    valid_metric: str = "hr@10"  # selection metric (the code's); ndcg@10 also accepted
    max_valid_users: int | None = None  # seeded subset of validation users (None = all)
    autoregressive: bool = False  # App. E.3: every position of the train sequence is a target
    n_negatives: int = 3  # §2: 1 positive + 3 negatives
    window: int = PROMPT_WINDOW  # items shown in the prompt
    d_proj: int = 128  # d' (App. D)
    teacher_epochs: int = 200  # SASRec max epochs (official: fixed 200)
    teacher_patience: int = 10  # SASRec early stopping on validation NDCG@10 (seqbench's SASRec default)
    teacher_loss: str = "bce"  # the official SASRec pre-training loss (§3.1); seqbench's sasrec defaults to ce
    teacher_cache: bool = True
    item_batch_size: int = 128  # item prompts per forward in evaluation (§6: 128)
    user_batch_size: int = 32  # user prompts per forward in evaluation
    max_batch_tokens: int = 16384  # padded tokens per forward in evaluation
    group_overhead: int = 48  # cost of one extra forward, in tokens, for length grouping


@dataclass
class LoRARecConfig(LLMRecConfig):
    """LoRA on the LLM through peft; defaults are TALLRec's/CoLLM's official ones (§5.1, §5.3)."""

    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")  # module names; --set lora_targets=q_proj;v_proj
