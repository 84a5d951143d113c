"""The ``leanml`` command line. Each area adds its commands in a module of this package.

Every :class:`~leanml.errors.LeanMLError` becomes one line on stderr and its ``exit_code``
(2 for bad parameters or settings, 1 otherwise); usage errors exit with 2 as in click.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from leanml.cli import (
    _common,
    compress,
    config,
    datasets,
    feedback,
    models,
    monitor,
    report,
    serve,
    userdata,
)
from leanml.errors import LeanMLError

__all__ = ["app", "demo", "main", "version"]

app = typer.Typer(
    name="leanml",
    help="Serve, monitor and compress scikit-learn models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="TOML settings file (else $LEANML_CONFIG).", dir_okay=False),
    ] = None,
) -> None:
    ctx.obj = _common.load_settings(config)


@app.command()
def demo(
    ctx: typer.Context,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the results as JSON here.")
    ] = None,
    models_dir: _common.ModelsDirOption = None,
    requests: Annotated[
        int, typer.Option(min=10, help="Single-text predictions per model in the load.")
    ] = 2000,
    retrain: Annotated[bool, typer.Option(help="Retrain even when a model exists.")] = False,
    store: _common.StoreUrlOption = None,
    report_dir: Annotated[
        Path, typer.Option("--report-dir", help="Where the HTML report is written.")
    ] = Path("leanml-report"),
    report: Annotated[bool, typer.Option(help="Write the report at the end.")] = True,
) -> None:
    """Train (or reuse) the three demo models, load-test them and print one table."""
    # imported here, not at the top: the demo loads training, compression and the report
    # (matplotlib), which every other command would otherwise pay for at start-up
    from leanml.demo import run_demo

    run_demo(
        settings=ctx.obj,
        models_dir=models_dir,
        n_requests=requests,
        retrain=retrain,
        store_url=store,
        report_dir=report_dir if report else None,
        json_path=json_path,
        console=_common.console,
    )


@app.command()
def version() -> None:
    """Print leanml's version."""
    from leanml._version import __version__

    typer.echo(__version__)


for _area in (models, userdata, feedback, datasets, compress, monitor, serve, report, config):
    _area.register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``leanml`` script; returns the exit code."""
    try:
        # without standalone mode, click *returns* the code of a typer.Exit raised by a command
        code = app(args=argv, prog_name="leanml", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        _common.err_console.print("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors and bad parameters, shown as click does
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:  # pragma: no cover - every typer exception we raise has show()
            _common.err_console.print(f"error: {exc}")
        return int(getattr(exc, "exit_code", 2))
    except LeanMLError as exc:
        # the message is text, not markup ("[monitor] key" must print as written), on one line
        _common.err_console.print(
            f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        return exc.exit_code
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
