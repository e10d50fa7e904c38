"""Schemas, atomic artifact IO, configs and the CLI's error contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from lfft import io, schemas
from lfft.config import TrainConfig, build, load_toml, stage_config
from lfft.data.records import feedback_event, interaction, parse_ts, to_table
from lfft.errors import ConfigError, LfftError, SchemaError


def _rows(n: int = 3) -> pa.Table:
    return to_table(
        [
            interaction(
                session_id=f"s{i}",
                prompt=f"q{i}",
                response=f"a{i}",
                source="test",
                feedback=[feedback_event("thumbs", value=1.0)],
            )
            for i in range(n)
        ]
    )


def test_validate_names_every_bad_column_at_once():
    bad = pa.schema([("interaction_id", pa.int64()), ("prompt", pa.string())])
    with pytest.raises(SchemaError) as e:
        schemas.validate(bad, schemas.INTERACTIONS, "x.parquet")
    msg = str(e.value)
    assert "'interaction_id' is int64" in msg
    for missing in ("session_id", "response", "feedback", "context"):
        assert f"missing column '{missing}'" in msg


def test_artifact_roundtrip_carries_metadata(tmp_path: Path):
    out = tmp_path / "a.parquet"
    meta = schemas.make_metadata("collect", {"format": "events"}, {"in.jsonl": "abc"})
    io.write_table(out, _rows(3), schemas.INTERACTIONS, meta)
    got = io.read_meta(out)
    assert got["stage"] == "collect" and got["config"] == {"format": "events"}
    assert got["inputs"] == {"in.jsonl": "abc"} and got["counts"]["rows"] == 3
    assert got["fingerprint"] == io.fingerprint(out)
    table = io.read_table(out, schema=schemas.INTERACTIONS)
    assert table.column("prompt").to_pylist() == ["q0", "q1", "q2"]


def test_killed_write_leaves_no_artifact_and_no_temp(tmp_path: Path):
    out = tmp_path / "a.parquet"
    with pytest.raises(RuntimeError), io.ArtifactWriter(out, schemas.INTERACTIONS, {}) as w:
        w.write(_rows(2))
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_killed_rewrite_keeps_the_previous_artifact(tmp_path: Path):
    out = tmp_path / "a.parquet"
    io.write_table(out, _rows(2), schemas.INTERACTIONS, {})
    with pytest.raises(RuntimeError), io.ArtifactWriter(out, schemas.INTERACTIONS, {}) as w:
        w.write(_rows(5))
        raise RuntimeError("killed")
    assert io.count_rows(out) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["a.parquet"]


def test_readers_accept_a_folder_of_parts(tmp_path: Path):
    for i in range(3):
        io.write_table(tmp_path / f"part-{i}.parquet", _rows(2), schemas.INTERACTIONS, {})
    assert io.count_rows(tmp_path) == 6
    assert sum(b.num_rows for b in io.iter_batches(tmp_path, batch_rows=1)) == 6
    assert io.read_table(tmp_path).num_rows == 6


def test_missing_artifact_is_a_user_error(tmp_path: Path):
    with pytest.raises(LfftError, match="no such file"):
        io.read_table(tmp_path / "nope.parquet")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(LfftError, match="not a readable Parquet"):
        io.read_table(tmp_path / "junk.parquet")


def test_fingerprint_follows_content(tmp_path: Path):
    f = tmp_path / "log.jsonl"
    f.write_text('{"a": 1}\n')
    first = io.fingerprint(f)
    assert io.fingerprint(f) == first
    f.write_text('{"a": 2}\n')
    assert io.fingerprint(f) != first


def test_parse_ts_accepts_iso_seconds_and_millis():
    a = parse_ts("2024-05-01T12:00:00Z")
    assert parse_ts(1714564800) == a
    assert parse_ts(1714564800000) == a
    assert parse_ts("2024-05-01T14:00:00+02:00") == a
    with pytest.raises(ValueError):
        parse_ts("yesterday")


def test_config_precedence_option_over_toml_over_default(tmp_path: Path):
    cfg_file = tmp_path / "lfft.toml"
    cfg_file.write_text("[train]\nlr = 0.01\nmax-steps = 7\nlambda = 0.25\n")
    cfg = stage_config("train", cfg_file, max_steps=3)
    assert (cfg.lr, cfg.max_steps, cfg.lambda_) == (0.01, 3, 0.25)
    assert cfg.objective == TrainConfig().objective


def test_config_unknown_key_and_table_are_errors(tmp_path: Path):
    f = tmp_path / "lfft.toml"
    f.write_text("[train]\nlearning_rate = 1\n")
    with pytest.raises(ConfigError, match="unknown key.*learning_rate"):
        load_toml(f)
    f.write_text("[trian]\nlr = 1\n")
    with pytest.raises(ConfigError, match="unknown table.*trian"):
        load_toml(f)


def test_config_types_are_checked_and_coerced():
    assert build(TrainConfig, {"lr": 1}).lr == 1.0
    with pytest.raises(ConfigError, match="lr: expected float"):
        build(TrainConfig, {"lr": "fast"})
    from lfft.config import SplitConfig

    assert build(SplitConfig, {"ratios": [0.5, 0.25, 0.25]}).ratios == (0.5, 0.25, 0.25)


def _lfft(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lfft", *args], capture_output=True, text=True, cwd=cwd
    )


def test_help_starts_without_torch():
    code = "import sys; sys.argv=['lfft','--help']\ntry:\n import lfft.cli; lfft.cli.app()\n"
    code += "except SystemExit: pass\nassert 'torch' not in sys.modules, 'torch imported'\n"
    code += "assert 'transformers' not in sys.modules\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "collect" in proc.stdout and "pipeline" in proc.stdout


def test_bad_config_is_one_line_error_exit_1(tmp_path: Path):
    f = tmp_path / "lfft.toml"
    f.write_text("[clean]\nbogus = 1\n")
    proc = _lfft(
        "clean",
        str(tmp_path / "x.parquet"),
        "--out",
        str(tmp_path / "y.parquet"),
        "--config",
        str(f),
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "bogus" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
