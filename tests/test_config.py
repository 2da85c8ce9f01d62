"""Config resolution: precedence, range checks naming key, value and range, and `seqbench models --show`."""

from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.config import AT_LEAST_1, DROPOUT, RATE, Range, describe, resolve, setting
from seqbench.errors import SeqbenchError
from seqbench.models import MODELS, create_model

runner = CliRunner()


@dataclass
class Base:
    epochs: int = setting(5, "passes over the data", AT_LEAST_1)
    rate: float = setting(0.1, "learning rate", RATE)
    drop: float = setting(0.0, "dropout", DROPOUT)
    sizes: tuple[int, ...] = setting((1, 2), "one per block", AT_LEAST_1)
    kind: str = setting("a", "which one", choices=("a", "b"))
    limit: int | None = setting(None, "optional cap", AT_LEAST_1)


@dataclass
class Child(Base):
    drop: float = 0.5  # a plain re-declaration keeps the base's help and range


@pytest.mark.parametrize("key,value,allowed", [
    ("epochs", "-3", "[1, inf)"), ("epochs", "0", "[1, inf)"), ("rate", "0", "(0, 1)"), ("rate", "1", "(0, 1)"),
    ("drop", "1", "[0, 1)"), ("drop", "-0.1", "[0, 1)"), ("sizes", "1;0", "[1, inf)"), ("limit", "0", "[1, inf)")])
def test_out_of_range_names_key_value_and_range(key, value, allowed):
    with pytest.raises(SeqbenchError) as e:
        resolve(Child, {key: value})
    msg = str(e.value)
    assert f"'{key}'" in msg and allowed in msg and str(float(value) if key in ("rate", "drop") else
                                                          int(value.split(";")[-1])) in msg


def test_in_range_values_and_choices():
    cfg = resolve(Child, {"epochs": "1", "rate": "0.5", "drop": "0", "sizes": "3;4", "limit": "none"})
    assert (cfg.epochs, cfg.rate, cfg.drop, cfg.sizes, cfg.limit) == (1, 0.5, 0.0, (3, 4), None)
    with pytest.raises(SeqbenchError, match="'kind' = 'c' is not allowed; choose one of a, b"):
        resolve(Child, {"kind": "c"})
    assert str(Range(0, 1, lo_open=True)) == "(0, 1]"


def test_describe_inherits_help_and_range():
    rows = {r["name"]: r for r in describe(Child)}
    assert rows["drop"]["default"] == "0.5" and rows["drop"]["allowed"] == "[0, 1)"
    assert rows["drop"]["help"] == "dropout" and rows["kind"]["allowed"] == "a | b"


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_setting_has_help_and_defaults_pass_their_ranges(model):
    create_model(model, 300)  # the defaults themselves are range-checked
    assert all(r["help"] for r in describe(MODELS[model].load_class().config_cls))


@pytest.mark.parametrize("sets", ["max_epochs=-3", "dropout=1", "lr=0", "batch_size=0", "patience=0"])
def test_bad_settings_fail_before_any_work(sets, tiny_home, tmp_path):
    r = runner.invoke(app, ["run", "--dataset", "tiny", "--set", sets, "--data-home", str(tiny_home),
                            "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"])
    key = sets.split("=")[0]
    assert r.exit_code == 1 and f"config '{key}'" in r.output and "out of range" in r.output
    assert not (tmp_path / "m.db").exists()  # nothing was logged


def test_models_show_prints_every_setting(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    r = runner.invoke(app, ["models", "--show", "sasrec"])
    assert r.exit_code == 0
    for row in describe(MODELS["sasrec"].load_class().config_cls):
        assert row["name"] in r.output and row["help"][:20] in r.output
    assert "[1, inf)" in r.output and "ce | bce" in r.output
    bad = runner.invoke(app, ["models", "--show", "nope"])
    assert bad.exit_code == 2 and "sasrec" in bad.output


def test_version():
    from seqbench import __version__

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"seqbench {__version__}"
