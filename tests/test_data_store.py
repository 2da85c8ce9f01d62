"""Prepared-dataset folders: normal permissions, `seqbench data rm`, embedded datasets with run defaults."""

import json
import stat

from typer.testing import CliRunner

from seqbench.cli import app
from seqbench.data.embedded import EMBEDDED, prepare_embedded
from seqbench.data.store import load_dataset
from seqbench.planner import model_layers

runner = CliRunner()


def test_dataset_folder_has_umask_permissions_and_rm_removes_it(tmp_path):
    home = tmp_path / "home"
    r = runner.invoke(app, ["data", "prepare", "synthetic", "--name", "s", "--users", "100", "--items", "200",
                            "--k", "1", "--data-home", str(home)])
    assert r.exit_code == 0, r.output
    probe = tmp_path / "probe"
    probe.mkdir()  # what a plain mkdir gives under this umask
    assert stat.S_IMODE((home / "s").stat().st_mode) == stat.S_IMODE(probe.stat().st_mode)
    r = runner.invoke(app, ["data", "rm", "s", "--data-home", str(home)])
    assert r.exit_code == 0 and "removed" in r.output
    assert list(home.iterdir()) == []
    r = runner.invoke(app, ["data", "rm", "s", "--data-home", str(home)])
    assert r.exit_code == 2 and "unknown dataset 's'" in r.output


def test_item_key_col_option(tmp_path):
    inter = tmp_path / "log.csv"
    rows = [f"u{u},i{(u * 5 + k) % 150 + 1},{100 + k}" for u in range(40) for k in range(5)]
    inter.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    items = tmp_path / "items.csv"
    items.write_text("sku,title\n" + "\n".join(f"i{i},Item {i}" for i in range(1, 151)) + "\n")
    args = ["data", "prepare", "csv", "--source", str(inter), "--meta", str(items), "--data-home",
            str(tmp_path / "h"), "--k", "1"]
    r = runner.invoke(app, [*args, "--name", "a"])
    assert r.exit_code == 1 and "--item-key-col" in r.output  # the message names an option that exists
    r = runner.invoke(app, [*args, "--name", "b", "--item-key-col", "sku"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "h" / "b" / "meta.json").read_text())["counts"]["items_without_title"] == 0


def test_embedded_datasets_carry_run_defaults(tmp_path):
    prepare_embedded("quickstart-control", tmp_path)
    data = load_dataset("quickstart-control", tmp_path)
    assert data.meta["run_defaults"] == EMBEDDED["quickstart-control"].run_defaults
    assert data.meta["source"]["order"] == 0.0 and data.n_users == EMBEDDED["quickstart-control"].users
    # dataset defaults < --set; keys a model lacks (pop has no max_epochs) are left out
    layers = model_layers("sasrec", {"patience": "7"}, None, data.meta["run_defaults"])
    assert layers[0] == {"max_epochs": 30, "patience": 3} and layers[-1] == {"patience": "7"}
    assert model_layers("pop", {}, None, data.meta["run_defaults"])[0] == {}


def test_on_demand_dataset_made_by_an_older_generator_is_prepared_again(tmp_path):
    import json

    from seqbench.data.embedded import ensure_prepared, synthetic_options

    assert synthetic_options("syn-order0.25-u60-i300-s7").order == 0.25
    assert synthetic_options("syn-order2-u60-i300") is None and synthetic_options("beauty") is None
    said = []
    ensure_prepared("syn-order0-u60-i300-s1", tmp_path, said.append)
    meta_path = tmp_path / "syn-order0-u60-i300-s1" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["source"]["seed"] == 1 and meta["source"]["users"] == 60 and len(said) == 1
    ensure_prepared("syn-order0-u60-i300-s1", tmp_path, said.append)
    assert len(said) == 1  # current: kept
    meta["source"]["generator"] = 1
    meta_path.write_text(json.dumps(meta))
    ensure_prepared("syn-order0-u60-i300-s1", tmp_path, said.append)
    assert "older synthetic generator" in said[-1]
    assert json.loads(meta_path.read_text())["source"]["generator"] != 1
