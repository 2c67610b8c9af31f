"""From what a user asks for (a preset, options that override it) to one validated LF training YAML.

`forgetkit render-config` and tests call `render_request`; the CLI only parses options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from forgetkit.errors import ForgetkitError
from forgetkit.mixing import mix_plan, number
from forgetkit.models import DEFAULT_MODEL, ModelSpec, resolve_model
from forgetkit.presets import Preset, get_preset
from forgetkit.recipes import CPU, Hardware, Recipe
from forgetkit.render import SEED, DataSpec, render_train, validate


@dataclass(frozen=True)
class TrainRequest:
    """Everything `render-config` takes. `recipe` holds only the recipe fields the user gave; they
    override the preset's (or the paper's default recipe when no preset is named)."""

    preset: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    template: str | None = None
    datasets: tuple[str, ...] = ("imagenet_vqa_train",)
    mix_ratios: tuple[str, ...] = ()
    dataset_dir: str = "data"
    gpus: int = 1
    cpu: bool = False
    deepspeed: str | None = None
    output_dir: str | None = None
    seed: int = SEED
    trust_remote_code: bool = False


@dataclass(frozen=True)
class RenderedTrain:
    text: str
    recipe: Recipe
    model: ModelSpec
    data: DataSpec
    output_dir: str


def resolve_recipe(
    preset: Preset | None, given: dict[str, Any], datasets: tuple[str, ...], where: str = "render-config"
) -> Recipe:
    """The preset's recipe with the given fields on top; a preset with per-task epochs (Table 3) takes the
    training dataset's, unless a length is given."""
    base = preset.recipe if preset is not None else Recipe()
    given = dict(given)
    if preset is not None and preset.epochs_by_task and not {"steps", "epochs"} & set(given):
        given["epochs"] = preset.epochs_for(datasets)
    return base.updated(given, where)


def mixing(preset: Preset | None, datasets: tuple[str, ...], ratios: tuple[str, ...]) -> tuple[str, ...]:
    """LF `interleave_probs` for the datasets: from --mix-ratio, or the preset's ratio (Fig. 4's 0.5)."""
    if not ratios and preset is not None and preset.mix_ratio is not None and len(datasets) > 1:
        ratios = (str(preset.mix_ratio),) * (len(datasets) - 1)
    if not ratios:
        return ()
    if len(ratios) != len(datasets) - 1:
        raise ForgetkitError(
            f"--mix-ratio gives {len(ratios)} ratio(s) for {len(datasets) - 1} dataset(s) after the first; "
            "give one ratio per extra dataset, e.g. --dataset imagenet_vqa_train,llava_665k --mix-ratio 0.5"
        )
    try:
        pairs = [(name, Decimal(ratio)) for name, ratio in zip(datasets[1:], ratios)]
    except InvalidOperation:
        raise ForgetkitError(f"--mix-ratio {','.join(ratios)}: ratios are numbers such as 0.5") from None
    if not all(ratio.is_finite() for _, ratio in pairs):
        raise ForgetkitError(f"--mix-ratio {','.join(ratios)}: ratios are finite numbers such as 0.5")
    names, probs, dropped = mix_plan(datasets[0], pairs)
    if dropped:
        raise ForgetkitError(f"ratio 0 for {', '.join(dropped)}: leave those datasets out of --dataset instead")
    return tuple(number(p) for p in probs)


def render_request(request: TrainRequest, check: bool = True) -> RenderedTrain:
    """Preset + overrides → recipe, model, data, hardware → LF YAML, checked by LF's parser unless `check` is off."""
    preset = get_preset(request.preset) if request.preset else None
    if not request.datasets:
        raise ForgetkitError("--dataset needs at least one LF dataset name")
    recipe = resolve_recipe(preset, request.recipe, request.datasets)
    model_name = request.model or (preset.model if preset is not None and preset.model else DEFAULT_MODEL)
    model = resolve_model(model_name, request.template)
    data = DataSpec(
        dataset_dir=request.dataset_dir,
        train=request.datasets,
        mix_probs=mixing(preset, request.datasets, request.mix_ratios),
    )
    hardware = CPU if request.cpu else Hardware(devices=request.gpus)
    short = model.name.rstrip("/").rsplit("/", 1)[-1]
    output_dir = request.output_dir or f"saves/{short}/{request.preset or recipe.label}"
    text = render_train(
        model,
        recipe,
        data,
        output_dir,
        hardware,
        seed=request.seed,
        deepspeed=request.deepspeed,
        trust_remote_code=request.trust_remote_code,
    )
    if check:
        validate(text)
    return RenderedTrain(text, recipe, model, data, output_dir)
