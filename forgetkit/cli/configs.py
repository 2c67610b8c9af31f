"""`forgetkit render-config`: a LLaMA-Factory training YAML, with one option per `Recipe` knob."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
import yaml

from forgetkit.errors import ForgetkitError
from forgetkit.knobs import help_of
from forgetkit.recipes import Recipe


def _with_recipe_options(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with one option per `Recipe` field after `--template`, named, typed and helped by the field
    itself; the command receives the ones given as `recipe` (the preset or the defaults fill the rest)."""
    hints = get_type_hints(Recipe)
    options = [
        inspect.Parameter(
            knob.name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=None,
            annotation=Annotated[hints[knob.name] | None, typer.Option(help=help_of(knob))],
        )
        for knob in fields(Recipe)
    ]
    own = [param for name, param in inspect.signature(command, eval_str=True).parameters.items() if name != "recipe"]
    at = next(i for i, param in enumerate(own) if param.name == "template") + 1

    def with_options(**given: Any) -> None:
        recipe = {knob.name: given.pop(knob.name) for knob in fields(Recipe)}
        command(**given, recipe={name: value for name, value in recipe.items() if value is not None})

    with_options.__name__, with_options.__doc__ = command.__name__, command.__doc__
    with_options.__signature__ = inspect.Signature([*own[:at], *options, *own[at:]])  # type: ignore[attr-defined]
    return with_options


@_with_recipe_options
def render_config(
    preset: Annotated[
        str | None, typer.Option(help="A recipe of the papers by name (--list-presets); other options override it.")
    ] = None,
    list_presets: Annotated[
        bool, typer.Option("--list-presets", help="Print every preset with its numbers and source, then exit.")
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            help="qwen2.5-vl-3b (default), qwen2.5-vl-7b, llava-1.5-7b, or a local path / hub id + --template."
        ),
    ] = None,
    template: Annotated[str | None, typer.Option(help="LF chat template; required for unregistered models.")] = None,
    gpus: Annotated[
        int, typer.Option(help="World size (GPUs over all nodes); per-device batch x accumulation x gpus = batch.")
    ] = 1,
    dataset: Annotated[
        str, typer.Option(help="LF dataset name(s), comma-separated; the first is the base of a mix.")
    ] = "imagenet_vqa_train",
    mix_ratio: Annotated[
        str | None,
        typer.Option(help="Share of rows from each dataset after the first, e.g. 0.5 (LF interleave_over)."),
    ] = None,
    dataset_dir: Annotated[str, typer.Option(help="Folder holding dataset_info.json.")] = "data",
    deepspeed: Annotated[
        str | None, typer.Option(help="z2 or z3 (shipped ZeRO configs) or a DeepSpeed JSON path.")
    ] = None,
    output_dir: Annotated[
        str | None, typer.Option(help="Where LF writes checkpoints (default: saves/<model>/<preset or recipe>).")
    ] = None,
    cpu: Annotated[
        bool, typer.Option("--cpu", help="fp32 and no dataloader workers, for machines without a GPU.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write the YAML here instead of printing.")
    ] = None,
    validate: Annotated[bool, typer.Option(help="Check the YAML with LLaMA-Factory's own parser first.")] = True,
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            "--trust-remote-code",
            help="Let LF run the Python files the model names in its config.json (auto_map); off by default, "
            "Qwen2.5-VL and LLaVA need none.",
        ),
    ] = False,
    check_trainable: Annotated[
        bool,
        typer.Option(
            "--check-trainable",
            help="Apply LF's own freezing/LoRA code to a tiny offline stand-in of the model's family and print its "
            "module groups and what trains.",
        ),
    ] = False,
    recipe: dict[str, Any] | None = None,
) -> None:
    """Render a LLaMA-Factory training YAML for one recipe (default: the paper's LLM full 1e-6).

    Examples: forgetkit render-config --part llm --lr 1e-6 -o train.yaml;
    forgetkit render-config --preset fig2-a --gpus 8 --deepspeed z2
    """
    from forgetkit import atomic
    from forgetkit.presets import preset_table
    from forgetkit.train_config import TrainRequest, render_request

    if list_presets:
        typer.echo(preset_table())
        return
    if output is not None and output.is_dir():
        raise ForgetkitError(f"-o {output} is a folder; name the YAML file to write, e.g. -o {output / 'train.yaml'}")
    request = TrainRequest(
        preset=preset,
        recipe=recipe or {},
        model=model,
        template=template,
        datasets=tuple(d.strip() for d in dataset.split(",") if d.strip()),
        mix_ratios=tuple(r.strip() for r in mix_ratio.split(",")) if mix_ratio else (),
        dataset_dir=dataset_dir,
        gpus=gpus,
        cpu=cpu,
        deepspeed=deepspeed,
        output_dir=output_dir,
        trust_remote_code=trust_remote_code,
    )
    rendered = render_request(request, check=validate)
    text = rendered.text
    if check_trainable:
        from forgetkit.models import Family, family_of
        from forgetkit.trainable import trainable_parameters

        family = family_of(rendered.model, "--check-trainable")
        groups = "; ".join(f"{part}: {', '.join(keys)}" for part, keys in Family.part_keys(family).items())
        typer.echo(f"{family} modules ({rendered.model.name}): {groups}", err=True)
        trained = trainable_parameters(yaml.safe_load(text), rendered.model.num_layers(), family)
        typer.echo(trained.describe(), err=True)
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic.write_text(output, text)
        typer.echo(f"wrote {output}", err=True)
