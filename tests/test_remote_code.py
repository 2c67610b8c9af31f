"""A model folder's own Python code (`auto_map` in its config.json) runs only when the user says to trust it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from forgetkit.fixtures.captions import write_caption_set
from forgetkit.tiny_model import tiny_model_dir


def model_shipping_code(root: Path) -> tuple[Path, Path]:
    """The tiny model plus `shipped.py`, named by its config's `auto_map`, which leaves a marker file when imported."""
    model, marker = root / "model", root / "shipped-code-ran"
    model.mkdir()
    for file in tiny_model_dir().iterdir():
        if file.name != "config.json":
            (model / file.name).symlink_to(file)
    config = json.loads((tiny_model_dir() / "config.json").read_text())
    (model / "config.json").write_text(json.dumps(config | {"auto_map": {"AutoConfig": "shipped.ShippedConfig"}}))
    (model / "shipped.py").write_text(
        "from pathlib import Path\n"
        "from transformers import Qwen2_5_VLConfig\n"
        f"Path({str(marker)!r}).write_text('ran')\n"
        "ShippedConfig = Qwen2_5_VLConfig\n"
    )
    return model, marker


@pytest.mark.parametrize(("flags", "runs"), [((), False), (("--trust-remote-code",), True)])
def test_probe_runs_a_models_own_code_only_when_trusted(tmp_path: Path, flags: tuple[str, ...], runs: bool) -> None:
    """The probe loads both models through LF (tokenizer, processor, config, weights) from the predict YAML."""
    model, marker = model_shipping_code(tmp_path)
    write_caption_set(tmp_path / "data")
    command = [sys.executable, "-m", "forgetkit", "probe", str(model), str(model), "--template", "qwen2_vl"]
    command += ["--data", str(tmp_path / "data"), "--dataset", "shape_captions", "--image-max-pixels", "4096", *flags]
    env = os.environ | {"HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "KL 0.0000 nats" in result.stdout
    assert marker.exists() is runs
