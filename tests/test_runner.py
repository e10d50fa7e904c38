"""The batch-stage runner: what every data stage gets from it (counts, rejects, atomic writes,
the empty-output error, workers, notes), checked on a toy core."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from lfft.data.rejects import reject_table
from lfft.data.runner import Batch, Output, StageRun
from lfft.errors import NoUsableRows
from lfft.io import artifact_files, read_meta, read_table, rejects_path, write_table
from lfft.schemas import REJECTS, make_metadata

SCHEMA = pa.schema([pa.field("id", pa.string()), pa.field("n", pa.int64())])


@dataclass(frozen=True)
class ToyConfig:
    limit: int = 10
    workers: int = 1


def keep_small(table: pa.Table, cfg: ToyConfig, source: str) -> Batch:
    """A toy core: keep rows with n < limit, reject the others, note the odd ones kept."""
    big = pc.greater_equal(table.column("n"), cfg.limit)
    dropped = table.filter(big)
    kept = table.filter(pc.invert(big))
    odd = kept.filter(pc.equal(pc.bit_wise_and(kept.column("n"), 1), 1))
    rejects = reject_table(
        "toy", source, dropped.column("id").to_pylist(), ["too_big"] * dropped.num_rows
    )
    notes = reject_table("toy", source, odd.column("id").to_pylist(), ["odd"] * odd.num_rows)
    return Batch(kept, rejects, notes, Counter(seen=table.num_rows))


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def toy_input(path: Path, values: list[int]) -> Path:
    table = pa.table({"id": [f"r{i}" for i in range(len(values))], "n": values}, schema=SCHEMA)
    write_table(path, table, SCHEMA, make_metadata("toy"))
    return path


def run_toy(src: Path, out: Path, cfg: ToyConfig, batch_rows: int = 3, part_rows: int = 0):
    table = read_table(src)
    jobs = ((b, cfg, str(src)) for b in table.to_batches(max_chunksize=batch_rows))
    outputs = {"toy": Output(out, SCHEMA, part_rows)}
    with StageRun("toy", cfg, [src], outputs, rejects=out, hint="; try a bigger limit") as run:
        for batch in run.map(keep_small, jobs, cfg.workers):
            run.write(batch.rows)
        run.meta["counts"] = {"rows": run.writer().rows, "rows_in": run.result.rows_in}
        run.result.extra = {"notes": dict(run.notes), "seen": run.tallies["seen"]}
    return run.result


def test_counts_rejects_notes_and_metadata_add_up(tmp_path):
    src = toy_input(tmp_path / "in.parquet", [1, 12, 4, 30, 7, 9, 11, 2])
    out = tmp_path / "out.parquet"
    result = run_toy(src, out, ToyConfig())

    assert (result.rows_in, result.rows_out) == (8, 5)
    assert result.rejects == {"too_big": 3}
    assert result.rows_in == result.rows_out + sum(result.rejects.values())
    assert result.extra == {"notes": {"odd": 3}, "seen": 8}  # summed over 3 batches
    assert read_table(out).column("id").to_pylist() == ["r0", "r2", "r4", "r5", "r7"]
    rejects = read_table(rejects_path(out), schema=REJECTS)
    assert rejects.column("location").to_pylist() == ["r1", "r3", "r6"]  # notes not written
    assert set(rejects.column("source").to_pylist()) == {str(src)}
    meta = read_meta(out)
    assert meta["stage"] == "toy" and meta["config"] == {"limit": 10, "workers": 1}
    assert meta["counts"] == {"rows": 5, "rows_in": 8}
    assert list(meta["inputs"]) == [str(src)]
    assert read_meta(rejects_path(out))["counts"] == {"rows": 3, "too_big": 3}
    assert result.outputs == {"toy": out, "rejects": rejects_path(out)}
    assert result.seconds > 0
    assert names(tmp_path) == ["in.parquet", "out.parquet", "out.rejects.parquet"]


def test_worker_processes_give_the_same_output(tmp_path):
    src = toy_input(tmp_path / "in.parquet", list(range(40)))
    one = run_toy(src, tmp_path / "one.parquet", ToyConfig(limit=25))
    two = run_toy(src, tmp_path / "two.parquet", ToyConfig(limit=25, workers=2))
    assert read_table(tmp_path / "two.parquet").equals(read_table(tmp_path / "one.parquet"))
    assert read_table(rejects_path(tmp_path / "two.parquet")).equals(
        read_table(rejects_path(tmp_path / "one.parquet"))
    )
    assert (two.rows_in, two.rows_out, two.rejects, two.extra) == (
        one.rows_in,
        one.rows_out,
        one.rejects,
        one.extra,
    )


def test_no_row_kept_writes_the_rejects_and_stops_with_their_reasons(tmp_path):
    src = toy_input(tmp_path / "in.parquet", [50, 60])
    out = tmp_path / "out.parquet"
    with pytest.raises(NoUsableRows) as err:
        run_toy(src, out, ToyConfig())
    message = str(err.value)
    assert "all 2 rejected (too_big: 2)" in message and message.endswith("try a bigger limit")
    assert not out.exists()
    assert read_table(rejects_path(out)).num_rows == 2


def test_an_empty_input_is_named_as_such(tmp_path):
    src = toy_input(tmp_path / "in.parquet", [])
    with pytest.raises(NoUsableRows, match="no rows to toy .the artifact is empty"):
        run_toy(src, tmp_path / "out.parquet", ToyConfig())


def test_an_error_mid_run_keeps_the_previous_output_and_leaves_no_temporary_files(tmp_path):
    src = toy_input(tmp_path / "in.parquet", [1, 2, 3, 4, 5, 6, 70])
    out = tmp_path / "out.parquet"
    run_toy(src, out, ToyConfig())
    before = read_table(out)

    def failing(table: pa.Table, cfg: ToyConfig, source: str) -> Batch:
        if table.column("n")[0].as_py() > 3:
            raise KeyboardInterrupt
        return keep_small(table, cfg, source)

    jobs = ((b, ToyConfig(), "") for b in read_table(src).to_batches(max_chunksize=3))
    outputs = {"toy": Output(out, SCHEMA)}
    with pytest.raises(KeyboardInterrupt), StageRun("toy", ToyConfig(), [src], outputs, out) as run:
        (run.tmp / "scratch").write_text("x")
        for batch in run.map(failing, jobs):
            run.write(batch.rows)
    assert read_table(out).equals(before)
    assert names(tmp_path) == ["in.parquet", "out.parquet", "out.rejects.parquet"]


def test_folder_output_holds_its_parts_and_rejects(tmp_path):
    src = toy_input(tmp_path / "in.parquet", list(range(12)))
    out = tmp_path / "out"
    result = run_toy(src, out, ToyConfig(), part_rows=4)
    assert [p.name for p in artifact_files(out)] == ["part-00000.parquet", "part-00001.parquet",
                                                     "part-00002.parquet"]  # fmt: skip
    assert read_table(out).num_rows == result.rows_out == 10
    assert read_table(rejects_path(out)).num_rows == 2
    assert rejects_path(out) == out / "rejects.parquet"


def test_plain_pairs_and_json_lines(tmp_path):
    src = toy_input(tmp_path / "in.parquet", [1, 20, 3])

    def as_lines(table: pa.Table) -> tuple[list[str], pa.Table]:
        ids = table.column("id").to_pylist()
        return [f'"{i}"' for i in ids[::2]], reject_table("toy", "", ids[1::2], ["odd_row"])

    out = tmp_path / "out.jsonl"
    with StageRun("toy", None, [src], {"out": Output(out)}, None, required=False) as run:
        for batch in run.map(as_lines, [(read_table(src),)]):
            run.write(batch.rows)
    assert out.read_text() == '"r0"\n"r2"\n'
    assert (run.result.rows_in, run.result.rows_out, run.result.rejects) == (3, 2, {"odd_row": 1})
    assert names(tmp_path) == ["in.parquet", "out.jsonl"]
