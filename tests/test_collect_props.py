"""Property tests: collect never crashes on random or garbled lines, every line is accounted for,
and the order events arrive in does not change the interactions."""

from __future__ import annotations

import json
import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lfft.config import CollectConfig
from lfft.data.collect import collect
from lfft.io import read_table, rejects_path

CFG = CollectConfig(format="events", partitions=3)
SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

ids = st.sampled_from(["m1", "m2", "m3", "m4", "m5"])
anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 12),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.sampled_from(["up", "down", "maybe", "five", "m1", "m2"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
timestamps = st.one_of(
    st.none(),
    st.integers(0, 2_000_000_000_000),
    st.sampled_from(["2024-05-01T10:00:00Z", "2024-05-01 10:00", "yesterday", ""]),
    anything,
)
message = st.fixed_dictionaries(
    {
        "event": st.just("message"),
        "session_id": st.sampled_from(["s1", "s2"]),
        "message_id": ids,
        "parent_id": st.one_of(st.none(), ids),
        "role": st.sampled_from(["system", "user", "assistant", "assistant", "tool"]),
        "content": st.one_of(
            st.text(max_size=30),
            st.sampled_from(["Thanks!", "That's wrong.", "I mean, what?"]),
            anything,
        ),
    },
    optional={"ts": timestamps, "id": st.sampled_from(["e1", "e2", "e3"]), "user_id": anything},
)
feedback = st.fixed_dictionaries(
    {
        "event": st.sampled_from(["feedback", "action", "feedback", "nope"]),
        "session_id": st.sampled_from(["s1", "s2"]),
        "message_id": st.one_of(ids, anything),
        "kind": st.sampled_from(
            [
                "thumbs",
                "rating",
                "label",
                "comment",
                "edit",
                "preference",
                "copy",
                "dwell_ms",
                "regenerate",
                "emoji",
            ]
        ),  # fmt: skip
    },
    optional={"value": anything, "scale": anything, "ts": timestamps, "id": st.just("e1")},
)


@st.composite
def garbled(draw, inner=st.one_of(message, feedback)) -> bytes:
    """A valid-looking event, cut short, with bytes flipped, or pure noise."""
    line = json.dumps(draw(inner), ensure_ascii=draw(st.booleans())).encode()
    how = draw(st.sampled_from(["cut", "flip", "noise", "dict-of-garbage"]))
    if how == "cut":
        return line[: draw(st.integers(0, len(line)))]
    if how == "flip":
        i = draw(st.integers(0, len(line) - 1))
        return line[:i] + bytes([draw(st.integers(0, 255))]) + line[i + 1 :]
    if how == "noise":
        return draw(st.binary(max_size=40))
    return json.dumps(draw(anything)).encode()


lines = st.lists(
    st.one_of(
        message.map(lambda e: json.dumps(e).encode()),
        feedback.map(lambda e: json.dumps(e).encode()),
        garbled(),
    ),
    max_size=25,
)


def run(tmp_path: Path, name: str, data: bytes):
    src = tmp_path / f"{name}.jsonl"
    src.write_bytes(data)
    out = tmp_path / f"{name}.parquet"
    result = collect([src], out, CFG)
    return result, read_table(out).to_pylist(), read_table(rejects_path(out)).to_pylist()


@SETTINGS
@given(lines=lines)
def test_random_and_garbled_lines_never_crash_and_every_line_is_accounted_for(tmp_path, lines):
    data = b"".join(x + b"\n" for x in lines)
    result, rows, rejects = run(tmp_path, "random", data)
    n_lines = data.count(b"\n")
    assert result.rows_in == n_lines
    assert result.rows_in == result.extra["lines used"] + len(rejects)
    assert sum(result.rejects.values()) == len(rejects)
    assert result.rows_out == len(rows) <= result.extra["lines used"]
    locations = [r["location"] for r in rejects]
    assert len(set(locations)) == len(locations)  # a line is rejected at most once
    assert all(1 <= int(loc.rsplit(":", 1)[1]) <= n_lines for loc in locations)
    assert all(r["reason"].isidentifier() and r["reason"].islower() for r in rejects)


@st.composite
def conversation(draw) -> list[str]:
    """A valid session tree (regenerations included) with feedback, every event distinct."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    events, answers, n = [], [], 0
    parent = None
    for _ in range(draw(st.integers(1, 4))):
        n += 1
        user = f"m{n}"
        events.append(("message", user, parent, "user", f"question {n}?"))
        for _ in range(draw(st.integers(1, 2))):  # regenerated siblings
            n += 1
            events.append(("message", f"m{n}", user, "assistant", f"answer {n}."))
            answers.append(f"m{n}")
        parent = answers[-1]
    out = []
    for kind, mid, parent, role, content in events:
        out.append(
            json.dumps({"event": kind, "session_id": "s", "message_id": mid, "parent_id": parent,
                        "role": role, "content": content, "ts": 1_700_000_000 + len(out)})
        )  # fmt: skip
    for i in range(draw(st.integers(0, 6))):
        target = rng.choice(answers)
        kind, value = rng.choice([("thumbs", "up"), ("rating", 3), ("comment", f"c{i}")])
        out.append(json.dumps({"event": "feedback", "session_id": "s", "message_id": target,
                               "kind": kind, "value": value, "id": f"f{i}"}))  # fmt: skip
    return out


def canonical(rows: list[dict]) -> list:
    return sorted(
        (r["interaction_id"], r["prompt"], r["response"], json.dumps(r["context"]),
         sorted(json.dumps(f, default=str, sort_keys=True) for f in r["feedback"]))
        for r in rows
    )  # fmt: skip


@SETTINGS
@given(session=conversation(), seed=st.integers(0, 1000))
def test_arrival_order_does_not_change_the_interactions(tmp_path, session, seed):
    shuffled = list(session)
    random.Random(seed).shuffle(shuffled)
    result_a, rows_a, rejects_a = run(tmp_path, "ordered", "\n".join(session).encode() + b"\n")
    _, rows_b, rejects_b = run(tmp_path, "shuffled", "\n".join(shuffled).encode() + b"\n")
    assert rejects_a == rejects_b == []
    assert canonical(rows_a) == canonical(rows_b)
    assert result_a.rows_out == sum('"assistant"' in line for line in session)
