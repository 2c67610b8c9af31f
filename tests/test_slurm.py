"""`forgetkit launch SPEC --backend slurm`: one sbatch job per stage not done, ordered by Slurm's own
`--dependency=afterok:`, each job running `forgetkit launch SPEC --stage NAME`.

The end-to-end test submits to a real single-node Slurm cluster the suite starts itself (`slurm_cluster`). The
other tests keep a small fake `sbatch` on PATH for what a real one cannot show quickly or at all: the exact
arguments of every submission, a rejected submission midway, a queue that still holds an earlier job.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from built_data import built
from slurm_cluster import SlurmCluster
from studies import tiny_study
from typer.testing import CliRunner

from forgetkit import slurm
from forgetkit.cli import app
from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError
from forgetkit.resources import bundled
from forgetkit.rundir import RunDir
from forgetkit.spec import load_study
from forgetkit.stage_names import stage_kind
from forgetkit.study import launch

runner = CliRunner()

FAKE_SBATCH = """#!/bin/bash
# Stand-in for Slurm's sbatch: record the arguments, print the next job id as `sbatch --parsable` does on a
# multi-cluster setup (ID;CLUSTER); or fail like a rejected submission.
set -e
log={log}
id=$(( $(cat "$log/last-id" 2>/dev/null || echo 100) + 1 ))
echo "$id" > "$log/last-id"
if [ "$id" = "{fail_at}" ]; then
  echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2
  exit 1
fi
printf '%s\\n' "$@" > "$log/$id.args"
echo "$id;fake-cluster"
"""
FAKE_SQUEUE = """#!/bin/bash
# Stand-in for `squeue --noheader --format=%F`: the (array) ids of the jobs still queued, one a line.
cat {log}/queue 2>/dev/null || true
"""


@dataclass(frozen=True)
class FakeSlurm:
    log: Path

    def submissions(self) -> dict[str, list[str]]:
        """job id -> the sbatch arguments it was submitted with, in submission order."""
        files = sorted(self.log.glob("*.args"), key=lambda path: int(path.stem))
        return {path.stem: path.read_text().splitlines() for path in files}

    def queue(self, *job_ids: str) -> None:
        (self.log / "queue").write_text("".join(f"{job_id}\n" for job_id in job_ids))


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_at: int = 0) -> FakeSlurm:
    bin_dir, log = tmp_path / "fake-bin", tmp_path / "fake-slurm"
    bin_dir.mkdir()
    log.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("squeue", FAKE_SQUEUE)):
        script = bin_dir / name
        script.write_text(text.format(log=shlex.quote(str(log)), fail_at=fail_at))
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return FakeSlurm(log)


def study_spec(tmp_path: Path) -> Path:
    """A recipe whose checkpoints are evaluated on two sets, and a 2-task IncLoRA sequence (train, merge, eval)."""
    names = ("a", "b", "imagenet_vqa_train", *(f"mllmcl_{t}_{s}" for t in ("t1", "t2") for s in ("train", "test")))
    built(tmp_path / "data", *names)  # submitting checks the data was built
    path = tmp_path / "study.yaml"
    path.write_text(
        "name: s\nmodel: tiny-qwen2.5-vl\ndata: {dataset_dir: data}\neval: {datasets: [a, b]}\n"
        "recipes: {r: {steps: 4, save_steps: 2}}\n"
        "continual:\n  tasks: [t1, t2]\n  sequences: {inc: {strategy: inclora, steps: 2, save_steps: 2}}\n"
    )
    return path


def dependency(arguments: list[str]) -> list[str]:
    """The job ids an sbatch call waits for."""
    given = [arg.removeprefix("--dependency=afterok:") for arg in arguments if arg.startswith("--dependency=")]
    return given[0].split(":") if given else []


def test_each_stage_not_done_is_submitted_after_the_jobs_of_the_stages_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_slurm(tmp_path, monkeypatch)
    spec, run_dir = study_spec(tmp_path), tmp_path / "run"
    study, run = load_study(spec), RunDir(run_dir)
    by_name = {step.name: step for step in launch(study, run_dir, dry_run=True)}
    run.mark("train r", "done", by_name["train r"].digest)
    set_a = by_name["evaluate zero-shot"].action.members[0]
    run.mark(set_a.name, "done", set_a.digest)
    run.predictions("zero-shot", "a").parent.mkdir(parents=True)
    run.predictions("zero-shot", "a").write_text('{"predict": "A", "label": "A"}\n')

    steps = launch(study, run_dir, dry_run=True)
    options = {"partition": "gpu", "gres": "gpu:1", "train:gres": "gpu:8", "time": "24:00:00"}
    jobs = slurm.plan_jobs(steps, spec, run_dir, options)
    ids = slurm.submit(jobs, run_dir)

    assert "train r" not in ids and "evaluate zero-shot" in ids, "set b of the zero-shot evaluation is not done"
    assert list(ids) == [step.name for step in steps if not step.done]
    assert list(ids.values()) == list(fake.submissions()), "one sbatch per stage, in plan order"
    assert all(job_id.isdigit() for job_id in ids.values()), "the cluster name after ';' is not part of the id"
    waits = {stage: dependency(fake.submissions()[job_id]) for stage, job_id in ids.items()}
    assert waits["evaluate zero-shot"] == [], "zero-shot evals wait for nothing"
    assert waits["evaluate r/checkpoint-2"] == [], "its training is done already"
    assert waits["export inc/task-1-t1-merged"] == [ids["train inc/task-1-t1"]]
    assert waits["train inc/task-2-t2"] == [ids["export inc/task-1-t1-merged"]], "task 2 starts from the merge"
    for step in steps:
        if not step.done:
            assert waits[step.name] == [ids[name] for name in step.after if name in ids]

    record = json.loads((run_dir / "slurm" / "jobs.json").read_text())
    assert record == {job.stage: {"job_id": ids[job.stage], "script": str(job.script)} for job in jobs}
    for job in jobs:
        lines = job.script.read_text().splitlines()
        assert lines[0] == "#!/bin/bash" and job.script.parent == run_dir / "slurm"
        directives = [line.removeprefix("#SBATCH ") for line in lines if line.startswith("#SBATCH ")]
        training = job.stage.startswith("train ")
        preemptible = ["--requeue", "--signal=B:USR1@300"] if training else []
        gpus = "gpu:8" if training else "gpu:1"
        assert directives[2:] == [*preemptible, "--partition=gpu", f"--gres={gpus}", "--time=24:00:00"]
        assert directives[1] == f"--output={run_dir}/logs/slurm-{job.script.stem.split('-', 1)[1]}-%j.out"
        stage = [sys.executable, "-m", "forgetkit", "launch", str(spec), "--run-dir", str(run_dir), "--stage"]
        if training:  # in the background, so the batch shell can take the warning signal and requeue the job
            assert shlex.split(lines[-5]) == [*stage, job.stage, "&"] and lines[-6].startswith("trap ")
        else:
            assert shlex.split(lines[-1]) == ["exec", *stage, job.stage]


def test_with_eval_arrays_a_trainings_checkpoint_evals_are_one_array_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_slurm(tmp_path, monkeypatch)
    spec, run_dir = study_spec(tmp_path), tmp_path / "run"
    steps = launch(load_study(spec), run_dir, dry_run=True)
    jobs = slurm.plan_jobs(steps, spec, run_dir, {"evaluate:time": "1:00:00"}, eval_arrays=True)
    (array,) = [job for job in jobs if job.members]
    assert array.members == ("evaluate r/checkpoint-2", "evaluate r/checkpoint-4") and array.after == ("train r",)
    assert len(jobs) == len(steps) - 1, "continual tasks' evals wait for different merges: no array there"

    ids = slurm.submit(jobs, run_dir)

    lines = array.script.read_text().splitlines()
    assert "#SBATCH --array=0-1" in lines and "#SBATCH --time=1:00:00" in lines
    assert f"#SBATCH --output={run_dir}/logs/slurm-evaluate_r_checkpoints-%A_%a.out" in lines
    assert lines[-2] == "stages=('evaluate r/checkpoint-2' 'evaluate r/checkpoint-4')"
    stage = [sys.executable, "-m", "forgetkit", "launch", str(spec), "--run-dir", str(run_dir), "--stage"]
    assert lines[-1] == f'exec {shlex.join(stage)} "${{stages[$SLURM_ARRAY_TASK_ID]}}"'
    assert dependency(fake.submissions()[ids[array.stage]]) == [ids["train r"]]
    record = json.loads(slurm.jobs_path(run_dir).read_text())
    assert [record[member] for member in array.members] == [
        {"job_id": ids[array.stage], "array_task": task, "script": str(array.script)} for task in (0, 1)
    ]


def test_dry_run_prints_the_scripts_and_sbatch_commands_and_writes_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["launch", str(study_spec(tmp_path)), "--run-dir", str(run_dir), "--backend", "slurm", "--dry-run"]
    result = runner.invoke(app, [*args, "--sbatch", "partition=gpu", "--sbatch", "train:gres=gpu:8"])
    assert result.exit_code == 0, result.output
    assert "[todo] train r" in result.output
    assert "#SBATCH --gres=gpu:8" in result.output and "--stage 'train r'" in result.output
    train = next(line for line in result.output.splitlines() if line.endswith("-train_r.sbatch)"))
    variable = train.split("=", 1)[0]
    assert f"--dependency=afterok:${variable} --kill-on-invalid-dep=yes" in result.output
    assert not run_dir.exists()


def test_submitting_prints_the_job_ids_and_what_to_do_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_slurm(tmp_path, monkeypatch)
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["launch", str(study_spec(tmp_path)), "--run-dir", str(run_dir), "--backend", "slurm"])
    assert result.exit_code == 0, result.output
    train_id = next(job for job, args in fake.submissions().items() if args[-1].endswith("-train_r.sbatch"))
    assert f"{train_id}  train r\n" in result.output
    assert f"evaluate r/checkpoint-4  after {train_id}" in result.output
    assert f"forgetkit score {run_dir}" in result.output

    fake.queue(train_id)
    again = runner.invoke(app, ["launch", str(study_spec(tmp_path)), "--run-dir", str(run_dir), "--backend", "slurm"])
    assert isinstance(again.exception, ForgetkitError)
    assert f"still queued or running, e.g. {train_id} (train r)" in str(again.exception)


def test_nothing_is_submitted_before_the_data_is_built(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_slurm(tmp_path, monkeypatch)
    spec = study_spec(tmp_path)
    (tmp_path / "data" / "dataset_info.json").unlink()
    result = runner.invoke(app, ["launch", str(spec), "--run-dir", str(tmp_path / "run"), "--backend", "slurm"])
    assert "build the data first" in str(result.exception) and not fake.submissions()


def test_a_rejected_submission_names_the_script_and_keeps_the_jobs_already_submitted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_slurm(tmp_path, monkeypatch, fail_at=103)
    spec, run_dir = study_spec(tmp_path), tmp_path / "run"
    jobs = slurm.plan_jobs(launch(load_study(spec), run_dir, dry_run=True), spec, run_dir, {})
    with pytest.raises(ForgetkitError) as error:
        slurm.submit(jobs, run_dir)
    assert str(error.value).startswith(f"sbatch {jobs[2].script} failed: sbatch: error: Batch job submission failed")
    record = json.loads((run_dir / "slurm" / "jobs.json").read_text())
    assert record == {job.stage: {"job_id": str(101 + i), "script": str(job.script)} for i, job in enumerate(jobs[:2])}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "slurm"], "--backend slurm needs sbatch, i.e. a Slurm login node"),
        (["--backend", "slurm", "--sbatch", "gres"], "--sbatch 'gres' is not KEY=VALUE"),
        (["--backend", "slurm", "--sbatch", "eval:gres=gpu:1"], "stage kind 'eval' unknown; use one of train,"),
        (["--backend", "slurm", "--sbatch", "job-name=x"], "forgetkit sets --job-name itself"),
        (["--sbatch", "partition=gpu"], "--sbatch and --eval-arrays shape Slurm jobs; add --backend slurm"),
        (["--backend", "slurm", "--stage", "train r"], "--stage runs one stage here and now"),
    ],
)
def test_bad_slurm_options_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str], message: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = runner.invoke(app, ["launch", str(study_spec(tmp_path)), "--run-dir", str(tmp_path / "run"), *extra])
    assert isinstance(result.exception, ForgetkitError)
    assert message in str(result.exception) and "\n" not in str(result.exception)


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ("train q", "no stage 'train q' in this study; `forgetkit launch SPEC --dry-run` lists them"),
        ("evaluate r/checkpoint-2", "stage 'evaluate r/checkpoint-2' needs train r done first"),
    ],
)
def test_a_stage_runs_only_by_its_planned_name_and_after_its_dependencies(
    tmp_path: Path, stage: str, message: str
) -> None:
    spec = study_spec(tmp_path)
    result = runner.invoke(app, ["launch", str(spec), "--run-dir", str(tmp_path / "run"), "--stage", stage])
    assert isinstance(result.exception, ForgetkitError)
    assert str(result.exception) == message


@pytest.mark.slow
def test_on_a_real_cluster_a_cancelled_job_takes_its_dependants_along_and_the_next_launch_submits_the_rest(
    shapes: Path, offline_clip: ClipSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: SlurmCluster
) -> None:
    from forgetkit.scoring import score_run

    spec = tiny_study(shapes, offline_clip, tmp_path, "{steps: 4, save_steps: 2}")
    monkeypatch.chdir(tmp_path)
    launch(load_study(spec), tmp_path / "local")
    local = score_run(RunDir(tmp_path / "local"))
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    run_dir = tmp_path / "run"
    args = ["launch", str(spec), "--run-dir", str(run_dir), "--backend", "slurm", "--eval-arrays"]

    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    jobs = {stage: entry["job_id"] for stage, entry in json.loads(slurm.jobs_path(run_dir).read_text()).items()}
    checkpoints = ["evaluate r/checkpoint-2", "evaluate r/checkpoint-4"]
    assert list(jobs) == ["evaluate zero-shot", "train r", *checkpoints]
    assert jobs[checkpoints[0]] == jobs[checkpoints[1]], "one array job, a task per checkpoint"
    slurm_cluster.client("scancel", jobs["train r"])
    slurm_cluster.wait_empty()
    state = RunDir(run_dir).read_state()
    assert state["evaluate zero-shot"]["status"] == "done"
    assert state.get("train r", {}).get("status") != "done"
    assert not set(checkpoints) & set(state), "cancelled by Slurm (--kill-on-invalid-dep) before they ran"

    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    resubmitted = json.loads(slurm.jobs_path(run_dir).read_text())
    changed = [stage for stage, entry in resubmitted.items() if entry["job_id"] != jobs[stage]]
    assert changed == ["train r", *checkpoints], "exactly the stages not done"
    slurm_cluster.wait_empty()
    assert {entry["status"] for entry in RunDir(run_dir).read_state().values()} == {"done"}
    assert score_run(RunDir(run_dir)) == local, "the same scores as the local backend"

    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "nothing to submit: all 4 stages are done" in again.output


def test_every_kind_of_stage_a_study_plans_can_be_given_its_own_resources(tmp_path: Path) -> None:
    spec = study_spec(tmp_path)
    built(tmp_path / "data", "captions")
    spec.write_text(spec.read_text().replace("eval: {datasets: [a, b]}", "eval: {datasets: [a, b], probe: captions}"))
    steps = launch(load_study(spec), tmp_path / "run", dry_run=True)
    kinds = {step.kind for step in steps}
    assert kinds == {"train", "export", "evaluate", "probe"}
    options = slurm.parse_options([f"{kind}:gres=gpu:{n}" for n, kind in enumerate(sorted(kinds), 1)])
    jobs = slurm.plan_jobs(steps, spec, tmp_path / "run", options)
    for job in jobs:
        n = sorted(kinds).index(stage_kind(job.stage)) + 1
        assert f"#SBATCH --gres=gpu:{n}\n" in job.text, job.stage


def test_a_multi_node_training_is_one_job_running_lf_s_launcher_on_every_node(tmp_path: Path) -> None:
    spec = study_spec(tmp_path)
    spec.write_text(spec.read_text() + "hardware: {nodes: 2, devices: 8, deepspeed: z3}\n")
    study = load_study(spec)
    steps = launch(study, tmp_path / "run", dry_run=True)
    jobs = {
        job.stage: job for job in slurm.plan_jobs(steps, spec, tmp_path / "run", {"time": "48:00:00"}, study.hardware)
    }
    lines = jobs["train r"].text.splitlines()
    directives = [line.removeprefix("#SBATCH ") for line in lines if line.startswith("#SBATCH ")]
    assert directives[2:] == [
        "--nodes=2",
        "--ntasks-per-node=1",
        "--gpus-per-node=8",
        "--requeue",
        "--signal=B:USR1@300",
        "--time=48:00:00",
    ]
    stage = [sys.executable, "-m", "forgetkit", "launch", str(spec), "--run-dir", str(tmp_path / "run")]
    assert lines[-11:] == [
        'export NNODES="$SLURM_JOB_NUM_NODES"',
        "export NPROC_PER_NODE=8",
        'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        'export MASTER_PORT="${MASTER_PORT:-29500}"',
        "export FORCE_TORCHRUN=1",
        """trap 'scontrol requeue "$SLURM_JOB_ID"' USR1""",
        "srun --kill-on-bad-exit=1 bash -c "
        + shlex.quote("NODE_RANK=$SLURM_NODEID exec " + shlex.join([*stage, "--stage", "train r"]))
        + " &",
        "child=$!",
        'wait "$child"; status=$?',
        'while kill -0 "$child" 2>/dev/null; do wait "$child"; status=$?; done',
        'exit "$status"',
    ]
    assert "--nodes" not in jobs["evaluate r/checkpoint-2"].text and "srun" not in jobs["evaluate r/checkpoint-2"].text
    train = next(step for step in steps if step.name == "train r").action.args[2]
    assert 'deepspeed: "' in train and train.split('deepspeed: "')[1].startswith(str(bundled("templates/deepspeed")))
    assert "per_device_train_batch_size: 1\ngradient_accumulation_steps: 1\n" in train, "16 = 1 x 1 x 8 GPUs x 2 nodes"


def test_a_node_after_the_first_trains_without_recording_and_only_a_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODE_RANK", "1")
    result = runner.invoke(
        app, ["launch", str(study_spec(tmp_path)), "--run-dir", str(tmp_path / "run"), "--stage", "evaluate zero-shot"]
    )
    assert str(result.exception) == (
        "NODE_RANK is set, but 'evaluate zero-shot' is no training stage of this study; unset NODE_RANK"
    )


def test_a_sharded_build_is_an_array_of_shares_then_one_job_that_writes_the_dataset(tmp_path: Path) -> None:
    argv = ["build-data", "imagenet-vqa", "--source", "/data/in", "--split", "train", "--out", str(tmp_path)]
    share, final = slurm.build_jobs(argv, 4, tmp_path, "build-imagenet-vqa-train", {"gres": "gpu:1"})
    python = shlex.join([sys.executable, "-m", "forgetkit", *argv])
    assert share.text.splitlines()[1:5] == [
        "#SBATCH --job-name=forgetkit-build-imagenet-vqa-train-shards",
        f"#SBATCH --output={tmp_path}/slurm/logs/build-imagenet-vqa-train-%A_%a.out",
        "#SBATCH --array=0-3",
        "#SBATCH --gres=gpu:1",
    ]
    assert share.text.splitlines()[-1] == f'exec {python} --shard "$SLURM_ARRAY_TASK_ID/4"'
    assert final.text.splitlines()[-1] == f"exec {python}" and "--array" not in final.text
    assert (share.after, final.after) == ((), (share.stage,))
    assert slurm.sbatch_command(final, {share.stage: "7"})[2:4] == [
        "--dependency=afterok:7",
        "--kill-on-invalid-dep=yes",
    ]


def test_on_a_real_cluster_a_sharded_build_writes_the_same_bytes_as_one_process(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: SlurmCluster
) -> None:
    from forgetkit.cli import main

    common = ["build-data", "imagenet-vqa", "--source", str(shapes), "--split", "train"]
    common += ["--class-names", str(shapes / "class_names.txt"), "--clip-model", "tiny-random-clip"]
    common += ["--clip-pretrained", "none", "--num-workers", "0"]

    def forgetkit(*args: str) -> None:
        monkeypatch.setattr(sys, "argv", ["forgetkit", *common, *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        assert exit_info.value.code == 0

    forgetkit("--out", str(tmp_path / "one"), "--cache-dir", str(tmp_path / "cache-one"))
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    monkeypatch.chdir(tmp_path)
    forgetkit(
        "--out", "sharded", "--cache-dir", "cache", "--clip-shard-size", "5", "--backend", "slurm", "--shards", "3"
    )
    slurm_cluster.wait_empty()

    logs = tmp_path / "sharded" / "slurm" / "logs"
    said = "".join(path.read_text() for path in sorted(logs.iterdir()))
    assert [f"shard {index}/3: this share's" in said for index in range(3)] == [True] * 3, said
    assert len(list((tmp_path / "cache").rglob("images-*.shard"))) == 8
    one = {path.name: path.read_bytes() for path in (tmp_path / "one").iterdir() if path.is_file()}
    sharded = {path.name: path.read_bytes() for path in (tmp_path / "sharded").iterdir() if path.is_file()}
    assert "imagenet_vqa_train.json" in one and sharded == one


def test_on_a_real_cluster_a_training_warned_of_its_end_requeues_itself_and_resumes_from_its_checkpoint(
    shapes: Path, offline_clip: ClipSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slurm_cluster: SlurmCluster
) -> None:
    """The warning Slurm sends before a time limit (`--signal=B:USR1@...`), sent now with `scancel --signal`."""
    from forgetkit.rundir import is_complete_checkpoint

    spec = tiny_study(shapes, offline_clip, tmp_path, "{steps: 200, save_steps: 20}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    run = RunDir(tmp_path / "run")
    steps = launch(load_study(spec), run.root, dry_run=True)
    (train,) = [job for job in slurm.plan_jobs(steps, spec, run.root, {}) if job.stage == "train r"]
    job_id = slurm.submit([train], run.root)["train r"]
    with pytest.raises(ForgetkitError, match=f"1 job\\(s\\) submitted earlier .* e.g. {job_id} \\(train r\\)"):
        slurm.submit([train], run.root)  # the real squeue still lists it
    first = run.checkpoints("r") / "checkpoint-20"
    slurm_cluster._wait("first checkpoint", lambda: is_complete_checkpoint(first), timeout=300)
    saved = (first / "trainer_state.json").stat().st_mtime_ns

    slurm_cluster.client("scancel", "--batch", "--signal=USR1", job_id)
    state = ("squeue", "--noheader", "--format=%T %r", f"--jobs={job_id}")
    slurm_cluster._wait("requeued job", lambda: slurm_cluster.client(*state).startswith("PENDING"), timeout=120)
    assert slurm_cluster.client(*state).split() == ["PENDING", "BeginTime"], "Slurm holds a requeued job a while"
    time.sleep(2)  # slurmd refuses ("already killed") a job restarted within the second its last run was killed in
    slurm_cluster.client("scontrol", "update", f"JobId={job_id}", "StartTime=now")
    slurm_cluster.wait_empty()

    assert run.read_state()["train r"] | {"command": ""} == {
        "status": "done",
        "config_hash": next(step.digest for step in steps if step.name == "train r"),
        "command": "",
        "requeued": 1,
    }
    assert is_complete_checkpoint(run.checkpoints("r") / "checkpoint-200")
    assert (first / "trainer_state.json").stat().st_mtime_ns == saved, "resumed from checkpoint-20, not retrained"
