"""The verbs around a study: `probe` a checkpoint's drift, run the offline `demo`, check the environment
(`doctor`)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from forgetkit.render import DataSpec


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


def probe(
    base: Annotated[str, typer.Argument(help="The base model: a registry name (see render-config) or a folder.")],
    checkpoint: Annotated[Path, typer.Argument(help="A fine-tuned checkpoint folder: a full model or a LoRA adapter.")],
    data: Annotated[Path, typer.Option(help="Data folder with dataset_info.json (made by build-data).")],
    dataset: Annotated[str, typer.Option(help="Held-out prompts that are not multiple choice, e.g. captions.")],
    template: Annotated[
        str | None, typer.Option(help="LF chat template; needed when BASE is a folder or hub id, not a registry name.")
    ] = None,
    checkpoint_base: Annotated[
        Path | None, typer.Option(help="The model a LoRA checkpoint was trained on, if not BASE (IncLoRA).")
    ] = None,
    answer_tokens: Annotated[
        str, typer.Option(help="The fine-tuning task's answers, comma-separated (their first tokens count).")
    ] = "A,B,C,D",
    positions: Annotated[
        int, typer.Option(min=1, help="Also average the KL over the first K reference-answer tokens fed in.")
    ] = 1,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    bf16: Annotated[bool, typer.Option("--bf16", help="Run both models in bfloat16.")] = False,
    image_max_pixels: Annotated[
        int, typer.Option(help="LF's image pixel limit, as in training.")
    ] = DataSpec.image_max_pixels,
    cutoff_len: Annotated[int, typer.Option(help="LF's cutoff length, as in training.")] = DataSpec.cutoff_len,
    output: Annotated[Path | None, typer.Option(help="Write every number (and per prompt) as JSON here.")] = None,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Let the models run the Python files their config names.")
    ] = False,
) -> None:
    """Drift of a checkpoint from its base on held-out non-MCQ prompts, from one forward pass per prompt:
    KL(base || checkpoint) of the next-token distribution, and the probability mass moved onto the task's answer
    tokens (a model tuned on letter answers starting captions with a letter).

    Example: forgetkit probe tiny-qwen2.5-vl run/checkpoints/llm-full/checkpoint-30 --data data --dataset
    shape_captions
    """
    from forgetkit.models import resolve_model
    from forgetkit.stages.probe import probe as run_probe

    model = resolve_model(base, template)
    result = run_probe(
        model.path,
        checkpoint,
        data,
        dataset,
        model.template,
        image_max_pixels=image_max_pixels,
        cutoff_len=cutoff_len,
        bf16=bf16,
        device=device,
        batch_size=batch_size,
        answer_tokens=tuple(token.strip() for token in answer_tokens.split(",") if token.strip()),
        positions=positions,
        checkpoint_base=checkpoint_base,
        output=output,
        trust_remote_code=trust_remote_code,
    )
    typer.echo(
        f"{checkpoint} on {dataset} ({result['rows']} prompts): KL {result['kl']:.4f} nats, answer-token mass "
        f"{result['answer_mass_base']:.4f} -> {result['answer_mass_checkpoint']:.4f}, "
        f"top-token agreement {result['top_token_agreement'] * 100:.1f}%"
    )


def demo(
    workdir: Annotated[Path, typer.Option(help="Where the demo's images, data and run go.")] = Path("forgetkit-demo"),
) -> None:
    """Run the whole pipeline offline on CPU in about ten minutes; print its score table and write its report.

    A tiny random-weight Qwen2.5-VL, drawn images for every quadrant, CLIP distractors from random weights,
    real LLaMA-Factory training (two recipes and a 2-task continual run), prediction, LoRA merges and
    VLMEvalKit, then `forgetkit report`. Rerun with the same --workdir to continue an interrupted demo.
    """
    from forgetkit.doctor import require

    require("cpu")  # before the pipeline's imports, so a broken stack is told in seconds
    from forgetkit.demo import run_demo
    from forgetkit.report import summary, write_report
    from forgetkit.report.terminal import format_run
    from forgetkit.rundir import RunDir

    table = run_demo(workdir)
    run = workdir / "run"
    typer.echo(f"\nrun directory: {run}\n")
    typer.echo(format_run(RunDir(run), table))
    typer.echo("\n" + summary(write_report(run, data_dir=workdir / "data")))


def doctor(
    device: Annotated[
        Device, typer.Option(help="Where studies will run: cuda makes the CUDA check required, cpu leaves it optional.")
    ] = Device.cpu,
) -> None:
    """Check this environment, one line per check: the torch/torchvision/torchaudio trio, LLaMA-Factory,
    VLMEvalKit and open_clip at forgetkit's pins (required), CUDA, bf16, flash-attn, vLLM, the lock,
    $LMUData and the HF cache (reported). Exit status 1 when a required check fails; `launch` and
    `demo` run the required checks before their first stage (once per environment).
    """
    from forgetkit.doctor import run_checks

    checks = run_checks(device.value)
    for check in checks:
        typer.echo(check.line())
    if any(check.required and not check.ok for check in checks):
        raise typer.Exit(1)
