"""The registry's declared capabilities: what they are per model, that the code reads them (not the family label),
and that they agree with what the model classes do."""

from __future__ import annotations

import pytest

from seqbench.errors import OptionError, SeqbenchError
from seqbench.models import LLM, MODELS, ModelSpec, create_model, get_spec
from seqbench.models.base import UserRepPinning
from seqbench.planner import check_task
from seqbench.probes import get_probe

LLM_MODELS = {"llmsrec", "tallrec", "llara", "collm", "a-llmrec"}


def test_declared_capabilities():
    assert {n for n, s in MODELS.items() if s.family == LLM} == LLM_MODELS
    assert {n for n, s in MODELS.items() if s.needs_accelerator} == LLM_MODELS | {"recformer"}
    assert {n for n, s in MODELS.items() if s.cf_user_rep} == {"collm", "a-llmrec", "llmsrec"}
    assert {n for n, s in MODELS.items() if not s.generation} == {"llmsrec"}
    assert get_spec("llmsrec").tasks == ("retrieval",) and get_spec("sasrec").tasks == ("retrieval", "generation")


def test_module_paths_stay_out_of_names_and_identities():
    """Each class sits in its family's folder, and its ``name`` (what the model store's identity hashes) is the
    registry name, whatever the module path."""
    folder = {"CF-SRec": "cf", "LM-based": "lm", LLM: "llm", "baseline": None}
    for name, spec in MODELS.items():
        cls = spec.load_class()
        assert cls.name == name
        sub = folder[spec.family]
        assert cls.__module__.startswith(f"seqbench.models.{sub}.") if sub else cls.__module__.count(".") == 2


def test_the_task_check_reads_the_spec_without_importing_the_model(monkeypatch):
    def no_import(self):
        raise AssertionError("check_task imported a model class")

    monkeypatch.setattr(ModelSpec, "load_class", no_import)
    check_task("tallrec", [get_probe("shuffle-infer")], "generation")
    check_task("sasrec", [get_probe("shuffle-infer")], "generation")  # ranks the 20 title candidates
    with pytest.raises(OptionError, match="llmsrec does not support --task generation"):
        check_task("llmsrec", [get_probe("shuffle-infer")], "generation")


def test_an_llm_model_refuses_a_task_its_spec_does_not_declare():
    with pytest.raises(SeqbenchError, match="llmsrec supports --task retrieval, not 'generation'"):
        create_model("llmsrec", 10, {"task": "generation"})
    assert create_model("tallrec", 10, {"task": "generation"}).generation


@pytest.mark.parametrize("name", list(MODELS))
def test_cf_user_rep_is_what_the_class_can_pin(name):
    """Declared ``cf_user_rep`` exactly when some config puts a pinnable [UserRep] in the model's input."""
    cls = get_spec(name).load_class()
    fields = getattr(cls.config_cls, "__dataclass_fields__", {})
    configs = [{}] + ([{"user_rep_in_prompt": True}] if "user_rep_in_prompt" in fields else [])
    can_pin = False
    for layer in configs:
        model = create_model(name, 10, layer)
        can_pin |= isinstance(model, UserRepPinning) and bool(model.user_rep)
    assert can_pin == get_spec(name).cf_user_rep
