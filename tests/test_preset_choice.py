"""The headline rule: which preset a run gets on this machine, the banner, and no surprise multi-hour run."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from udalib import cli
from udalib.data import synthcity
from udalib.dataset_roots import configured_roots
from udalib.preset_choice import ChoiceError, LongRunError, check_duration, choose, resolve_run
from udalib.presets import resolve


@pytest.fixture(autouse=True)
def no_configured_datasets(tmp_path, monkeypatch):
    """A machine with nothing configured: no dataset variables, a datasets file that does not exist."""
    for name in ("GTA5", "SYNTHIA", "CITYSCAPES"):
        monkeypatch.delenv(f"UDABOOK_{name}", raising=False)
    monkeypatch.setenv("UDABOOK_DATASETS", str(tmp_path / "datasets.json"))
    return tmp_path / "datasets.json"


def test_a_laptop_runs_the_quick_preset_and_says_why():
    c = choose(cuda=False)
    assert (c.preset, c.dataset, c.data_root, c.target_root) == ("quick", "synthcity", None, None)
    assert c.reason == "no CUDA device here"


def test_a_configured_gpu_machine_runs_the_paper_preset_on_the_configured_data(monkeypatch):
    monkeypatch.setenv("UDABOOK_GTA5", "/data/gta5")
    monkeypatch.setenv("UDABOOK_CITYSCAPES", "/data/cityscapes")
    c = choose(cuda=True)
    assert (c.preset, c.dataset, c.data_root, c.target_root) == ("paper", "gta5", "/data/gta5", "/data/cityscapes")
    assert "configured" in c.reason
    assert choose(cuda=False).preset == "quick"  # the same data without CUDA
    assert choose(device="cpu").preset == "quick"  # device="cpu" asks for no CUDA


def test_a_gpu_without_data_runs_quick_and_names_the_variables():
    c = choose(cuda=True)
    assert c.preset == "quick" and "UDABOOK_GTA5" in c.reason


def test_asking_for_paper_lists_everything_missing_at_once():
    with pytest.raises(ChoiceError) as err:
        choose("paper", cuda=False)
    message = str(err.value)
    assert "a CUDA device" in message and "the gta5 root" in message and "the Cityscapes root" in message
    with pytest.raises(ChoiceError, match="gta5 on gta5 cannot run here; it needs a CUDA device"):
        choose(dataset="gta5", data_root="/d/g", target_root="/d/c", cuda=False)  # real data asked for: paper
    assert choose("paper", dataset="synthcity", cuda=True).preset == "paper"  # SynthCity at paper size needs CUDA only


def test_the_datasets_file_and_the_environment(no_configured_datasets, monkeypatch):
    no_configured_datasets.write_text(json.dumps({"synthia": "~/synthia", "cityscapes": "/file/cityscapes"}))
    monkeypatch.setenv("UDABOOK_CITYSCAPES", "/env/cityscapes")  # the environment wins over the file
    roots = configured_roots()
    assert roots["cityscapes"] == "/env/cityscapes" and roots["synthia"].endswith("/synthia")
    c = choose(dataset="synthia", cuda=True)
    assert (c.preset, c.data_root, c.target_root) == ("paper", roots["synthia"], "/env/cityscapes")
    no_configured_datasets.write_text("{gta5: /data}")
    with pytest.raises(ValueError, match="datasets.json is not valid JSON"):
        configured_roots()
    no_configured_datasets.write_text(json.dumps({"gta": "/data"}))
    with pytest.raises(ValueError, match="expected an object with keys among"):
        configured_roots()


def test_a_synthcity_folder_runs_quick(tmp_path):
    root = synthcity.generate(
        tmp_path / "sc", synthcity.SynthCitySpec(height=16, width=32, n_source=1, n_target_train=1, n_target_val=1)
    )
    c = choose(data_root=str(root), cuda=True)
    assert (c.preset, c.dataset, c.data_root) == ("quick", "synthcity", str(root))


def test_hours_of_cpu_need_a_confirmation_and_the_banner_comes_first():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    long_quick = resolve("sdca", "quick", iters=40_000)
    with pytest.raises(LongRunError, match="40,000 iterations would take about .* h on cpu; set confirm_long_run"):
        check_duration(long_quick, cpu, iters_given=True, confirmed=False)
    check_duration(long_quick, cpu, iters_given=True, confirmed=True)
    check_duration(resolve("sdca", "quick"), cpu, iters_given=False, confirmed=False)  # the default: minutes
    paper = dataclasses.replace(long_quick, train=dataclasses.replace(long_quick.train, backbone="resnet101"))
    with pytest.raises(LongRunError):  # Run All on a configured GPU machine: the preset's length is hours
        check_duration(paper, cuda, iters_given=False, confirmed=False)
    check_duration(paper, cuda, iters_given=True, confirmed=False)  # -p iters N on a GPU says what it wants

    said = []
    with pytest.raises(LongRunError):
        resolve_run("sdca", iters=40_000, device="cpu", say=said.append)
    (line,) = said  # the banner is printed before the refusal
    assert line.startswith("udabook: preset quick (no CUDA device here) | SynthCity v3 in the cache | cpu |")
    assert "40,000 iterations of sdca (about" in line


def test_udalib_train_follows_the_rule(capsys):
    assert cli.main(["train", "--method", "sdca", "--iters", "40000", "--device", "cpu"]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("udabook: preset quick (no CUDA device here)")
    assert "--confirm-long-run" in err and "40,000 iterations" in err
    assert cli.main(["train", "--preset", "paper", "--device", "cpu"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err


def test_the_readme_shows_the_banner_the_code_prints():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    shown = next(line for line in readme.splitlines() if line.startswith("udabook: preset quick"))
    said = []
    resolve_run("sdca", device="cpu", say=said.append)
    assert said == [shown]
