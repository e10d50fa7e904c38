"""Shared test fixtures (model-stage fixtures are prefixed ``model_``) and the skip policy.

Skip policy: the only reason a test may skip is that there is no CUDA GPU. Mark such a test
``@pytest.mark.cuda`` (it then skips with the reason :data:`NO_CUDA` where there is none); any
other skip (a missing optional package, a missing file) fails the run, so a green suite means
every feature was tested. ``make install`` installs the ``test`` extra that the suite needs.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from browser import browser, page  # noqa: F401 (fixtures: one Chromium for the session)

from lfft.data.records import interaction, to_table
from lfft.io import write_table
from lfft.schemas import NORMALIZED, SPLIT, make_metadata

NO_CUDA = "needs a CUDA GPU"  # the one skip reason allowed


def pytest_collection_modifyitems(config, items) -> None:
    import torch

    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(pytest.mark.skip(reason=NO_CUDA))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A skip for any reason but :data:`NO_CUDA` becomes a failure that names the reason."""
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    reason = reason.removeprefix("Skipped: ")
    if reason != NO_CUDA:
        report.outcome = "failed"
        report.longrepr = (
            f"skipped ({reason}), but only a missing CUDA GPU may skip a test: install what the "
            "suite needs with `make install` (pip install -e '.[test]')"
        )


def make_model_rows(n_pairs: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """NORMALIZED rows of a toy addition task: per prompt one right and one wrong answer (same
    group_id), with every signal kind: pairwise, binary, scalar, and token (a user's edit)."""
    rng = random.Random(seed)
    rows = []
    for j in range(n_pairs):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        prompt = f"What is {a} + {b}?"
        context = [{"role": "system", "content": "Answer briefly."}] if j % 5 == 0 else []
        for right in (True, False):
            answer = a + b if right else a + b + rng.randint(1, 3)
            response = f"The answer is {answer}."
            row = interaction(
                session_id=f"s{j}", prompt=prompt, response=response, source="test", context=context
            )
            kind = ("pairwise", "binary", "scalar", "token")[j % 4]
            score = (0.9 if right else 0.2) if kind == "scalar" else float(right)
            row.update(
                score=score,
                label=int(right),
                weight=1.0 if kind != "scalar" else 0.5,
                signal=kind if (kind != "token" or not right) else "binary",
                target=response,
                token_spans=[],
                critique=None,
                group_id=f"g{j}",
            )
            if kind == "token" and not right:
                row["target"] = f"The answer is {a + b}."
                cut = len("The answer is ")
                row["token_spans"] = [
                    {"start": 0, "end": cut, "label": 1},
                    {"start": cut, "end": len(response), "label": 0},
                ]
            rows.append(row)
    return rows


def write_model_split(path: Path, rows: list[dict[str, Any]]) -> Path:
    write_table(path, to_table(rows, NORMALIZED), SPLIT, make_metadata("split"))
    return path


@pytest.fixture(scope="session")
def model_splits(tmp_path_factory) -> Path:
    """A splits folder: train (40 rows), val (12), test (12)."""
    root = tmp_path_factory.mktemp("model_splits")
    write_model_split(root / "train.parquet", make_model_rows(20, seed=0))
    write_model_split(root / "val.parquet", make_model_rows(6, seed=1))
    write_model_split(root / "test.parquet", make_model_rows(6, seed=2))
    return root


@pytest.fixture(scope="session")
def model_tiny_ckpt(tmp_path_factory, model_splits) -> Path:
    """``lfft init`` of a 2-layer, 32-wide tiny base with a 400-token BPE on ``model_splits``."""
    from lfft.config import InitConfig
    from lfft.model.init import init

    out = tmp_path_factory.mktemp("model_ckpt") / "init"
    cfg = InitConfig(
        data=str(model_splits / "train.parquet"), layers=2, hidden=32, heads=4, vocab_size=400
    )
    init(out, cfg)
    return out


@pytest.fixture
def model_one_thread():
    """One torch thread while a test runs: tiny models gain nothing from more, and on a shared,
    loaded 2-core machine intra-op threads waiting for each other made tests 4x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
