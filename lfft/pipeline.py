"""``lfft pipeline``: collect -> clean -> normalize -> split -> init -> train -> evaluate.

    lfft pipeline data/samples/events --work work/demo --config data/samples/lfft.toml

Every stage writes into one work folder (:class:`lfft.stages.Layout`). When a stage finishes,
a completion record ``WORK/.lfft/<stage>.json`` stores its config, the fingerprints of its inputs
and of its outputs (an artifact's fingerprint is the one in its ``lfft`` metadata, a checkpoint's
the one in its ``lfft.json``) and its summary. A stage is skipped when that record matches the
current config and inputs and its outputs still carry the recorded fingerprints; so a rerun with
nothing changed only reads metadata, and a rerun after a kill starts at the first stage without
a record. Training writes ``WORK/.lfft/train.started.json`` before it starts: a rerun with the
same config and inputs passes ``resume=True``, so it continues from its last step checkpoint.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lfft.config import STAGE_CONFIGS, PipelineConfig, as_dict, build, load_toml
from lfft.errors import LfftError
from lfft.io import fingerprint, read_meta, write_json_atomic
from lfft.model.checkpoint import INFO_FILE
from lfft.report import StageResult
from lfft.stages import STAGES, Layout, Stage, can_resume

WORK_PREFIX = "$WORK/"


def run_pipeline(
    inputs: Sequence[str | Path],
    work: str | Path,
    cfg: PipelineConfig | None = None,
    config_path: str | Path | None = None,
    *,
    stages: Sequence[Stage] | None = None,
    console: Any = None,
) -> list[StageResult]:
    """Run the stages in order into ``work``; return one result per stage run or skipped.

    ``stages`` replaces the stage table (tests use fake stages); ``console`` is a rich Console.
    Prints one line per stage and a final summary table.
    """
    from rich.console import Console

    cfg = cfg or PipelineConfig()
    console = console or Console()
    stages = list(STAGES if stages is None else stages)
    layout = Layout(Path(work))
    tables = load_toml(config_path)
    raw = [Path(p) for p in inputs]
    selected = select_stages(stages, cfg.from_stage, cfg.until_stage)
    layout.root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = []
    for stage in selected:
        stage_cfg = stage.configure(
            build(STAGE_CONFIGS[stage.table], tables.get(stage.table)), layout
        )
        results.append(run_stage(stage, layout, raw, stage_cfg, force=cfg.force, console=console))
    outputs = [s.outputs(layout)[0] for s in selected]
    print_pipeline_summary(results, outputs, time.perf_counter() - started, console, layout.root)
    return results


def select_stages(
    stages: Sequence[Stage], from_stage: str | None, until_stage: str | None
) -> list[Stage]:
    """The stages from ``from_stage`` to ``until_stage`` (inclusive), in table order."""
    names = [s.name for s in stages]
    for value, flag in ((from_stage, "--from"), (until_stage, "--until")):
        if value is not None and value not in names:
            raise LfftError(f"{flag} {value!r}: unknown stage; stages are {', '.join(names)}")
    first = names.index(from_stage) if from_stage else 0
    last = names.index(until_stage) if until_stage else len(names) - 1
    if first > last:
        raise LfftError(f"--from {from_stage} comes after --until {until_stage}")
    return list(stages[first : last + 1])


def run_stage(
    stage: Stage,
    layout: Layout,
    raw: list[Path],
    cfg: Any,
    force: bool = False,
    console: Any = None,
) -> StageResult:
    """Run one stage unless it is up to date; write its completion record."""
    inputs = stage.inputs(layout, raw)
    for path in inputs:
        if path in raw and not path.exists():
            raise LfftError(f"{path}: no such file or folder")
        if not path.exists():
            raise LfftError(
                f"{stage.name}: input {path} is missing; run the stages before it first"
            )
    expected = {"config": _portable(as_dict(cfg), layout), "inputs": _fingerprints(inputs, layout)}
    record_path = layout.completion_records / f"{stage.name}.json"
    if not force:
        done = up_to_date(stage, layout, expected)
        if done is not None:
            _say(console, f"[dim]· {stage.name:<9} skipped (up to date)[/]")
            return done
    record_path.unlink(missing_ok=True)
    resume = _prepare_resume(stage, layout, expected, force)
    _say(console, f"[bold]▶ {stage.name}[/]" + (" (resuming)" if resume else ""))
    t0 = time.perf_counter()
    try:
        result = stage.run(layout, raw, cfg, resume)
    except LfftError as e:
        raise LfftError(f"{stage.name}: {e}") from e
    result.seconds = result.seconds or time.perf_counter() - t0
    outputs = stage.outputs(layout)
    result.outputs = result.outputs or {"out": outputs[0]}
    if resume:
        result.extra["resumed"] = True
    _write_record(stage, layout, expected, result)
    (layout.completion_records / f"{stage.name}.started.json").unlink(missing_ok=True)
    _say(console, f"[green]✓ {stage.name:<9}[/] {_short(result)}")
    return result


def up_to_date(stage: Stage, layout: Layout, expected: dict[str, Any]) -> StageResult | None:
    """The stage's last result (marked skipped) if its outputs are current, else None."""
    outputs = stage.outputs(layout)
    if not outputs[0].exists():
        return None
    record = _read_json(layout.completion_records / f"{stage.name}.json")
    if record is not None:
        same = record.get("config") == expected["config"]
        same = same and record.get("inputs") == expected["inputs"]
        if not same or record.get("outputs") != _fingerprints(outputs, layout):
            return None
        result = _result_from_dict(record["result"])
    else:
        result = _from_artifact_metadata(stage, layout, expected)
        if result is None:
            return None
        _write_record(stage, layout, expected, result)
    result.skipped = True
    result.seconds = 0.0
    return result


def _write_record(
    stage: Stage, layout: Layout, expected: dict[str, Any], result: StageResult
) -> None:
    """The completion record: config, input and output fingerprints, summary (atomic)."""
    record = {
        **expected,
        "stage": stage.name,
        "outputs": _fingerprints(stage.outputs(layout), layout),
        "result": result.to_dict(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(layout.completion_records / f"{stage.name}.json", record)


def _from_artifact_metadata(
    stage: Stage, layout: Layout, expected: dict[str, Any]
) -> StageResult | None:
    """No completion record (the stage was run by hand, e.g. ``make collect``): trust what its
    output says produced it when the config and input fingerprints match: the ``lfft`` metadata
    of a Parquet output (for a folder, of every part that names its inputs), or a checkpoint's
    ``lfft.json`` (which must say ``complete`` if it has that key)."""
    metas = _producer_metadata(stage.outputs(layout)[0])
    if not metas:
        return None
    for meta in metas:
        if _portable(meta.get("config") or {}, layout) != expected["config"]:
            return None
        if sorted(meta["inputs"].values()) != sorted(expected["inputs"].values()):
            return None
    rows = sum(m.get("counts", {}).get("rows", 0) for m in metas)
    return StageResult(stage.name, rows_out=rows)


def _producer_metadata(output: Path) -> list[dict[str, Any]]:
    files = sorted(output.glob("*.parquet")) if output.is_dir() else [output]
    try:
        metas = [read_meta(f) for f in files if f.suffix == ".parquet"]
    except LfftError:
        return []
    info = _read_json(output / INFO_FILE) if output.is_dir() else None
    if info is not None:
        if not info.get("complete", True):
            return []
        metas.append(info)
    return [m for m in metas if m.get("inputs")]


def _prepare_resume(stage: Stage, layout: Layout, expected: dict[str, Any], force: bool) -> bool:
    """For a resumable stage: resume when the interrupted run had the same config and inputs;
    otherwise remove its stale partial output and note that a run has started."""
    if not stage.resumable:
        return False
    started_path = layout.completion_records / f"{stage.name}.started.json"
    started = _read_json(started_path)
    out = stage.outputs(layout)[0]
    if not force and started == expected and can_resume(out):
        return True
    if out.is_dir():
        shutil.rmtree(out)
    write_json_atomic(started_path, expected)
    return False


# --- helpers --------------------------------------------------------------------------------


def _fingerprints(paths: list[Path], layout: Layout) -> dict[str, str | None]:
    """Fingerprints by work-relative path; ``None`` for a path that does not exist (a stage
    may legitimately not write a secondary output)."""
    return {_key(p, layout): fingerprint(p) if p.exists() else None for p in paths}


def _key(path: Path, layout: Layout) -> str:
    try:
        return WORK_PREFIX + str(path.resolve().relative_to(layout.root.resolve()))
    except ValueError:
        return str(path)


def _portable(config: dict[str, Any], layout: Layout) -> dict[str, Any]:
    """The config as plain JSON, with paths inside the work folder written as ``$WORK/...``
    (so moving the work folder does not make every stage stale)."""
    root = str(layout.root.resolve()) + "/"
    plain = json.loads(json.dumps(config, sort_keys=True, default=str))
    for key, value in plain.items():
        if isinstance(value, str) and "/" in value and str(Path(value).resolve()).startswith(root):
            plain[key] = _key(Path(value), layout)
    return plain


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _result_from_dict(data: dict[str, Any]) -> StageResult:
    return StageResult(
        stage=data["stage"],
        rows_in=data.get("rows_in", 0),
        rows_out=data.get("rows_out", 0),
        rejects=Counter(data.get("rejects", {})),
        seconds=data.get("seconds", 0.0),
        outputs={k: Path(v) for k, v in data.get("outputs", {}).items()},
        extra=data.get("extra", {}),
    )


def _say(console: Any, text: str) -> None:
    if console is not None:
        console.print(text)


def _short(result: StageResult) -> str:
    parts = [f"{result.rows_in:,} in → {result.rows_out:,} out"]
    if result.rejects:
        parts.append(f"{sum(result.rejects.values()):,} rejected")
    parts.append(f"{result.seconds:.1f} s")
    return ", ".join(parts)


# --- the final table --------------------------------------------------------------------------

_KEY_WORDS = ("loss", "auc", "acc", "perplexity", "brier", "ece", "mse", "f1", "win", "tok")
_TEXT_KEYS = _KEY_WORDS + ("head", "generation")
_COUNT_KEYS = ("steps", "pairs")
_SPLITS = ("train", "val", "test")


def key_numbers(extra: dict[str, Any], limit: int = 5) -> dict[str, float | int]:
    """A few key numbers of a stage from its ``extra``: losses, metrics, steps, and split sizes
    (``train.rows`` ...); nested dicts are flattened one level as ``outer.inner``."""
    flat: dict[str, Any] = {}
    for key, value in extra.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    found: dict[str, float | int] = {}
    for key, value in flat.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        outer, _, last = key.lower().rpartition(".")
        if (
            isinstance(value, int)
            and (last in _COUNT_KEYS or (outer in _SPLITS and last == "rows"))
            or isinstance(value, float)
            and any(w in last for w in _KEY_WORDS)
        ):
            found[key] = value
    return dict(list(found.items())[:limit])


def highlights(extra: dict[str, Any], limit: int = 5) -> list[str]:
    """Short lines for the summary table: :func:`key_numbers`, plus the metric lines a stage
    reports as text (evaluate: ``perplexity (+ / -)``, ``head binary`` ...)."""
    lines = [
        f"{k.removesuffix('.rows')} {v:,}" if isinstance(v, int) else f"{k} {v:.4g}"
        for k, v in key_numbers(extra, limit).items()
    ]
    for key, value in extra.items():
        if isinstance(value, str) and any(w in key.lower() for w in _TEXT_KEYS):
            lines.append(f"{key}: {value}")
    return lines[:limit]


def print_pipeline_summary(
    results: list[StageResult],
    outputs: list[Path],
    seconds: float,
    console: Any,
    work: Path | None = None,
) -> None:
    """One table: rows and rejects per stage, time, output path and key numbers (losses,
    metrics); then the reject reasons of every stage that dropped rows."""
    from rich.table import Table

    title = "lfft pipeline" + (f" → {work}" if work is not None else "")
    table = Table(title=title, title_justify="left")
    table.add_column("stage", no_wrap=True)
    for name in ("rows in", "rows out", "rejects"):
        table.add_column(name, justify="right")
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("output", overflow="fold", ratio=1)
    table.add_column("key numbers", ratio=2)
    for r, out in zip(results, outputs, strict=True):
        if r.skipped:
            when = "skipped"
        else:
            when = ("resumed " if r.extra.get("resumed") else "") + f"{r.seconds:.1f} s"
        table.add_row(
            r.stage,
            f"{r.rows_in:,}",
            f"{r.rows_out:,}",
            f"{sum(r.rejects.values()):,}",
            when,
            _relative(out, work),
            "\n".join(highlights(r.extra)),
        )
    table.add_section()
    table.add_row("total", "", "", "", f"{seconds:.1f} s", "", "")
    console.print(table)
    for r in results:
        if r.rejects:
            reasons = ", ".join(f"{k} {n:,}" for k, n in r.rejects.most_common())
            console.print(f"rejects in {r.stage}: {reasons}")


def _relative(path: Path, work: Path | None) -> str:
    if work is not None:
        try:
            return str(path.resolve().relative_to(work.resolve()))
        except ValueError:
            pass
    return str(path)
