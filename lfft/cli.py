"""The ``lfft`` command line: thin typer wrappers over the library API.

Each command builds its stage config (option > ``--config`` table > default), calls one library
function and prints its summary. Known user errors (:class:`lfft.errors.LfftError`) become
``error: <reason>`` and exit 1 in :func:`main`; ``LFFT_DEBUG=1`` shows the traceback.
Heavy imports (torch, transformers) happen inside the model commands only.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from lfft import __version__
from lfft.errors import LfftError

app = typer.Typer(
    name="lfft",
    help="Language feedback fine-tuning: raw chat logs with user feedback -> a better model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML file; the command's table supplies defaults."),
]
OutFile = Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No summary table.")]


def _show(result, quiet: bool = False) -> None:
    if not quiet:
        from lfft.report import print_summary

        print_summary(result)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lfft {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """lfft: collect, clean, normalize, split; init, train, evaluate; or all at once (pipeline)."""


# --- data stages -----------------------------------------------------------------------------


@app.command()
def collect(
    inputs: Annotated[list[Path], typer.Argument(help="Log files or folders.")],
    out: OutFile,
    format: Annotated[
        str | None, typer.Option("--format", "-f", help="auto|events|trl|hh-rlhf|oasst|...")
    ] = None,
    map: Annotated[
        str | None,
        typer.Option("--map", help="CSV/Parquet column map: prompt=question,response=answer"),
    ] = None,
    no_implicit: Annotated[
        bool, typer.Option("--no-implicit", help="Do not infer implicit feedback.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Parallel processes (0 = auto: one per core, big inputs).")
    ] = None,
    implicit_rules: Annotated[
        Path | None, typer.Option(help="TOML file overriding the implicit-feedback rules.")
    ] = None,
    memory_budget: Annotated[
        float | None, typer.Option(help="MB of parsed records held in memory before spilling.")
    ] = None,
    config: ConfigOpt = None,
    quiet: Quiet = False,
) -> None:
    """Raw logs -> interactions.parquet (+ interactions.rejects.parquet)."""
    from lfft.config import stage_config
    from lfft.data.collect import collect as run
    from lfft.data.collect import parse_column_map, skip_pandas_probe

    skip_pandas_probe()  # 0.2 s of start-up: see its docstring
    cfg = stage_config(
        "collect",
        config,
        format=format,
        column_map=parse_column_map(map) if map else None,
        implicit=False if no_implicit else None,
        implicit_rules=str(implicit_rules) if implicit_rules else None,
        workers=workers,
        memory_budget=memory_budget,
    )
    _show(run(inputs, out, cfg), quiet)


@app.command()
def clean(
    input: Annotated[Path, typer.Argument(help="interactions.parquet")],
    out: OutFile,
    max_chars: Annotated[int | None, typer.Option(help="Drop longer interactions.")] = None,
    no_scrub: Annotated[bool, typer.Option("--no-scrub", help="Keep personal data.")] = False,
    merge_across_sessions: Annotated[
        bool, typer.Option(help="Merge the same prompt+response across sessions.")
    ] = False,
    workers: Annotated[
        int | None, typer.Option(help="Parallel processes (0 = auto: one per core, big inputs).")
    ] = None,
    config: ConfigOpt = None,
    quiet: Quiet = False,
) -> None:
    """interactions.parquet -> clean.parquet: drop bad rows, fix text, merge, scrub PII."""
    from lfft.config import stage_config
    from lfft.data.clean import clean as run

    cfg = stage_config(
        "clean",
        config,
        max_chars=max_chars,
        scrub_pii=False if no_scrub else None,
        merge_across_sessions=True if merge_across_sessions else None,
        workers=workers,
    )
    _show(run(input, out, cfg), quiet)


@app.command()
def normalize(
    input: Annotated[Path, typer.Argument(help="clean.parquet")],
    out: OutFile,
    conflict: Annotated[
        str | None, typer.Option(help="Within a tier: latest (newest event wins) | mean")
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="label = 1 when score >= threshold (0.5)")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Parallel processes (0 = auto: one per core, big inputs).")
    ] = None,
    config: ConfigOpt = None,
    quiet: Quiet = False,
) -> None:
    """clean.parquet -> feedback.parquet: every feedback kind onto score/label/weight/spans."""
    from lfft.config import stage_config
    from lfft.data.normalize import normalize as run

    cfg = stage_config(
        "normalize", config, conflict=conflict, positive_threshold=threshold, workers=workers
    )
    _show(run(input, out, cfg), quiet)


@app.command()
def split(
    input: Annotated[Path, typer.Argument(help="feedback.parquet")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    key: Annotated[str | None, typer.Option(help="session_id|user_id|group_id")] = None,
    ratios: Annotated[str | None, typer.Option(help="train,val,test e.g. 0.8,0.1,0.1")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    unlabeled: Annotated[str | None, typer.Option(help="keep|drop rows without signal")] = None,
    config: ConfigOpt = None,
    quiet: Quiet = False,
) -> None:
    """feedback.parquet -> DIR/train.parquet, val.parquet, test.parquet (no key in two splits)."""
    from lfft.config import stage_config
    from lfft.data.split import parse_ratios
    from lfft.data.split import split as run

    cfg = stage_config(
        "split",
        config,
        key=key,
        ratios=parse_ratios(ratios) if ratios else None,
        seed=seed,
        unlabeled=unlabeled,
    )
    _show(run(input, out, cfg), quiet)


@app.command()
def synth(
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder of .jsonl logs.")],
    sessions: Annotated[int | None, typer.Option(help="Number of sessions.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    files: Annotated[int | None, typer.Option(help="Number of files.")] = None,
    fault_rate: Annotated[float | None, typer.Option(help="Share of faulty lines.")] = None,
    compress: Annotated[str | None, typer.Option(help="none|gzip|zstd")] = None,
    config: ConfigOpt = None,
    quiet: Quiet = False,
) -> None:
    """Write realistic synthetic lfft-events logs (every event kind, some faulty lines)."""
    from lfft.config import stage_config
    from lfft.data.synth import synth as run

    cfg = stage_config(
        "synth",
        config,
        sessions=sessions,
        seed=seed,
        files=files,
        fault_rate=fault_rate,
        compress=compress,
    )
    _show(run(out, cfg), quiet)


@app.command()
def inspect(
    artifact: Annotated[Path, typer.Argument(help="Any lfft Parquet artifact (file or folder).")],
    rows: Annotated[int, typer.Option(help="Rows to show.")] = 5,
) -> None:
    """Show an artifact's schema, metadata, counts, label balance and a few rows."""
    from lfft.data.inspect import inspect as run

    run(artifact, rows=rows)


@app.command()
def export(
    artifact: Annotated[Path, typer.Argument(help="feedback/split artifact")],
    format: Annotated[str, typer.Option("--format", "-f", help="trl-kto|trl-dpo|trl-sft|jsonl")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .jsonl file.")],
    quiet: Quiet = False,
) -> None:
    """Write an artifact in the format TRL's trainers (or plain JSONL readers) load."""
    from lfft.data.export import export as run

    _show(run(artifact, format, out), quiet)


# --- model stages ----------------------------------------------------------------------------


@app.command()
def init(
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint folder to write.")],
    base: Annotated[
        str | None, typer.Option(help="tiny | LOCAL_PATH | model.gguf | HUB_ID")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Train split (tokenizer for tiny).")] = None,
    preset: Annotated[str | None, typer.Option(help="tiny|small|125m (tiny base)")] = None,
    layers: Annotated[int | None, typer.Option()] = None,
    hidden: Annotated[int | None, typer.Option()] = None,
    heads: Annotated[int | None, typer.Option()] = None,
    vocab_size: Annotated[int | None, typer.Option(help="BPE vocabulary (tiny base).")] = None,
    max_length: Annotated[int | None, typer.Option(help="Context length (tiny base).")] = None,
    gguf_file: Annotated[
        str | None, typer.Option(help="A .gguf file inside a --base folder or hub repo.")
    ] = None,
    trust_remote_code: Annotated[
        bool, typer.Option(help="Allow a hub model's own code (off by default).")
    ] = False,
    seed: Annotated[int | None, typer.Option()] = None,
    config: ConfigOpt = None,
    quiet: Quiet = False,
) -> None:
    """Make a starting checkpoint: a causal LM plus a fresh feedback head."""
    from lfft.config import stage_config
    from lfft.model.init import init as run

    cfg = stage_config(
        "init",
        config,
        base=base,
        data=str(data) if data else None,
        preset=preset,
        layers=layers,
        hidden=hidden,
        heads=heads,
        vocab_size=vocab_size,
        max_length=max_length,
        gguf_file=gguf_file,
        trust_remote_code=True if trust_remote_code else None,
        seed=seed,
    )
    _show(run(out, cfg), quiet)


@app.command()
def train(
    model: Annotated[Path, typer.Option("--model", "-m", help="Checkpoint to start from.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Splits folder (train/val).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint folder to write.")],
    objective: Annotated[
        str | None, typer.Option(help="sft|filtered|weighted|unlikelihood|kto|dpo")
    ] = None,
    feedback_loss: Annotated[str | None, typer.Option(help="auto|bce|mse|token|none")] = None,
    lambda_: Annotated[float | None, typer.Option("--lambda", help="Weight of L_F.")] = None,
    max_steps: Annotated[int | None, typer.Option()] = None,
    epochs: Annotated[float | None, typer.Option()] = None,
    lr: Annotated[float | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option()] = None,
    batch_tokens: Annotated[int | None, typer.Option(help="Padded tokens per batch.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Micro-batches per step.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Truncate sequences.")] = None,
    warmup_steps: Annotated[int | None, typer.Option()] = None,
    beta: Annotated[float | None, typer.Option(help="KTO/DPO temperature.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto|fp32|bf16|fp16")] = None,
    device: Annotated[str | None, typer.Option(help="auto|cpu|cuda")] = None,
    eval_every: Annotated[int | None, typer.Option(help="Validate every N steps.")] = None,
    patience: Annotated[int | None, typer.Option(help="Early stopping (0 = off).")] = None,
    save_every: Annotated[int | None, typer.Option(help="Step checkpoint every N.")] = None,
    keep_last: Annotated[int | None, typer.Option(help="Step checkpoints kept.")] = None,
    log_every: Annotated[int | None, typer.Option()] = None,
    grad_checkpointing: Annotated[
        bool, typer.Option("--grad-checkpointing", help="Recompute activations.")
    ] = False,
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    lora: Annotated[bool, typer.Option("--lora", help="Train LoRA adapters (peft).")] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue from the last checkpoint in --out.")
    ] = False,
    nproc: Annotated[
        int | None, typer.Option(help="Launch N processes with torchrun (DDP).")
    ] = None,
    fsdp: Annotated[bool, typer.Option(help="FSDP2 sharding under torchrun.")] = False,
    packing: Annotated[
        str | None, typer.Option(help="auto|on|off: padding-free packing (auto: on a GPU).")
    ] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    config: ConfigOpt = None,
    quiet: Quiet = False,
) -> None:
    """Train L = L_M + lambda * L_F from the splits; writes a transformers-loadable checkpoint."""
    from lfft.config import stage_config

    cfg = stage_config(
        "train",
        config,
        objective=objective,
        feedback_loss=feedback_loss,
        lambda_=lambda_,
        max_steps=max_steps,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        batch_tokens=batch_tokens,
        grad_accum=grad_accum,
        max_length=max_length,
        warmup_steps=warmup_steps,
        beta=beta,
        precision=precision,
        device=device,
        eval_every=eval_every,
        patience=patience,
        save_every=save_every,
        keep_last=keep_last,
        log_every=log_every,
        grad_checkpointing=True if grad_checkpointing else None,
        compile=True if compile else None,
        lora=True if lora else None,
        fsdp=True if fsdp else None,
        packing=packing,
        seed=seed,
    )
    if nproc and nproc > 1:
        from lfft.model.distributed import launch

        raise typer.Exit(launch(nproc, sys.argv[1:]))
    from lfft.model.train import train as run

    result = run(model, data, out, cfg, resume=resume)
    _show(result, quiet or os.environ.get("RANK", "0") != "0")  # torchrun: rank 0 reports


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", "-m", help="Checkpoint to evaluate.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Test split.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    baseline: Annotated[
        Path | None, typer.Option(help="Checkpoint to compare generations with.")
    ] = None,
    generate: Annotated[bool, typer.Option(help="Generate answers to the test prompts.")] = False,
    max_new_tokens: Annotated[int | None, typer.Option()] = None,
    best_of: Annotated[int | None, typer.Option(help="Rerank N samples by the head.")] = None,
    sample: Annotated[bool, typer.Option(help="Sample instead of greedy decoding.")] = False,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    max_rows: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="auto|cpu|cuda")] = None,
    config: ConfigOpt = None,
    quiet: Quiet = False,
) -> None:
    """Score a checkpoint: NLL, feedback-head quality, preferences, generations."""
    from lfft.config import stage_config
    from lfft.model.evaluate import evaluate as run

    cfg = stage_config(
        "evaluate",
        config,
        generate=True if generate else None,
        max_new_tokens=max_new_tokens,
        best_of=best_of,
        do_sample=True if sample else None,
        temperature=temperature,
        max_rows=max_rows,
        device=device,
    )
    _show(run(model, data, out, cfg, baseline=baseline), quiet)


# --- orchestration ---------------------------------------------------------------------------


@app.command()
def pipeline(
    inputs: Annotated[list[Path], typer.Argument(help="Raw log files or folders.")],
    work: Annotated[Path, typer.Option("--work", "-w", help="Work folder for every artifact.")],
    from_stage: Annotated[str | None, typer.Option("--from", help="First stage to run.")] = None,
    until_stage: Annotated[str | None, typer.Option("--until", help="Last stage to run.")] = None,
    force: Annotated[bool, typer.Option(help="Rerun stages even when up to date.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Run collect -> clean -> normalize -> split -> init -> train -> evaluate in one folder."""
    from lfft.config import stage_config
    from lfft.pipeline import run_pipeline

    cfg = stage_config(
        "pipeline",
        config,
        from_stage=from_stage,
        until_stage=until_stage,
        force=True if force else None,
    )
    run_pipeline(inputs, work, cfg, config_path=config)


@app.command()
def online(
    work: Annotated[Path, typer.Option("--work", "-w", help="Work folder (state, versions).")],
    logs: Annotated[
        Path | None, typer.Option("--logs", help="Folder new log files arrive in.")
    ] = None,
    once: Annotated[bool, typer.Option(help="Run one round and exit.")] = False,
    interval: Annotated[float | None, typer.Option(help="Seconds between rounds.")] = None,
    rollback: Annotated[
        str | None, typer.Option(help="Point WORK/current at an earlier version, e.g. v0003.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Keep learning: consume new logs exactly once, train, gate, promote."""
    from lfft.config import stage_config
    from lfft.online import rollback as run_rollback
    from lfft.online import run_online

    if rollback is not None:
        run_rollback(work, rollback)
        typer.echo(f"{work}/current -> versions/{rollback}")
        return
    if logs is None:
        raise LfftError("--logs is required: the folder new log files arrive in")
    cfg = stage_config("online", config, interval=interval)
    run_online(logs, work, cfg, once=once, config_path=config)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit 1."""
    try:
        app()
    except LfftError as e:
        if os.environ.get("LFFT_DEBUG"):
            raise
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        if os.environ.get("LFFT_DEBUG"):
            raise
        typer.echo(f"error: {e.strerror or e}: {e.filename}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
