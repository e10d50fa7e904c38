"""collect's memory budget: peak RSS stays flat as the input grows under a small budget.

Each collect runs in a fresh process and reports its ``VmHWM`` (the peak RSS of its own address
space: ``ru_maxrss`` survives ``exec`` and would report the forking test worker's peak): N and 4N
synthetic sessions, with a 4 MB budget and with the default (512 MB, which the whole input fits
in memory: its growth shows what the measurement would catch). Output row groups of 2,048 rows
(``batch_rows``), so that the writer's buffer is full at N already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lfft.config import CollectConfig, SynthConfig
from lfft.data.synth import synth

ROOT = Path(__file__).resolve().parents[1]
SESSIONS = 5_000
SMALL = 4.0  # MB
CHILD = """
import sys
from pathlib import Path
from lfft.config import CollectConfig
from lfft.data.collect import collect
cfg = CollectConfig(format="events", memory_budget=float(sys.argv[3]), batch_rows=2048)
result = collect([Path(sys.argv[1])], Path(sys.argv[2]), cfg)
hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM:")).split()[1]
print(hwm, result.extra.get("spilled to disk", 0))
"""


def peak_rss_mib(logs: Path, out: Path, budget: float) -> tuple[float, int]:
    """Peak RSS (MiB) of a process that collects ``logs``, and the records it spilled."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(logs), str(out), str(budget)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    rss_kib, spilled = proc.stdout.split()
    return int(rss_kib) / 1024, int(spilled)


@pytest.mark.slow
def test_peak_rss_stays_flat_as_the_input_grows_under_a_small_budget(tmp_path):
    peaks = {}
    for n in (SESSIONS, 4 * SESSIONS):
        logs = tmp_path / f"logs-{n}"
        synth(logs, SynthConfig(sessions=n, files=2, seed=1))
        for budget in (SMALL, CollectConfig().memory_budget):
            peaks[n, budget], spilled = peak_rss_mib(
                logs, tmp_path / f"{n}-{budget}.parquet", budget
            )
            assert (spilled > 0) == (budget == SMALL)
    small = peaks[4 * SESSIONS, SMALL] - peaks[SESSIONS, SMALL]
    default = peaks[4 * SESSIONS, 512.0] - peaks[SESSIONS, 512.0]
    report = ", ".join(f"{n:,} sessions at {b:g} MB: {p:.0f} MiB" for (n, b), p in peaks.items())
    assert small < 20, report  # +10 MiB here: one partition (1/32 of the input) is larger
    assert small < default / 3, report  # the default holds every record: about +70 MiB
