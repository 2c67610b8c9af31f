"""A checkpoint's LF-format eval sets are answered in one process per device, with one model load: the same
bytes LF's own prediction writes, resumable mid-set, sharded across devices and merged in row order."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from datasets_builders import BuildOptions, build
from forgetkit import atomic
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError
from forgetkit.recipes import CPU
from forgetkit.render import DataSpec, render_predict
from forgetkit.rundir import RunDir
from forgetkit.spec import load_study
from forgetkit.stages import llamafactory
from forgetkit.stages.eval_worker import Worker
from forgetkit.stages.evaluate import WORKER, job_path
from forgetkit.stages.rowlog import RowLog
from forgetkit.stages.stage import Stage
from forgetkit.study import plan
from forgetkit.tiny_model import tiny_model_dir

SETS = ("imagenet_vqa_val", "six_options")


@pytest.fixture(scope="module")
def data(shapes: Path, offline_clip: ClipSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 shape MCQs, and a second set of them with six options on every other row (two prompt lengths)."""
    out = tmp_path_factory.mktemp("data")
    build("imagenet-vqa", BuildOptions(shapes, out, "val", shapes / "class_names.txt", clip=offline_clip))
    rows = json.loads((out / "imagenet_vqa_val.json").read_text())
    for row in rows[1::2]:
        row["messages"][0]["content"] += "\nE. purple hexagon\nF. orange star"
    (out / "six_options.json").write_text(json.dumps(rows))
    info = json.loads((out / "dataset_info.json").read_text())
    info["six_options"] = {**info["imagenet_vqa_val"], "file_name": "six_options.json"}
    (out / "dataset_info.json").write_text(json.dumps(info))
    return out


def zero_shot(data: Path, folder: Path, eval_keys: str = "") -> tuple[RunDir, Stage]:
    spec = folder / "study.yaml"
    spec.write_text(
        "name: s\nmodel: tiny-qwen2.5-vl\nhardware: cpu\n"
        f"data: {{dataset_dir: {data}, train: [imagenet_vqa_val], image_max_pixels: 4096, cutoff_len: 512}}\n"
        f"eval: {{datasets: [{', '.join(SETS)}], batch_size: 2, max_new_tokens: 3{eval_keys}}}\n"
        "recipes: {r: {steps: 2, save_steps: 2}}\n"
    )
    run = RunDir(folder / "run").create()
    return run, plan(load_study(spec), run)[0]


def predictions(run: RunDir) -> dict[str, bytes]:
    return {name: run.predictions("zero-shot", name).read_bytes() for name in SETS}


@pytest.fixture(scope="module")
def whole(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zero-shot evaluation run once, uninterrupted, on one worker."""
    folder = tmp_path_factory.mktemp("whole")
    _, stage = zero_shot(data, folder)
    assert stage.name == "evaluate zero-shot" and stage.command.startswith(f"python -m {WORKER} ")
    assert not stage.done
    stage.action()
    return folder


@pytest.fixture(scope="module")
def uninterrupted(whole: Path) -> dict[str, bytes]:
    return predictions(RunDir(whole / "run"))


def test_a_checkpoint_is_one_stage_whose_sets_keep_their_own_state(data: Path, whole: Path) -> None:
    state = RunDir(whole / "run").read_state()
    assert all(state[f"predict zero-shot {name}"]["status"] == "done" for name in SETS)
    assert zero_shot(data, whole)[1].done, "a rerun finds every set done"


def test_every_set_is_byte_identical_to_llamafactory_cli_prediction(
    data: Path, uninterrupted: dict[str, bytes], tmp_path: Path
) -> None:
    """`llamafactory-cli train` with do_predict, in a process of its own, writes the very same file as the
    evaluate stage did for its second set, answered by the model and tokenizer loaded for the first (two
    prompt lengths, batches of 2: left padding)."""
    spec = DataSpec(dataset_dir=str(data), image_max_pixels=4096, cutoff_len=512)
    name, out = SETS[1], tmp_path / "lf"
    text = render_predict(tiny_model_dir(), "qwen2_vl", name, spec, out, CPU, batch_size=2, max_new_tokens=3)
    llamafactory.run("train", text, tmp_path / "predict.yaml", tmp_path / "predict.log", out, name)
    assert (out / "generated_predictions.jsonl").read_bytes() == uninterrupted[name]


def test_a_killed_evaluation_resumes_at_its_first_missing_rows(
    data: Path, uninterrupted: dict[str, bytes], tmp_path: Path
) -> None:
    run, stage = zero_shot(data, tmp_path, ", chunk_rows: 4")
    members = stage.action.members  # the worker is started by hand here, so it can be killed
    job = {"run": str(run.root), "device": "cpu", "chunk_rows": 4, "members": [asdict(m) for m in members]}
    atomic.write_json(job_path(run, "zero-shot"), job)
    part = run.scratch(f"predict zero-shot {SETS[0]}") / "part-0.tsv"
    worker = subprocess.Popen([sys.executable, "-m", WORKER, str(job_path(run, "zero-shot")), "0", "1"])
    while not (part.is_file() and part.read_text().count("\n") >= 8):
        assert worker.poll() is None, "the worker ended before it could be killed"
        time.sleep(0.05)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    kept = part.read_text().count("\n")
    with open(part, "a") as handle:
        handle.write('21\t{"prompt": "torn')  # a record cut off mid-write
    assert 8 <= kept < 24
    stage.action()
    log = run.log("evaluate zero-shot").read_text()
    assert f"predict zero-shot {SETS[0]}: {kept} of 24 rows kept from an earlier run" in log
    assert f"predict zero-shot {SETS[0]}: answering {24 - kept} rows" in log
    assert predictions(run) == uninterrupted


def test_two_devices_share_the_rows_and_merge_in_row_order(
    data: Path, uninterrupted: dict[str, bytes], tmp_path: Path
) -> None:
    run, stage = zero_shot(data, tmp_path, ", chunk_rows: 4, devices: ['0', '1']")
    stage.action()
    for shard in (0, 1):
        log = run.log("evaluate zero-shot").with_suffix(f".worker{shard}.log").read_text()
        assert f"predict zero-shot {SETS[0]}: answering 12 rows in 3 chunks" in log
        assert f"worker {shard} of 2, CUDA_VISIBLE_DEVICES={shard}" in log
    assert predictions(run) == uninterrupted
    assert not (run.root / "scratch").exists(), "the parts and both workers' LF folders go once the sets merged"


def test_a_chunk_answered_with_too_few_lines_stops_the_worker_and_keeps_the_rows_before(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run").create()
    job = {"run": str(run.root), "device": "cpu", "chunk_rows": 2, "members": []}
    member = {"name": "predict zero-shot x", "target": str(tmp_path / "x.jsonl"), "digest": "d", "command": "c"}
    worker = Worker(job, 0, 1)
    with pytest.raises(ForgetkitError, match="predict zero-shot x: 1 predictions came back for a chunk of 2 rows"):
        worker.fill(member, [0, 1, 2, 3], 1, lambda chunk: [f"line {row}" for row in chunk][: 3 - chunk[0]], False)
    assert RowLog(run.scratch(member["name"]), 0).done() == {0: "line 0", 1: "line 1"}
    assert not (tmp_path / "x.jsonl").exists()


def test_a_row_log_keeps_whole_records_and_merges_only_a_complete_set(tmp_path: Path) -> None:
    first, second = RowLog(tmp_path / "set", 0), RowLog(tmp_path / "set", 1)
    first.append([(0, '{"predict": "A"}'), (1, '{"predict": "B"}')])
    second.append([(3, '{"predict": "D"}')])
    with open(first.part, "a") as handle:
        handle.write('2\t{"predict": "C')  # killed mid-write
    assert first.done() == {0: '{"predict": "A"}', 1: '{"predict": "B"}', 3: '{"predict": "D"}'}
    assert first.part.read_text().endswith('"B"}\n'), "the torn record is cut off"
    target = tmp_path / "set.jsonl"
    assert not first.merge(4, target) and not target.exists()
    first.append([(2, '{"predict": "C"}')])
    assert second.merge(4, target)
    assert target.read_text() == "".join(f'{{"predict": "{letter}"}}\n' for letter in "ABCD")
    assert not list((tmp_path / "set").glob("part-*"))


def test_a_set_the_worker_cannot_read_fails_in_one_line_naming_it(data: Path, tmp_path: Path) -> None:
    run, stage = zero_shot(data, tmp_path)
    broken = replace(stage.action.members[1], config=stage.action.members[1].config.replace(SETS[1], "nope"))
    with pytest.raises(ForgetkitError, match=r"evaluate zero-shot failed \(exit 1\): ForgetkitError: .*'nope'") as err:
        replace(stage.action, members=[stage.action.members[0], broken])()
    assert "\n" not in str(err.value)
    assert run.read_state()[f"predict zero-shot {SETS[0]}"]["status"] == "done", "the sets before it are kept"
