"""``lfft online``: keep learning as new logs arrive.

    lfft online --logs incoming/ --work work/online --config lfft.toml [--once]

One round: consume the complete lines that arrived since the last round (``online_state``),
bring the data artifacts up to date (``online_data``: only the sessions the new lines touch are
recomputed, into parts of whole sessions, ``online_parts``), train a candidate from ``current`` on
the rows it has not learned from plus a replay sample of rows it has, score candidate and
``current`` on a gate set frozen at the first round that had test rows, promote the candidate if
it is not worse beyond a tolerance, and append one record to ``history.jsonl``.

Work folder (the pipeline's ``interactions.parquet`` ... ``splits/``, as folders of parts)::

    state.json            files, offsets, last consumed / completed round (the commit point)
    consumed/rNNNN.jsonl  the raw lines consumed in round N (one file a round; optional)
    state/                the parts' raw lines, train-row digests, session index, manifest
    gate.parquet          the frozen gate set
    rounds/rNNNN/         one round's work: steps/*.json markers, seen.parquet, evals
    versions/v0000/       the initial checkpoint; vNNNN = the candidate trained in round N
    current -> versions/vNNNN   symlink, replaced atomically (never a partial checkpoint)
    history.jsonl         one record per round

Kill safety: every step writes its outputs atomically, then a marker ``rounds/rNNNN/steps/
<step>.json``; a restarted round skips marked steps and reruns the rest, each of which is
idempotent (the data update commits with one manifest rename; training resumes from its last
step checkpoint). A session's rows depend on its own lines only, so recomputing the touched
sessions gives what one batch run over the whole consumed log gives: feedback waits until its
message arrives, and late feedback updates its interaction (see docs/online.md).
"""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from lfft import online_data, online_rows, stages
from lfft.config import STAGE_CONFIGS, OnlineConfig, as_dict, build, load_toml
from lfft.errors import ConfigError, LfftError
from lfft.io import (
    count_rows,
    fingerprints,
    read_meta,
    read_table,
    write_json_atomic,
    write_table,
)
from lfft.model.checkpoint import CHECKPOINTS
from lfft.online_state import consume, load_state, lock, save_state
from lfft.online_versions import (  # noqa: F401  (re-exported: lfft.online.X for users)
    INIT_VERSION,
    OnlineLayout,
    _append_history,
    gate_failures,
    gate_metrics,
    prune_versions,
    read_current,
    read_history,
    read_seen,
    row_digests,
    set_current,
    write_seen,
)
from lfft.pipeline import key_numbers
from lfft.report import print_round
from lfft.schemas import SPLIT, make_metadata


@dataclass
class Round:
    """One round in progress: its number, folders, configs and the steps' results."""

    n: int
    work: OnlineLayout
    cfg: OnlineConfig
    stage_cfgs: dict[str, Any]
    console: Any = None
    info: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.work.round_dir(self.n)

    @property
    def version(self) -> str:
        return f"v{self.n:04d}"

    def marker(self, step: str) -> Path:
        return self.dir / "steps" / f"{step}.json"

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text)


# --- entry points -----------------------------------------------------------------------------


def run_online(
    logs: str | Path,
    work: str | Path,
    cfg: OnlineConfig | None = None,
    *,
    once: bool = False,
    config_path: str | Path | None = None,
    console: Any = None,
    max_rounds: int | None = None,
) -> list[dict[str, Any]]:
    """Run rounds: with ``once`` a single one (finishing an interrupted round counts as one),
    else forever, ``cfg.interval`` seconds apart. Returns the history records written."""
    from rich.console import Console

    cfg = cfg or OnlineConfig()
    console = console or Console()
    layout = OnlineLayout(Path(work))
    stage_cfgs = online_stage_configs(layout, cfg, config_path)
    if not cfg.keep_consumed and not online_data.incremental(cfg, stage_cfgs):
        raise ConfigError(
            "online: keep_consumed = false needs incremental rounds (full rounds reread "
            "consumed/; clean's merge_across_sessions also turns incremental off)"
        )
    records = []
    with lock(layout.root):
        while True:
            record = run_round(Path(logs), layout, cfg, stage_cfgs, console)
            if record is not None:
                records.append(record)
                print_round(record, console)
            elif once:
                console.print(f"lfft online: nothing new in {logs}")
            if once or (max_rounds is not None and len(records) >= max_rounds):
                return records
            time.sleep(cfg.interval)


def online_stage_configs(
    layout: OnlineLayout, cfg: OnlineConfig, config_path: str | Path | None
) -> dict[str, Any]:
    """Each stage's config from the TOML tables, with what online owns filled in."""
    tables = load_toml(config_path)
    out = {name: build(STAGE_CONFIGS[name], tables.get(name)) for name in stages.STAGE_NAMES}
    if out["collect"].format == "auto":  # the logs folder holds lfft-events
        out["collect"] = dataclasses.replace(out["collect"], format="events")
    out["init"] = dataclasses.replace(out["init"], data=str(layout.train))
    out["train"] = dataclasses.replace(out["train"], max_steps=cfg.max_steps)
    out["evaluate"] = dataclasses.replace(
        out["evaluate"], generate=False, max_rows=cfg.gate_max_rows
    )
    return out


def run_round(
    logs: Path,
    layout: OnlineLayout,
    cfg: OnlineConfig,
    stage_cfgs: dict[str, Any],
    console: Any = None,
) -> dict[str, Any] | None:
    """Finish an interrupted round, or consume new lines and run a round on them.

    Returns the round's history record, or None when nothing new arrived."""
    state = load_state(layout.state)
    if state.round == state.completed:
        if not consume_round(logs, layout, state.round + 1):
            return None
        state = load_state(layout.state)
    rd = Round(state.round, layout, cfg, stage_cfgs, console)
    rd.say(f"[bold]round {rd.n}[/]")
    for name, step in STEPS:
        marker = rd.marker(name)
        if marker.exists():
            rd.info[name] = json.loads(marker.read_text(encoding="utf-8"))
            continue
        rd.info[name] = step(rd) or {}
        write_json_atomic(marker, rd.info[name])
    return rd.info["finish"]["record"]


def consume_round(logs: Path, layout: OnlineLayout, n: int) -> bool:
    """Copy the new complete lines into ``consumed/rNNNN.jsonl`` and commit the offsets.

    Returns False (and writes nothing) when no new line arrived."""
    for stale in layout.consumed.glob("*") if layout.consumed.exists() else []:
        if stale.name.startswith(".") or _round_of(stale) >= n:
            stale.unlink()  # a part or temporary file from a round that never committed
    state = load_state(layout.state)
    part = layout.part(n)
    found = consume(logs, state.files, part)
    if not found.total_lines:
        part.unlink(missing_ok=True)
        state.files = found.files  # renames/rotations seen, nothing to consume
        save_state(layout.state, state)
        return False
    info = {"lines": found.total_lines, "bytes": found.bytes, "files": found.lines}
    if found.waiting:
        info["waiting"] = found.waiting
    write_json_atomic(layout.round_dir(n) / "consumed.json", info)
    state.files = found.files
    state.round = n
    save_state(layout.state, state)  # the commit point
    return True


def rollback(work: str | Path, version: str) -> None:
    """Point ``current`` at an earlier version (atomically) and note it in the history."""
    layout = OnlineLayout(Path(work))
    if not (layout.versions / version).is_dir():
        known = ", ".join(sorted(p.name for p in layout.versions.glob("v*"))) or "none"
        raise LfftError(f"{layout.versions / version}: no such version; known: {known}")
    with lock(layout.root):
        previous = read_current(layout)
        set_current(layout, version)
        _append_history(
            layout,
            {"event": "rollback", "from": previous, "current": version, "ts": _now()},
        )


# --- the steps of a round ------------------------------------------------------------------


def step_data(rd: Round) -> dict[str, Any]:
    """Bring the data artifacts up to this round: incrementally (only the sessions new lines
    touch, :mod:`lfft.online_data`), or by rerunning the four stages over the consumed log."""
    try:
        if online_data.incremental(rd.cfg, rd.stage_cfgs):
            info = online_data.update(rd.work, rd.n, rd.stage_cfgs, rd.cfg.part_mb)
            if not rd.cfg.keep_consumed:
                for rnd in range(1, rd.n + 1):
                    rd.work.part(rnd).unlink(missing_ok=True)  # the parts hold every line
        else:
            info = online_data.full_rebuild(rd.work, rd.stage_cfgs)
    except LfftError as e:
        raise LfftError(f"round {rd.n}, data: {e}") from e
    for name in ("collect", "clean", "normalize", "split"):
        rd.say(f"  ✓ {name:<9} {info[name]['rows_in']:,} in → {info[name]['rows_out']:,} out")
    if "update" in info:
        u = info["update"]
        rd.say(
            f"  ✓ update    {u['sessions_touched']:,} sessions touched, "
            f"{u['parts_rewritten']} parts rewritten, {u['seconds']:.2f} s"
        )
    return info


def step_gate(rd: Round) -> dict[str, Any]:
    """Freeze the gate set: the test split of the first round that has test rows; with
    ``gate_refresh`` N, again every N rounds from the newest test rows (live traffic), so the
    gate follows what users ask and like now."""
    gate, test = rd.work.gate, rd.work.test
    since = read_meta(gate).get("round", 0) if gate.exists() else None
    every = rd.cfg.gate_refresh
    refresh = since is not None and every > 0 and rd.n - since >= every
    if (since is None or refresh) and count_rows(test) > 0:
        rows = read_table(test, schema=SPLIT)
        if refresh:
            rows = online_rows.newest(rows, rd.cfg.gate_max_rows)
        meta = make_metadata("online-gate", inputs=fingerprints([test]), round=rd.n)
        write_table(gate, rows, SPLIT, meta)
        since = rd.n
        rd.say(f"  ✓ gate      {'refreshed' if refresh else 'frozen'}: {rows.num_rows:,} rows")
    return {"gate_rows": count_rows(gate) if gate.exists() else 0, "gate_round": since}


def step_base(rd: Round) -> dict[str, Any]:
    """Pin the model this round starts from: ``current``, or a fresh init (``v0000``)."""
    current = read_current(rd.work)
    if current is not None:
        return {"base": current}
    if count_rows(rd.work.train) == 0:
        return {"base": None}
    target = rd.work.versions / INIT_VERSION
    if not target.exists():
        tmp = rd.dir / "init"
        if tmp.exists():
            shutil.rmtree(tmp)
        stages.init(tmp, rd.stage_cfgs["init"])
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(target)
    set_current(rd.work, INIT_VERSION)
    rd.say(f"  ✓ init      {target}")
    return {"base": INIT_VERSION}


def step_select(rd: Round) -> dict[str, Any]:
    """Training rows of this round: train-split rows the base model has not learned from, plus
    ``replay_ratio`` times as many rows it has (a seeded sample); ``seen.parquet`` records what
    the candidate will have learned from."""
    base = rd.info["base"]["base"]
    if base is None:
        return {"train": False, "reason": "no training rows yet", "new": 0, "replay": 0}
    table, digests = online_rows.train_rows(rd.work)
    seen = read_seen(rd.work, base)
    is_new = [d not in seen for d in digests]
    new_idx = [i for i, flag in enumerate(is_new) if flag]
    old_idx = [i for i, flag in enumerate(is_new) if not flag]
    info: dict[str, Any] = {"new": len(new_idx), "replay": 0, "train_rows": table.num_rows}
    if len(new_idx) < max(rd.cfg.min_new_rows, 1):
        return {**info, "train": False, "reason": f"{len(new_idx)} new rows"}
    k = min(len(old_idx), round(rd.cfg.replay_ratio * len(new_idx)))
    replay = sorted(random.Random(f"{rd.cfg.seed}:{rd.n}").sample(old_idx, k))
    picked = table.take(pa.array(sorted(new_idx + replay), pa.int64()))
    meta = make_metadata(
        "online-select",
        config=as_dict(rd.cfg),
        inputs=fingerprints([rd.work.train]),
        counts={"rows": picked.num_rows, "new": len(new_idx), "replay": k},
        round=rd.n,
    )
    write_table(rd.dir / "data" / "train.parquet", picked, SPLIT, meta)
    val = online_rows.capped(read_table(rd.work.val, schema=SPLIT), rd.cfg.val_max_rows)
    write_table(rd.dir / "data" / "val.parquet", val, SPLIT, make_metadata("online-val"))
    write_seen(rd.dir / "seen.parquet", seen | {digests[i] for i in new_idx})
    rd.say(f"  ✓ select    {len(new_idx):,} new + {k:,} replayed rows")
    return {**info, "replay": k, "train": True}


def step_train(rd: Round) -> dict[str, Any]:
    """Train the candidate from the base into ``versions/vNNNN`` (resuming if interrupted)."""
    if not rd.info["select"]["train"]:
        return {"trained": False}
    target = rd.work.versions / rd.version
    summary = rd.dir / "train.json"
    if not target.exists():
        out = rd.dir / "candidate"
        if not summary.exists():  # written once training finished: ``out`` is then complete
            base = rd.work.versions / rd.info["base"]["base"]
            resume = stages.can_resume(out)
            if out.exists() and not resume:
                shutil.rmtree(out)
            cfg = rd.stage_cfgs["train"]
            result = stages.train(base, rd.dir / "data", out, cfg, resume=resume)
            write_json_atomic(summary, key_numbers(result.extra, limit=6))
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)  # resume state, not the model
        out.rename(target)
    rd.say(f"  ✓ train     {target}")
    numbers = json.loads(summary.read_text(encoding="utf-8")) if summary.exists() else {}
    return {"trained": True, "version": rd.version, **numbers}


def step_evaluate(rd: Round) -> dict[str, Any]:
    """Score the candidate and the base on the gate set; decide whether the candidate passes."""
    if not rd.info["train"]["trained"]:
        return {"passed": False}
    if not rd.work.gate.exists():
        return {"passed": True, "reason": "no gate set yet"}
    scores = {}
    for who, version in (("candidate", rd.version), ("base", rd.info["base"]["base"])):
        out = rd.dir / f"eval_{who}"
        cfg = rd.stage_cfgs["evaluate"]
        stages.evaluate(rd.work.versions / version, rd.work.gate, out, cfg)
        scores[who] = gate_metrics(out / "predictions.parquet")
    failed = gate_failures(scores["candidate"], scores["base"], rd.cfg)
    rd.say(f"  ✓ evaluate  {'passed' if not failed else 'failed: ' + ', '.join(failed)}")
    return {**scores, "passed": not failed, "failed": failed}


def step_promote(rd: Round) -> dict[str, Any]:
    """Point ``current`` at the candidate if it passed; prune old versions."""
    promoted = rd.info["evaluate"]["passed"]
    if promoted:
        set_current(rd.work, rd.version)
    prune_versions(rd.work, rd.cfg.keep_versions)
    return {"promoted": promoted, "current": read_current(rd.work)}


def step_finish(rd: Round) -> dict[str, Any]:
    """Append the round's history record, drop its scratch data, mark the round complete."""
    consumed = json.loads((rd.dir / "consumed.json").read_text(encoding="utf-8"))
    info = rd.info
    data = info["data"]
    record = {
        "round": rd.n,
        "ts": _now(),
        "consumed": consumed,
        "interactions": data["collect"]["rows_out"],
        "rejects": {k: data[k]["rejects"] for k in ("collect", "clean", "normalize", "split")},
        "gate_rows": info["gate"]["gate_rows"],
        "gate_round": info["gate"].get("gate_round"),
        "base": info["base"]["base"],
        "new_rows": info["select"]["new"],
        "replay_rows": info["select"]["replay"],
        "trained": info["train"]["trained"],
        "version": info["train"].get("version"),
        "train": {k: v for k, v in info["train"].items() if k not in ("trained", "version")},
        "gate": {k: info["evaluate"].get(k) for k in ("candidate", "base", "failed", "reason")},
        "promoted": info["promote"]["promoted"],
        "current": info["promote"]["current"],
    }
    if "update" in data:
        record["update"] = data["update"]
    if not info["select"]["train"]:
        record["reason"] = info["select"]["reason"]
    _append_history(rd.work, record)
    shutil.rmtree(rd.dir / "data", ignore_errors=True)
    state = load_state(rd.work.state)
    state.completed = rd.n
    save_state(rd.work.state, state)
    return {"record": record}


STEPS: list[tuple[str, Callable[[Round], dict[str, Any] | None]]] = [
    ("data", step_data),
    ("gate", step_gate),
    ("base", step_base),
    ("select", step_select),
    ("train", step_train),
    ("evaluate", step_evaluate),
    ("promote", step_promote),
    ("finish", step_finish),
]


# --- small helpers --------------------------------------------------------------------------


def _round_of(path: Path) -> int:
    try:
        return int(path.name.split(".")[0][1:])
    except ValueError:
        return 1 << 30


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
