"""The alternatives weighed for collect's parse and for the data stages' partition and spill
steps (a benchmark, not a test).

    .venv/bin/python bench/data_alternatives.py --logs /tmp/logs-100k   # lfft synth output
    .venv/bin/python bench/data_alternatives.py --logs /tmp/logs-100k --base /tmp/base9a

On the lines of real-looking logs (``lfft synth``), their events and the ``interactions``
collect makes of them, measures in this process (CPU seconds, best of ``--repeat``; peak memory
of Python objects):

1. decoding every line: ``json.loads``; the C scanner behind it, called directly; msgspec to
   dicts; msgspec to the wire structs of the format (``events.WireMessage``, ...); and whole
   parses into checked events: the json path (``events._parse_slow``: the C scanner, a dict,
   a wire struct built from it, the checks; collect's path before msgspec had no wire struct)
   and ``events.parse_line`` (msgspec, the json path only for lines the wire types do not
   describe); with ``--base`` also the ``parse_line`` of another checkout.
2. collect's partition round trip, the events of every line serialized, read back and grouped
   by session: msgspec msgpack of the event structs (what collect does), ``marshal`` of tuples
   (what it did before the events were typed), and Arrow: the events as columns in an Arrow
   table sorted by session, written to and read from IPC files, turned back into events per
   session (what "let Arrow group them" costs, since the join is Python).
3. clean's and normalize's hash partitions of rows: ``lfft.data.spill.HashPartitions`` against
   ``pyarrow.dataset.write_dataset`` partitioned on the same hash, each partition read back.

Prints Markdown tables for ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import marshal
import platform
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.ipc as ipc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lfft.data import events as ev  # noqa: E402
from lfft.data.partition import group  # noqa: E402
from lfft.data.readers import expand_inputs, iter_line_blocks  # noqa: E402
from lfft.data.spill import HashPartitions  # noqa: E402
from lfft.hashing import stable_hashes  # noqa: E402


def measure(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(best CPU seconds of ``repeat`` runs, peak MiB of Python objects in one more run: Arrow's
    own buffers are not traced)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return best, peak / 2**20


def parsers() -> list[tuple[str, Callable[[bytes], object]]]:
    scan = json.JSONDecoder().scan_once
    wire = msgspec.json.Decoder(ev.WireMessage | ev.WireFeedback | ev.WireAction).decode
    return [
        ("json.loads (the benchmarks' floor)", json.loads),
        ("json's C scanner, called directly", lambda line: scan(line.decode(), 0)),
        ("msgspec.json.decode to dicts", msgspec.json.Decoder().decode),
        ("msgspec to the wire structs", wire),
        (
            "events._parse_slow: json + the checks → event",
            lambda line: ev._parse_slow(line, 0, 1),
        ),
        ("events.parse_line: msgspec + checks → event", lambda line: ev.parse_line(line, 0, 1)),
    ]


def base_parser(tree: Path) -> tuple[str, Callable[[bytes], object], type[Exception]]:
    """``parse_line`` of another checkout's ``lfft/data/events.py`` (e.g. 9a79c6d, which parsed
    with the json scanner into tuples), loaded beside this tree's modules."""
    spec = importlib.util.spec_from_file_location("base_events", tree / "lfft/data/events.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return f"parse_line of {tree}", lambda line: module.parse_line(line, 0, 1), module.EventError


def each(fn: Callable[[bytes], object], lines: list[bytes], errors: tuple) -> None:
    """``fn`` of every line; a line it refuses (``errors``) is skipped, as a rejected line
    would be."""
    for line in lines:
        try:  # noqa: SIM105 (a with-block per line would weigh on the fastest decoders)
            fn(line)
        except errors:
            pass


def read_events(logs: Path) -> list[list[ev.Event]]:
    """Every usable line's event, in runs of one session, as collect's first pass makes them."""
    runs: list[list[ev.Event]] = []
    for fi, path in enumerate(expand_inputs([logs])):
        n = 0
        for block in iter_line_blocks(path):
            for line in block:
                n += 1
                try:
                    event = ev.parse_line(line, fi, n)
                except ev.EventError:
                    continue
                if runs and runs[-1][0].session_id == event.session_id:
                    runs[-1].append(event)
                else:
                    runs.append([event])
    return runs


def chunks(runs: list, size: int = 512) -> list[list]:
    return [runs[i : i + size] for i in range(0, len(runs), size)]


def msgpack_round_trip(buckets: list[list[list[ev.Event]]]) -> int:
    encode = msgspec.msgpack.Encoder().encode
    decode = msgspec.msgpack.Decoder(list[list[ev.Event]]).decode
    return len(group(decode(encode(b)) for b in buckets))


def marshal_round_trip(buckets: list[list[list[tuple]]]) -> int:
    sessions: dict[str, list[tuple]] = {}
    for bucket in map(marshal.loads, map(marshal.dumps, buckets)):
        for run in bucket:
            sessions.setdefault(run[0][1], []).extend(run)
    return len(sessions)


def arrow_round_trip(runs: list[list[ev.Event]], folder: Path) -> int:
    """The events as two Arrow tables (messages, feedback), sorted by session, through IPC
    files, back to events per session (messages first: a lower bound, read order is lost)."""
    sessions: dict[str, list[ev.Event]] = {}
    for kind in (ev.Message, ev.Feedback):
        fields = kind.__struct_fields__
        events = [e for run in runs for e in run if type(e) is kind]
        table = pa.table({f: [getattr(e, f) for e in events] for f in fields})
        table = table.sort_by("session_id")
        path = folder / f"{kind.__name__}.arrow"
        with ipc.new_file(path, table.schema) as writer:
            writer.write_table(table, max_chunksize=65_536)
        back = ipc.open_file(path).read_all()
        columns = [back.column(f).to_pylist() for f in fields]
        for values in zip(*columns, strict=True):
            sessions.setdefault(values[0], []).append(kind(*values))
    return len(sessions)


def hash_partitions(table: pa.Table, folder: Path, n: int) -> int:
    parts = HashPartitions(folder, table.schema, n, "_key", "p")
    for batch in table.to_batches(16_384):
        parts.write(pa.Table.from_batches([batch]))
    return sum(t.num_rows for t in parts.tables())


def arrow_dataset_partitions(table: pa.Table, folder: Path, n: int) -> int:
    part = pa.array(table.column("_key").to_numpy() % np.uint64(n))
    table = table.append_column("_part", part)
    out = folder / "ds"
    ds.write_dataset(
        table.to_batches(16_384),
        out,
        schema=table.schema,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("_part", pa.uint64())]), flavor="hive"),
        existing_data_behavior="overwrite_or_ignore",
    )
    rows = sum(ds.dataset(p, format="parquet").to_table().num_rows for p in sorted(out.iterdir()))
    shutil.rmtree(out)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, required=True, help="lfft-events logs (lfft synth)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--base", type=Path, help="also time parse_line of this checkout")
    args = ap.parse_args()
    gc.disable()  # as collect runs
    lines = [
        line for path in expand_inputs([args.logs]) for b in iter_line_blocks(path) for line in b
    ]
    print(
        f"\n`bench/data_alternatives.py`: {platform.node()}, Python "
        f"{platform.python_version()}, pyarrow {pa.__version__}, msgspec {msgspec.__version__}"
    )
    print(f"\n{len(lines):,} lines of {args.logs}, each decoded or parsed:\n")
    print("| method | CPU s | lines per CPU µs |")
    print("| --- | ---: | ---: |")
    candidates = parsers()
    errors: tuple = (ValueError, UnicodeDecodeError, StopIteration, ev.EventError)
    if args.base is not None:
        name, fn, error = base_parser(args.base)
        candidates.insert(-1, (name, fn))
        errors += (error,)
    for name, fn in candidates:
        cpu, _ = measure(lambda fn=fn: each(fn, lines, errors), args.repeat)
        print(f"| {name} | {cpu:.2f} | {len(lines) / cpu / 1e6:.2f} |")
    runs = read_events(args.logs)
    n_events = sum(map(len, runs))
    buckets = chunks(runs)
    tuples = chunks([[tuple(msgspec.structs.astuple(e)) for e in run] for run in runs])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = [
            ("msgspec msgpack of event structs (collect)", lambda: msgpack_round_trip(buckets)),
            ("marshal of tuples (collect before)", lambda: marshal_round_trip(tuples)),
            ("Arrow tables sorted by session, IPC files", lambda: arrow_round_trip(runs, folder)),
        ]
        print(f"\n{n_events:,} events in {len(runs):,} runs; serialized, read back, grouped:\n")
        print("| method | CPU s | peak Python MiB |")
        print("| --- | ---: | ---: |")
        for name, fn in rows:
            cpu, peak = measure(fn, args.repeat)
            print(f"| {name} | {cpu:.2f} | {peak:,.0f} |")

        from lfft.data.event_table import EventColumns  # the interactions of these events
        from lfft.data.implicit import load_rules
        from lfft.data.join import join_session

        cols, rules = EventColumns(), load_rules()
        for sid, session in group(iter([[run] for run in runs])).items():
            cols.add(join_session(sid, session, rules)[0])
        table = cols.table()
        keys = stable_hashes(table.column("interaction_id").to_pylist(), table.num_rows)
        table = table.append_column("_key", pa.array(keys))
        print(f"\n{table.num_rows:,} interactions rows in 8 hash partitions, written and read:\n")
        print("| method | CPU s | peak Python MiB |")
        print("| --- | ---: | ---: |")
        for name, fn in (
            ("lfft.data.spill.HashPartitions", lambda: hash_partitions(table, folder, 8)),
            ("pyarrow.dataset.write_dataset", lambda: arrow_dataset_partitions(table, folder, 8)),
        ):
            cpu, peak = measure(fn, args.repeat)
            print(f"| {name} | {cpu:.2f} | {peak:,.0f} |")


if __name__ == "__main__":
    main()
