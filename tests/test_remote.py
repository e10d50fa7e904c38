"""``lfft collect s3://bucket/prefix/`` against a real S3-compatible server (moto's server mode,
started on 127.0.0.1 by the test): the same rows as from a local folder, every container,
credentials only from the environment and never in the output; one-line errors."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from export_fixtures import (
    chat,
    lf_observation,
    lf_score,
    ls_feedback,
    ls_run,
    openai_completion,
    write_jsonl,
)
from moto.server import ThreadedMotoServer
from test_cli import run_main

from lfft.data import remote
from lfft.io import fingerprint, read_meta, read_table, rejects_path

BUCKET = "lfft-logs"
SECRET = "sEcReT-never-in-outputs-42"
GEN = {"role": "assistant", "content": "Paris."}


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(endpoint, monkeypatch, tmp_path):
    """A fresh bucket; credentials and the endpoint in the environment, as a user sets them."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.aws of the machine's
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "LFFT_CLOUD_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDLFFTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    remote._connect.cache_clear()
    remote._sizes.clear()
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)
    remote._connect.cache_clear()


def export_folder(root: Path) -> Path:
    """A mixed export: LangSmith JSONL (gzip), Langfuse Parquet + CSV, lfft-events JSONL."""
    runs = [ls_run("r1", "r1", inputs={"messages": chat("Q1")}, outputs=openai_completion("A1"))]
    (root / "langsmith").mkdir(parents=True)
    with gzip.open(root / "langsmith" / "runs.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in runs)
    write_jsonl(
        root / "langsmith" / "feedback.jsonl",
        [ls_feedback("f1", "r1", "user_score", 1, trace_id="r1"), ls_feedback("f2", "r9", "x", 1)],
    )
    obs = lf_observation("g1", "t1", messages=chat("Q2"), output=GEN, session_id="s1")
    (root / "proj-1" / "observations_v2").mkdir(parents=True)
    table = pa.Table.from_pylist([{k: v for k, v in obs.items() if v not in ({}, [])}])
    pq.write_table(table, root / "proj-1" / "observations_v2" / "a.parquet")
    score = lf_score("s1", "t1", "quality", "NUMERIC", 4, observation_id="g1")
    (root / "proj-1" / "scores").mkdir(parents=True)
    header = ",".join(score)
    cells = ",".join("" if v is None else str(v) for v in score.values())
    (root / "proj-1" / "scores" / "a.csv").write_text(f"{header}\n{cells}\n")

    def event(what: str, mid: str, **fields: str) -> dict:
        return {"event": what, "session_id": "e1", "message_id": mid, **fields}

    events = [
        event("message", "m1", role="user", content="Hi"),
        event("message", "m2", parent_id="m1", role="assistant", content="Hello"),
        event("feedback", "m2", kind="thumbs", value="up"),
        event("feedback", "m9", kind="thumbs", value="up"),  # its message never comes
    ]
    write_jsonl(root / "app" / "events.jsonl", events)
    (root / "README.txt").write_text("not data")
    (root / ".hidden.jsonl").write_text("{}\n")
    return root


def upload(client, root: Path, prefix: str) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(root).as_posix()}")


def collected(capsys, *argv: str) -> tuple[int, list[str]]:
    return run_main(capsys, "collect", *argv, "-q")


def table_of(out: Path) -> tuple[dict, list[tuple]]:
    """Rows as (session, prompt, response, feedback kinds) by id; rejects as (reason, file:line)."""
    rows = {
        r["interaction_id"]: (r["session_id"], r["prompt"], r["response"])
        + tuple(e["kind"] for e in r["feedback"])
        for r in read_table(out).to_pylist()
    }
    rejected = read_table(rejects_path(out)).to_pylist()
    return rows, sorted((r["reason"], r["location"].rsplit("/", 1)[-1]) for r in rejected)


def test_a_prefix_reads_like_the_same_local_folder(s3, tmp_path, capsys):
    local = export_folder(tmp_path / "local")
    upload(s3, local, "exports/2024")
    out_local, out_s3 = tmp_path / "a" / "i.parquet", tmp_path / "b" / "i.parquet"
    assert collected(capsys, str(local), "--out", str(out_local))[0] == 0
    code, err = collected(capsys, f"s3://{BUCKET}/exports/2024/", "--out", str(out_s3))
    assert (code, err) == (0, [])
    assert table_of(out_s3) == table_of(out_local)
    rows, rejects = table_of(out_s3)
    assert set(rows) == {"r1", "g1", "e1:m2"}
    assert [why for why, _ in rejects] == ["orphan_feedback", "orphan_feedback"]
    sources = {r["source"] for r in read_table(rejects_path(out_s3)).to_pylist()}
    prefix = f"s3:/{BUCKET}/exports/2024"  # a URL as a Path spells it
    assert sources == {f"{prefix}/app/events.jsonl", f"{prefix}/langsmith/feedback.jsonl"}
    meta = read_meta(out_s3)
    assert list(meta["inputs"]) == [prefix]
    assert len(meta["files"]) == 5  # README.txt and the hidden file are not data
    for path in out_s3.parent.iterdir():  # the secret is used, never written
        assert SECRET.encode() not in path.read_bytes()


def test_fingerprint_follows_the_objects(s3, tmp_path):
    root = export_folder(tmp_path / "local")
    upload(s3, root, "p")
    url = f"s3://{BUCKET}/p"
    first = fingerprint(url)
    assert fingerprint(url) == first and fingerprint(f"s3:/{BUCKET}/p/") == first
    s3.put_object(Bucket=BUCKET, Key="p/app/events.jsonl", Body=b'{"event": "message"}\n')
    assert fingerprint(url) != first


def test_errors_are_one_line(s3, tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "o" / "i.parquet")
    cases = {
        f"s3://{BUCKET}/nothing/here/": "no log files there",
        "s3://no-such-bucket-lfft/x/": "no bucket 'no-such-bucket-lfft'",
        f"s3://key:{SECRET}@{BUCKET}/p/": "not in the URL",
        f"s3://{BUCKET}/p/?endpoint_override=http://x": "not in the URL",
    }
    for url, says in cases.items():
        code, err = collected(capsys, url, "--out", out)
        assert code == 1 and len(err) == 1 and says in err[0] and SECRET not in err[0], (url, err)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    remote._connect.cache_clear()
    for url, says in [
        (f"s3://{BUCKET}/p/", "no AWS credentials: set AWS_ACCESS_KEY_ID"),
        ("gs://bucket/p/", "no Google credentials"),
        ("az://container/p/", "set AZURE_STORAGE_ACCOUNT_NAME"),
    ]:
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
        monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
        code, err = collected(capsys, url, "--out", out)
        assert code == 1 and len(err) == 1 and says in err[0], (url, err)
    assert not Path(out).exists()


def test_the_url_forms_are_one(tmp_path):
    assert remote.url_of("s3:/b/k/") == remote.url_of("s3://b/k") == "s3://b/k"
    assert remote.url_of("gcs://b/k") == "gs://b/k"
    assert remote.is_url(Path("az://c/k")) and not remote.is_url(tmp_path)
    shutil.rmtree(tmp_path)


def test_anonymous_access_and_a_missing_filesystem(s3, tmp_path, capsys, monkeypatch):
    root = export_folder(tmp_path / "local")
    upload(s3, root, "p")
    for name in ("runs.jsonl.gz", "feedback.jsonl"):  # public objects
        s3.put_object_acl(Bucket=BUCKET, Key=f"p/langsmith/{name}", ACL="public-read")
    out = tmp_path / "o" / "i.parquet"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("LFFT_CLOUD_CREDENTIALS", "anonymous")  # a public bucket: unsigned
    remote._connect.cache_clear()
    assert collected(capsys, f"s3://{BUCKET}/p/langsmith/", "--out", str(out)) == (0, [])
    assert len(read_table(out)) == 1
    monkeypatch.delattr(remote.pafs, "S3FileSystem")  # a pyarrow built without S3
    remote._connect.cache_clear()
    code, err = collected(capsys, f"s3://{BUCKET}/p/", "--out", str(out))
    assert code == 1 and len(err) == 1 and "this pyarrow has no s3 filesystem" in err[0]
