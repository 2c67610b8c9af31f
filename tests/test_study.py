"""Study specs: `runs/demo.yaml` loads into recipes and data; bad specs fail naming the key."""

from pathlib import Path

import pytest
import yaml
from built_data import built

from forgetkit.clip_encoder import ClipSpec
from forgetkit.errors import ForgetkitError
from forgetkit.recipes import CPU, Part
from forgetkit.resources import bundled
from forgetkit.rundir import RunDir
from forgetkit.spec import load_study
from forgetkit.stages.stage import Stage
from forgetkit.study import launch, plan


def test_demo_spec_loads_with_paths_relative_to_the_spec() -> None:
    study = load_study(bundled("runs/demo.yaml"))
    assert study.model == "tiny-qwen2.5-vl" and study.hardware == CPU
    assert Path(study.data.dataset_dir) == bundled("runs") / "data"
    assert study.data.train == ("imagenet_vqa_train",)
    recipe = study.recipes["llm-full"]
    assert recipe.part is Part.llm and recipe.lr == 1e-3 and recipe.steps == 30


def spec(tmp_path: Path, recipe: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(f"name: s\nmodel: tiny-qwen2.5-vl\ndata: {{dataset_dir: d}}\neval: {{datasets: [v]}}\n{recipe}\n")
    return path


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("recipes: {r: {lr: fast}}", "recipes.r.lr: must be a number, got 'fast'"),
        ("recipes: {r: {part: eyes}}", "recipes.r.part: input should be 'llm', 'vision'"),
        ("recipes: {r: {lr: -1}}", "recipes.r.lr: must be a positive finite number, got -1"),
        ("recipes: {r: {lr: .nan}}", "recipes.r.lr: must be a positive finite number, got nan"),
        ("recipes: {}", "recipes must map recipe names"),
        ("recipes: {r: {}}\nextra: 1", "unknown key(s) ['extra']"),
        ("recipes: {r: {}}\ntrust_remote_code: 'no'", "trust_remote_code: must be true or false (unquoted), got 'no'"),
    ],
)
def test_bad_specs_name_what_is_wrong(tmp_path: Path, recipe: str, message: str) -> None:
    with pytest.raises(ForgetkitError) as error:
        load_study(spec(tmp_path, recipe))
    assert message in str(error.value)


def test_launch_without_built_data_says_how_to_build_it(tmp_path: Path) -> None:
    study = load_study(spec(tmp_path, "recipes: {r: {}}"))
    with pytest.raises(ForgetkitError, match="dataset_info.json does not exist; build the data first"):
        launch(study, tmp_path / "run")


def test_a_second_launch_on_a_busy_run_directory_is_refused(tmp_path: Path) -> None:
    from forgetkit.rundir import RunDir

    study = load_study(spec(tmp_path, "recipes: {r: {}}"))
    built(Path(study.data.dataset_dir), "v", "imagenet_vqa_train")
    run = RunDir(tmp_path / "run")
    with run.exclusive(), pytest.raises(ForgetkitError, match="another forgetkit launch is running in"):
        launch(study, run.root)


def test_quadrants_group_the_eval_datasets(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        "name: s\nmodel: tiny-qwen2.5-vl\ndata: {dataset_dir: d}\nrecipes: {r: {}}\n"
        "eval:\n  quadrants:\n    ID^T-ID^I: [imagenet_vqa_val, imagenetv2_vqa_test]\n    OOD^T-ID^I: imagewikiqa\n"
    )
    study = load_study(path)
    assert study.eval.quadrants == {
        "ID^T-ID^I": ("imagenet_vqa_val", "imagenetv2_vqa_test"),
        "OOD^T-ID^I": ("imagewikiqa",),
    }
    assert study.eval.all_datasets == ("imagenet_vqa_val", "imagenetv2_vqa_test", "imagewikiqa")


@pytest.mark.parametrize(
    ("eval_", "message"),
    [
        ("{quadrants: {ID-ID: [a]}}", "eval: unknown quadrant(s) ['ID-ID']"),
        ("{quadrants: [a]}", "eval.quadrants maps quadrant names"),
        ("{datasets: []}", "eval: no datasets"),
        ("{datasets: [1]}", "eval.datasets must be a dataset name or a list of names"),
    ],
)
def test_bad_eval_sections_name_the_problem(tmp_path: Path, eval_: str, message: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(f"name: s\nmodel: tiny-qwen2.5-vl\ndata: {{dataset_dir: d}}\nrecipes: {{r: {{}}}}\neval: {eval_}\n")
    with pytest.raises(ForgetkitError) as error:
        load_study(path)
    assert message in str(error.value)


@pytest.mark.parametrize("name", ["fig2", "table1", "table2", "fig3", "fig4"])
def test_paper_specs_load_with_their_presets(name: str) -> None:
    from forgetkit.presets import PRESETS

    study = load_study(Path(__file__).resolve().parents[1] / "runs" / f"{name}.yaml")
    assert study.model.startswith("qwen2.5-vl")
    for recipe_name, recipe in study.recipes.items():
        assert recipe in {preset.recipe for preset in PRESETS.values()}, recipe_name
    assert set(study.eval.quadrants) <= {"ID^T-ID^I", "ID^T-OOD^I", "OOD^T-ID^I", "OOD^T-OOD^I"}


def test_fig4_spec_holds_the_papers_three_arms_at_half_and_the_llava_ratio_sweep() -> None:
    study = load_study(Path(__file__).resolve().parents[1] / "runs" / "fig4.yaml")
    mixes = {name: (study.data_for(name).train[1:], study.data_for(name).mix_probs[1:]) for name in study.recipes}
    assert mixes == {
        "imagenet-only": ((), ()),
        "flowers-0.5": (("flowers102_vqa_train",), ("0.5",)),
        "ocr-vqa-0.5": (("ocr_vqa_train",), ("0.5",)),
        **{f"llava-{r}": (("llava_665k",), (r,)) for r in ("0.1", "0.3", "0.5", "0.7")},
    }


def test_a_recipe_can_start_from_a_preset_and_override_it(tmp_path: Path) -> None:
    study = load_study(spec(tmp_path, "recipes: {r: {preset: fig2-a, lr: 2.0e-4, steps: 100}}"))
    recipe = study.recipes["r"]
    assert recipe.method.value == "lora" and recipe.lr == 2e-4 and recipe.steps == 100 and recipe.batch_size == 32


def test_logits_scoring_runs_in_place_of_lf_prediction(shapes: Path, offline_clip: ClipSpec, tmp_path: Path) -> None:
    import json

    from datasets_builders import BuildOptions, build
    from forgetkit.rundir import RunDir
    from forgetkit.scoring import score_file
    from forgetkit.study import plan

    options = BuildOptions(shapes, tmp_path / "data", "val", shapes / "class_names.txt", clip=offline_clip)
    build("imagenet-vqa", options)
    path = tmp_path / "study.yaml"
    path.write_text(
        "name: s\nmodel: tiny-qwen2.5-vl\nhardware: cpu\n"
        "data: {dataset_dir: data, train: [imagenet_vqa_val], image_max_pixels: 4096, cutoff_len: 512}\n"
        "eval: {datasets: [imagenet_vqa_val], scoring: logits}\n"
        "recipes: {r: {steps: 2, save_steps: 2}}\n"
    )
    run = RunDir(tmp_path / "run").create()
    steps = plan(load_study(path), run)
    assert [(step.name, step.parts) for step in steps] == [
        ("evaluate zero-shot", ("logits zero-shot imagenet_vqa_val",)),
        ("train r", ()),
        ("evaluate r/checkpoint-2", ("logits r/checkpoint-2 imagenet_vqa_val",)),
    ]
    steps[0].action()
    target = run.predictions("zero-shot", "imagenet_vqa_val")
    score = score_file(target)
    assert score.total == 24 and 0 <= score.accuracy <= 1
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert {row["predict"] for row in rows} <= set("ABCD") and "letter_probs" in rows[0]


def test_lf_defaults_decoding_predicts_every_checkpoint_with_lfs_seeded_sampling(tmp_path: Path) -> None:
    import yaml

    from forgetkit.rundir import RunDir
    from forgetkit.study import plan

    path = tmp_path / "study.yaml"
    path.write_text(
        "name: s\nmodel: tiny-qwen2.5-vl\nseed: 7\nhardware: cpu\ndata: {dataset_dir: d}\n"
        "eval: {datasets: [v], decoding: lf-defaults}\nrecipes: {r: {steps: 2, save_steps: 2}}\n"
    )
    steps = {step.name: step for step in plan(load_study(path), RunDir(tmp_path / "run"))}
    for name in ("evaluate zero-shot", "evaluate r/checkpoint-2"):
        config = yaml.safe_load(steps[name].action.members[0].config)
        assert config["seed"] == 7 and not {"do_sample", "temperature", "max_new_tokens"} & set(config)


@pytest.mark.parametrize(
    ("eval_keys", "message"),
    [
        ("decoding: beam", "decoding 'beam' unknown; use greedy or lf-defaults"),
        ("decoding: lf-defaults, scoring: logits", "decoding lf-defaults samples through LF's own prediction"),
        ("decoding: lf-defaults, backend: vllm", "decoding lf-defaults samples through LF's own prediction"),
    ],
)
def test_decoding_is_checked(tmp_path: Path, eval_keys: str, message: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(
        f"name: s\nmodel: m\ndata: {{dataset_dir: d}}\neval: {{datasets: [v], {eval_keys}}}\nrecipes: {{r: {{}}}}\n"
    )
    with pytest.raises(ForgetkitError, match=message):
        load_study(path)


def test_vlmeval_benchmarks_of_a_model_without_a_vlmevalkit_entry_need_its_pixel_limits(tmp_path: Path) -> None:
    from forgetkit.rundir import RunDir
    from forgetkit.study import plan

    path = tmp_path / "study.yaml"
    text = "name: s\nmodel: tiny-qwen2.5-vl\nhardware: cpu\ndata: {dataset_dir: d}\neval: {datasets: [vlmeval:MMMU]}\n"
    path.write_text(text + "recipes: {r: {steps: 2, save_steps: 2}}\n")
    with pytest.raises(ForgetkitError, match="no VLMEvalKit config entry .* set eval.vlmeval_min_pixels"):
        plan(load_study(path), RunDir(tmp_path / "run"))
    path.write_text(
        text.replace(
            "datasets: [vlmeval:MMMU]", "datasets: [vlmeval:MMMU], vlmeval_min_pixels: 64, vlmeval_max_pixels: 4096"
        )
        + "recipes: {r: {steps: 2, save_steps: 2}}\n"
    )
    assert "vlmeval zero-shot" in [step.name for step in plan(load_study(path), RunDir(tmp_path / "run"))]


@pytest.mark.parametrize("spec_file", sorted(path.name for path in bundled("runs").glob("*.yaml")))
def test_every_shipped_study_plans_under_dry_run(spec_file: str, tmp_path: Path) -> None:
    steps = launch(load_study(bundled("runs") / spec_file), tmp_path / "run", dry_run=True)
    assert steps and not any(step.done for step in steps)
    assert not (tmp_path / "run").exists(), "a dry run writes nothing"


def test_a_recipe_may_train_on_its_own_mix(tmp_path: Path) -> None:
    """Fig. 4 in one study: each recipe its own `train:` and `mix_ratio:` (or its preset's 0.5)."""
    import yaml

    from forgetkit.rundir import RunDir
    from forgetkit.study import plan

    path = tmp_path / "study.yaml"
    path.write_text(
        "name: s\nmodel: tiny-qwen2.5-vl\nhardware: cpu\ndata: {dataset_dir: d, train: [a]}\neval: {datasets: [v]}\n"
        "recipes:\n  alone: {steps: 2, save_steps: 2}\n  half: {preset: fig4, steps: 2, save_steps: 2, train: [a, b]}\n"
        "  most: {steps: 2, save_steps: 2, train: [a, b], mix_ratio: 0.7}\n"
    )
    steps = {step.name: step for step in plan(load_study(path), RunDir(tmp_path / "run"))}
    configs = {name: yaml.safe_load(steps[f"train {name}"].action.args[2]) for name in ("alone", "half", "most")}
    assert configs["alone"]["dataset"] == "a" and "interleave_probs" not in configs["alone"]
    assert (configs["half"]["dataset"], configs["half"]["interleave_probs"]) == ("a,b", "0.5,0.5")
    assert (configs["most"]["dataset"], configs["most"]["interleave_probs"]) == ("a,b", "0.3,0.7")
    path.write_text(path.read_text().replace("mix_ratio: 0.7", "mix_ratio: 1.5"))
    with pytest.raises(ForgetkitError, match="recipes.most: mixing ratio 1.5 for b"):
        load_study(path)


def test_a_run_directory_is_the_same_set_of_stages_however_it_is_spelled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slurm jobs name the run by its absolute path, a login node often by a relative one."""
    from forgetkit.rundir import RunDir
    from forgetkit.study import plan

    path = tmp_path / "study.yaml"
    path.write_text(
        "name: s\nmodel: tiny-qwen2.5-vl\nhardware: cpu\ndata: {dataset_dir: d}\neval: {datasets: [v]}\n"
        "recipes: {r: {steps: 2, save_steps: 2}}\n"
    )
    (tmp_path / "work").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "work")
    study = load_study(path)
    monkeypatch.chdir(tmp_path / "work")
    spellings = [Path("run"), tmp_path / "work" / "run", tmp_path / "link" / "run", Path("../work/./run")]
    digests = [[(step.name, step.digest) for step in plan(study, RunDir(run))] for run in spellings]
    assert all(d == digests[0] for d in digests[1:])


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("state.json", "[]", "state.json must hold a JSON object, found a list; delete it to recheck every stage"),
        ("state.json", '{"train r": 1}', "holds a stage that is not an object; delete it"),
        ("quadrants.json", "{", "quadrants.json is not valid JSON"),
        ("continual.json", "[1]", "continual.json must hold a JSON object"),
    ],
)
def test_a_corrupt_run_record_is_one_line_naming_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    from forgetkit.rundir import RunDir

    run = RunDir(tmp_path / "run").create()
    (run.root / name).write_text(text)
    with pytest.raises(ForgetkitError, match=message):
        run.read_state(), run.quadrants(), run.continual()


def test_a_relative_model_path_is_the_spec_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "study.yaml"
    path.write_text(
        "name: s\nmodel: ../models/mine\ntemplate: qwen2_vl\ndata: {dataset_dir: d}\neval: {datasets: [v]}\n"
        "recipes: {r: {}}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert load_study(path).model == str(tmp_path / "models" / "mine")
    path.write_text(path.read_text().replace("../models/mine", "org/mine"))
    assert load_study(path).model == "org/mine"  # a hub id stays one


def trusts_model_code(step: Stage) -> bool:
    """What a planned stage hands LF: the probe's keyword, else its YAML, or every eval set's predict YAML or
    vLLM settings (JSON, which YAML reads too)."""
    if step.kind == "evaluate":
        (trusted,) = {yaml.safe_load(member.config)["trust_remote_code"] for member in step.action.members}
        return trusted
    if "trust_remote_code" in step.action.keywords:
        return step.action.keywords["trust_remote_code"]
    return yaml.safe_load(step.action.args[2])["trust_remote_code"]


@pytest.mark.parametrize("trusted", [False, True])
def test_trust_remote_code_reaches_every_stage_that_loads_the_model(tmp_path: Path, trusted: bool) -> None:
    steps: list[Stage] = []
    for eval_ in ("{datasets: [v], probe: c}", "{datasets: [v], scoring: logits}", "{datasets: [v], backend: vllm}"):
        path = tmp_path / "study.yaml"
        path.write_text(
            f"name: s\nmodel: tiny-qwen2.5-vl\nhardware: cpu\ndata: {{dataset_dir: d}}\neval: {eval_}\n"
            "recipes: {r: {steps: 2, save_steps: 2}}\n"
            "continual: {tasks: [rs], sequences: {inc: {strategy: inclora, steps: 2, save_steps: 2}}}\n"
            + ("trust_remote_code: true\n" if trusted else "")
        )
        steps += plan(load_study(path), RunDir(tmp_path / "run"))
    assert {step.kind for step in steps} == {"train", "export", "evaluate", "probe"}
    kinds = {member.kind for step in steps if step.kind == "evaluate" for member in step.action.members}
    assert kinds == {"predict", "logits", "chat"}
    assert {step.name: trusts_model_code(step) for step in steps} == {step.name: trusted for step in steps}
