"""The `forgetkit` command: each verb parses its options and calls one library function.

The verbs live by topic, each a plain function registered here, in the order `--help` lists them: `data`
(build-data), `configs` (render-config), `study` (launch, score, report), `tools` (probe, demo, doctor).
"""

from __future__ import annotations

import logging
import sys

import typer
from typer._click.exceptions import ClickException

from forgetkit.cli import configs, data, study, tools
from forgetkit.errors import ForgetkitError

app = typer.Typer(
    help=(
        "Measure what fine-tuning a multimodal LLM makes it forget.\n\n"
        "Typical flow: build-data (CLIP-hard multiple-choice VQA from an image folder) -> "
        "render-config (a LLaMA-Factory recipe) -> launch (train, predict every checkpoint, score) -> "
        "score (accuracy tables). `forgetkit demo` runs all of it offline on a tiny model."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("build-data")(data.build_data)
app.command("render-config")(configs.render_config)
app.command()(study.launch)
app.command()(study.score)
app.command()(study.report)
app.command()(tools.probe)
app.command()(tools.demo)
app.command()(tools.doctor)


def main() -> None:
    """The `forgetkit` command: a bad input, ours or an option Typer could not parse, is one `error:` line."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        code = app(standalone_mode=False)
    except ForgetkitError as err:
        typer.echo(f"error: {err}", err=True)
        sys.exit(2)
    except ClickException as err:
        context = getattr(err, "ctx", None)
        hint = f"; see {context.command_path} --help" if context is not None else ""
        typer.echo(f"error: {' '.join(err.format_message().split())}{hint}", err=True)
        sys.exit(err.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted; rerun the same command to continue where it stopped", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
