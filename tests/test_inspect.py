"""``lfft inspect`` runs on every artifact kind and shows what each holds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from lfft.config import CleanConfig, NormalizeConfig, SplitConfig
from lfft.data.clean import clean
from lfft.data.inspect import inspect
from lfft.data.normalize import normalize
from lfft.data.records import feedback_event, interaction, to_table
from lfft.data.split import split
from lfft.io import write_table
from lfft.schemas import INTERACTIONS, METRICS, PREDICTIONS, make_metadata


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inspect")
    rows = [
        interaction(
            session_id=f"s{i}",
            prompt=f"Question [{i}]?",
            response="Answer with\na newline." if i else " ",
            source="events",
            feedback=[feedback_event("thumbs", value=i % 2), feedback_event("edit", text="Fix.")],
        )
        for i in range(8)
    ]
    paths = {"interactions": root / "interactions.parquet"}
    write_table(paths["interactions"], to_table(rows), INTERACTIONS, make_metadata("collect"))
    paths["clean"] = root / "clean.parquet"
    clean(paths["interactions"], paths["clean"], CleanConfig())
    paths["rejects"] = root / "clean.rejects.parquet"
    paths["feedback"] = root / "feedback.parquet"
    normalize(paths["clean"], paths["feedback"], NormalizeConfig())
    split(paths["feedback"], root / "splits", SplitConfig(ratios=(1.0, 0.0, 0.0)))
    paths["split"] = root / "splits" / "train.parquet"
    paths["empty split"] = root / "splits" / "val.parquet"
    paths["metrics"] = root / "metrics.parquet"
    metrics = [{"step": 1, "split": "train", "loss": 2.5}, {"step": 2, "split": "val"}]
    write_table(paths["metrics"], to_table(metrics, METRICS), METRICS, make_metadata("train"))
    paths["predictions"] = root / "eval"
    paths["predictions"].mkdir()
    preds = [{"interaction_id": "a", "prompt": "p", "response": "r", "nll": 1.5}]
    write_table(
        paths["predictions"] / "predictions.parquet",
        to_table(preds, PREDICTIONS),
        PREDICTIONS,
        make_metadata("evaluate"),
    )
    paths["plain"] = root / "plain.parquet"
    pq.write_table(pa.table({"x": [1, 2], "y": ["a", "b"]}), paths["plain"])
    return paths


def show(path: Path, rows: int = 3) -> str:
    console = Console(record=True, width=160)
    inspect(path, rows=rows, console=console)
    return console.export_text()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("interactions", ["interactions", "8 rows", "feedback kinds", "thumbs", "Question [1]?"]),
        ("clean", ["clean", "7 rows", "pii"]),
        ("rejects", ["rejects", "empty_response", "reason"]),
        ("feedback", ["feedback", "signal", "token", "1 (good)", "score"]),
        ("split", ["split", '"split"', "label"]),
        ("empty split", ["split", "0 rows"]),
        ("metrics", ["metrics", "loss", "2 rows"]),
        ("predictions", ["predictions", "nll", "1 file"]),
        ("plain", ["parquet", "2 rows", "y"]),
    ],
)
def test_inspect_every_artifact_kind(artifacts, kind, expected):
    text = show(artifacts[kind])
    for needle in expected:
        assert needle in text, f"{needle!r} not shown for {kind}:\n{text}"


def test_inspect_cli_and_missing_file(artifacts, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lfft", "inspect", str(artifacts["feedback"]), "--rows", "2"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "signal" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "lfft", "inspect", str(tmp_path / "nope.parquet")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and proc.stderr.startswith("error: ")
