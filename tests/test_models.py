"""Models named by local folder or hub id: a hub id is served from the HF cache (offline when offline), and a
model's identity, which stage hashes key on, is known without asking the hub."""

import json
import socket
import sys
from pathlib import Path

import pytest

from forgetkit.cli import main
from forgetkit.errors import ForgetkitError
from forgetkit.fixtures.hf_cache import place_in_hub_cache
from forgetkit.models import local_model_dir, model_identity, resolve_model
from forgetkit.resources import bundled
from forgetkit.rundir import RunDir
from forgetkit.spec import load_study
from forgetkit.study import plan

HUB_ID = "forgetkit-test/small-vl"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF home of this test's own, offline; its hub cache."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("FORGETKIT_CACHE", str(tmp_path / "forgetkit-cache"))
    return tmp_path / "hf" / "hub"


def model_folder(folder: Path, weights: bytes = b"weights") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"model_type": "qwen2_5_vl", "text_config": {"num_hidden_layers": 3}})
    )
    (folder / "model.safetensors").write_bytes(weights)
    (folder / "tokenizer.json").write_text("{}")
    (folder / "README.md").write_text("a model")
    return folder


def test_a_hub_id_is_served_from_the_hf_cache(hub: Path, tmp_path: Path) -> None:
    snapshot = place_in_hub_cache(model_folder(tmp_path / "small"), HUB_ID, hub)
    assert local_model_dir(HUB_ID) == snapshot
    assert json.loads((local_model_dir(HUB_ID) / "config.json").read_text())["model_type"] == "qwen2_5_vl"
    model = resolve_model(HUB_ID, "qwen2_vl")
    assert (model.path, model.model_type, model.num_layers()) == (HUB_ID, "qwen2_5_vl", 3)
    assert local_model_dir(tmp_path / "small") == (tmp_path / "small").resolve()


def test_a_model_neither_cached_nor_reachable_is_one_line_naming_the_fix(hub: Path, tmp_path: Path) -> None:
    with pytest.raises(ForgetkitError) as caught:
        local_model_dir(HUB_ID)
    message = str(caught.value)
    assert f"model {HUB_ID} is not in the HF cache at {hub}" in message
    assert "(offline: HF_HUB_OFFLINE)" in message and f"`hf download {HUB_ID}`" in message and "\n" not in message
    with pytest.raises(ForgetkitError, match="neither a folder nor a hub id") as caught:
        local_model_dir(str(tmp_path / "missing" / ("x" * 500)))
    assert len(str(caught.value)) < 250


def test_a_folders_identity_is_its_model_files_wherever_it_lives(
    hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = model_folder(tmp_path / "a" / "m"), model_folder(tmp_path / "b" / "m")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    monkeypatch.chdir(tmp_path / "b")
    spellings = [first, tmp_path / "link" / "m", "m", "../a/./m"]
    assert {model_identity(path) for path in spellings} == {model_identity(second)}
    (first / "README.md").write_text("edited")
    assert model_identity(first) == model_identity(second), "a README does not change what the model computes"
    (first / "model.safetensors").write_bytes(b"retrained")
    assert model_identity(first) != model_identity(second)
    assert len(list((tmp_path / "forgetkit-cache" / "digests").iterdir())) >= 6, "each file's digest is kept"


def test_a_hub_ids_identity_is_its_cached_commit(hub: Path, tmp_path: Path) -> None:
    assert model_identity(HUB_ID) == HUB_ID
    place_in_hub_cache(model_folder(tmp_path / "small"), HUB_ID, hub, commit="a" * 40)
    assert model_identity(HUB_ID) == f"{HUB_ID}@{'a' * 40}"


def test_the_paper_study_plans_every_stage_of_an_uncached_registry_model_without_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`forgetkit launch runs/fig2.yaml --dry-run`, `model: qwen2.5-vl-3b`, online, nothing in the HF cache."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    asked: list[tuple] = []

    def no_network(*args: object) -> None:
        asked.append(args)
        raise OSError("this test has no network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    spec = bundled("runs/fig2.yaml")
    monkeypatch.setattr(sys, "argv", ["forgetkit", "launch", str(spec), "--dry-run", "--run-dir", str(tmp_path / "r")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and not asked
    study = load_study(spec)
    assert study.model == "qwen2.5-vl-3b"
    steps = plan(study, RunDir(tmp_path / "r"))
    assert all(f"[todo] {step.name}\n" in out for step in steps)
    vlmeval = [step.name for step in steps if step.name.startswith("vlmeval ")]
    assert vlmeval[0] == "vlmeval zero-shot"
    assert {name.split()[1].split("/")[0] for name in vlmeval[1:]} == set(study.recipes)
