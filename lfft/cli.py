"""The ``lfft`` command line: one small function per command, its options generated.

Each command below takes its stage config ``cfg`` plus its own run arguments (paths,
``--quiet``). :func:`make_app` gives every command ``--config``, ``--set`` and one option per
field of its config class in :mod:`lfft.config` (``--x/--no-x`` for booleans; generated in
:mod:`lfft.options_cli`), so an option is defined once, as a field. Precedence: option >
``--set`` > ``--config`` table > default.
Errors are one line: usage errors (unknown option, missing argument, bad value) print
``error: ...`` and a hint and exit 2; user errors (:class:`lfft.errors.LfftError`) exit 1;
``LFFT_DEBUG=1`` shows the traceback. Heavy imports happen inside the commands only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from lfft import __version__
from lfft.errors import LfftError
from lfft.options_cli import COMMANDS, UsageError, command, generated


def _path(*decls: str, help: str, metavar: str = "PATH") -> Any:
    """A path option (``decls`` given) or a positional path argument (none given)."""
    if decls:
        return typer.Option(*decls, help=help, metavar=metavar)
    return typer.Argument(help=help, metavar=metavar)


OutFile = Annotated[Path, _path("--out", "-o", help="Output Parquet file.", metavar="FILE")]
OutDir = Annotated[Path, _path("--out", "-o", help="Output folder.", metavar="DIR")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No summary table.")]


def _show(result, quiet: bool = False) -> None:
    if not quiet:
        from lfft.report import print_summary

        print_summary(result)


# --- data stages -----------------------------------------------------------------------------


@command("collect")
def _collect(
    cfg,
    inputs: Annotated[list[Path], _path(help="Log files or folders.", metavar="INPUT...")],
    out: OutFile,
    quiet: Quiet = False,
) -> None:
    """Raw logs -> interactions.parquet (+ interactions.rejects.parquet)."""
    from lfft.data.collect import collect as run
    from lfft.data.collect import skip_pandas_probe

    skip_pandas_probe()  # 0.2 s of start-up: see its docstring
    _show(run(inputs, out, cfg), quiet)


@command("clean")
def _clean(
    cfg,
    input: Annotated[Path, _path(help="interactions.parquet", metavar="INPUT")],
    out: OutFile,
    quiet: Quiet = False,
) -> None:
    """interactions.parquet -> clean.parquet: drop bad rows, fix text, merge, scrub PII."""
    from lfft.data.clean import clean as run

    _show(run(input, out, cfg), quiet)


@command("normalize")
def _normalize(
    cfg,
    input: Annotated[Path, _path(help="clean.parquet", metavar="INPUT")],
    out: OutFile,
    quiet: Quiet = False,
) -> None:
    """clean.parquet -> feedback.parquet: every feedback kind onto score/label/weight/spans."""
    from lfft.data.normalize import normalize as run

    _show(run(input, out, cfg), quiet)


@command("split")
def _split(
    cfg,
    input: Annotated[Path, _path(help="feedback.parquet", metavar="INPUT")],
    out: OutDir,
    quiet: Quiet = False,
) -> None:
    """feedback.parquet -> DIR/train.parquet, val.parquet, test.parquet (no key in two splits)."""
    from lfft.data.split import split as run

    _show(run(input, out, cfg), quiet)


@command("synth")
def _synth(
    cfg,
    out: Annotated[Path, _path("--out", "-o", help="Folder of .jsonl logs.", metavar="DIR")],
    quiet: Quiet = False,
) -> None:
    """Write realistic synthetic lfft-events logs (every event kind, some faulty lines)."""
    from lfft.data.synth import synth as run

    _show(run(out, cfg), quiet)


@command("inspect")
def _inspect(
    cfg,
    artifact: Annotated[Path, _path(help="Any lfft artifact (file or folder).", metavar="PATH")],
) -> None:
    """Show an artifact's schema, metadata, counts, label balance and a few rows."""
    from lfft.data.inspect import inspect as run

    run(artifact, rows=cfg.rows)


@command("export")
def _export(
    cfg,
    artifact: Annotated[Path, _path(help="feedback/split artifact", metavar="PATH")],
    out: Annotated[Path, _path("--out", "-o", help="Output .jsonl file.", metavar="FILE")],
    quiet: Quiet = False,
) -> None:
    """Write an artifact in the format TRL's trainers (or plain JSONL readers) load."""
    from lfft.data.export import export as run

    _show(run(artifact, cfg.format, out), quiet)


# --- model stages ----------------------------------------------------------------------------

Checkpoint = Annotated[Path, _path("--out", "-o", help="Checkpoint to write.", metavar="DIR")]


@command("init")
def _init(cfg, out: Checkpoint, quiet: Quiet = False) -> None:
    """Make a starting checkpoint: a causal LM plus a fresh feedback head."""
    from lfft.model.init import init as run

    _show(run(out, cfg), quiet)


@command("train")
def _train(
    cfg,
    model: Annotated[Path, _path("--model", "-m", help="Checkpoint to start from.")],
    data: Annotated[Path, _path("--data", "-d", help="Splits folder (train/val).")],
    out: Checkpoint,
    resume: Annotated[bool, typer.Option(help="Continue from the last step checkpoint.")] = False,
    nproc: Annotated[int | None, typer.Option(help="Launch N processes with torchrun.")] = None,
    quiet: Quiet = False,
) -> None:
    """Train L = L_M + lambda * L_F from the splits; writes a transformers-loadable checkpoint."""
    if nproc and nproc > 1:
        from lfft.model.distributed import launch

        raise typer.Exit(launch(nproc, sys.argv[1:]))
    from lfft.model.train import train as run

    result = run(model, data, out, cfg, resume=resume)
    _show(result, quiet or os.environ.get("RANK", "0") != "0")  # torchrun: rank 0 reports


@command("evaluate")
def _evaluate(
    cfg,
    model: Annotated[
        list[Path], _path("--model", "-m", help="Checkpoint to evaluate (repeat to compare).")
    ],
    data: Annotated[Path, _path("--data", "-d", help="Test split.")],
    out: OutDir,
    baseline: Annotated[
        Path | None, _path("--baseline", help="Checkpoint to compare generations with.")
    ] = None,
    quiet: Quiet = False,
) -> None:
    """Score a checkpoint: NLL, feedback-head quality, preferences, generations."""
    from lfft.model.evaluate import evaluate as run

    if len(model) > 1:  # each into OUT/NAME/, compared in OUT/report.html
        from lfft.report_html.evaluate import evaluate_many

        for result in evaluate_many(model, data, out, cfg, baseline):
            _show(result, quiet)
        return
    _show(run(model[0], data, out, cfg, baseline=baseline), quiet)


@command("explain")
def _explain(
    cfg,
    model: Annotated[Path, _path("--model", "-m", help="Checkpoint to explain.")],
    data: Annotated[Path | None, _path("--data", "-d", help="Rows to explain (split).")] = None,
    out: Annotated[
        Path | None, _path("--out", "-o", help="HTML page to write.", metavar="FILE")
    ] = None,
    baseline: Annotated[
        Path | None, _path("--baseline", help="Checkpoint to compare log-probs with.")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="One prompt (with --response).")] = None,
    response: Annotated[str | None, typer.Option(help="Its response, shown here.")] = None,
    quiet: Quiet = False,
) -> None:
    """Per-token feedback-head scores, user marks and log-prob changes: a page or one pair."""
    from lfft import explain as ex

    if prompt is not None or response is not None:
        if prompt is None or response is None or data is not None:
            raise UsageError("one pair needs --prompt and --response (and no --data)")
        from lfft.explain.terminal import show

        show(ex.explain_pair(model, prompt, response, cfg, baseline))
        return
    if data is None or out is None:
        raise UsageError("give --data and --out (a page), or --prompt and --response (one pair)")
    _show(ex.explain(model, data, out, cfg, baseline=baseline), quiet)


# --- orchestration ---------------------------------------------------------------------------


def _stage_tables(own: str) -> Callable[[], tuple[str, ...]]:
    def reads() -> tuple[str, ...]:
        from lfft.stages import STAGE_NAMES

        return (own, *STAGE_NAMES)

    return reads


@command("pipeline", reads=_stage_tables("pipeline"))
def _pipeline(
    cfg,
    tables,
    inputs: Annotated[list[Path], _path(help="Raw log files or folders.", metavar="INPUT...")],
    work: Annotated[Path, _path("--work", "-w", help="Work folder for every artifact.")],
) -> None:
    """Run collect -> clean -> normalize -> split -> init -> train -> evaluate in one folder."""
    from lfft.pipeline import run_pipeline

    run_pipeline(inputs, work, cfg, config_path=tables)


@command("online", reads=_stage_tables("online"))
def _online(
    cfg,
    tables,
    work: Annotated[Path, _path("--work", "-w", help="Work folder (state, versions).")],
    logs: Annotated[Path | None, _path("--logs", help="Folder new log files arrive in.")] = None,
    once: Annotated[bool, typer.Option(help="Run one round and exit.")] = False,
    rollback: Annotated[
        str | None,
        typer.Option(
            help="Point WORK/current at an earlier version, e.g. v0003.", metavar="VERSION"
        ),
    ] = None,
) -> None:
    """Keep learning: consume new logs exactly once, train, gate, promote."""
    from lfft.online import rollback as run_rollback
    from lfft.online import run_online

    if rollback is not None:
        run_rollback(work, rollback)
        typer.echo(f"{work}/current -> versions/{rollback}")
        return
    if logs is None:
        raise LfftError("--logs is required: the folder new log files arrive in")
    run_online(logs, work, cfg, once=once, config_path=tables)


@command("serve")
def _serve(
    cfg,
    logs: Annotated[Path, _path("--logs", help="Folder the lfft-events log files go to.")],
    model: Annotated[
        Path | None, _path("--model", "-m", help="Checkpoint, e.g. WORK/current (reloaded).")
    ] = None,
    upstream: Annotated[
        str | None,
        typer.Option(help="Forward to this OpenAI-compatible .../v1 URL.", metavar="URL"),
    ] = None,
) -> None:
    """OpenAI-compatible chat server + page; logs every turn and feedback as lfft-events."""
    from lfft.serve.server import serve

    serve(cfg, logs, model, upstream)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lfft {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """lfft: collect, clean, normalize, split; init, train, evaluate; or all at once (pipeline).

    Every option of a command is also a key of its table in a --config TOML file.
    """


def make_app(only: str | None = None) -> typer.Typer:
    """The typer app, generated from :data:`COMMANDS` and the config classes as they are now
    (with ``only``: just that command, all ``lfft NAME ...`` needs to start)."""
    app = typer.Typer(
        name="lfft",
        help="Language feedback fine-tuning: raw chat logs with user feedback -> a better model.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.callback()(_root)
    for cmd in COMMANDS:
        if only in (None, cmd.name):
            app.command(cmd.name)(generated(cmd))
    return app


def __getattr__(name: str) -> Any:
    """``lfft.cli.app``, the whole app, is made on first use (the entry point needs one command)."""
    if name == "app":
        globals()["app"] = made = make_app()
        return made
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


NAMES = {cmd.name for cmd in COMMANDS}
# the parser's error class (click's ClickException, which typer >= 0.2x vendors)
ClickError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _fail(message: str, code: int, hint: str | None = None) -> None:
    typer.echo(f"error: {message}", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; every error is one line (usage: exit 2, user errors: exit 1)."""
    debug = bool(os.environ.get("LFFT_DEBUG"))
    args = sys.argv[1:] if argv is None else argv
    name = next((a for a in args if not a.startswith("-")), None)  # the root takes no values
    try:
        group = typer.main.get_command(make_app(name if name in NAMES else None))
        code = group.main(args=args or ["--help"], prog_name="lfft", standalone_mode=False)
    except ClickError as e:  # the parser's: unknown option, missing argument, bad value
        ctx = getattr(e, "ctx", None)
        path = ctx.command_path if ctx is not None else "lfft"
        message = " ".join(e.format_message().split())
        _fail(message[:1].lower() + message[1:], e.exit_code, f"'{path} --help' lists the options")
    except UsageError as e:
        if debug:
            raise
        _fail(str(e), 2)
    except LfftError as e:
        if debug:
            raise
        _fail(str(e), 1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        if debug:
            raise
        _fail(f"{e.strerror or e}: {e.filename}", 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
