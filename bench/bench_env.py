"""What a device benchmark shares: the --device/--precision/--threads/--json options, the machine
line printed above its table, and the JSON record (bench/generate_speed.py,
bench/packed_attention.py)."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from lfft.model.device import PRECISIONS, pick_device, pick_dtype


def add_device_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--device", default="auto", help="auto|cpu|cuda[:N]")
    ap.add_argument("--precision", default="auto", choices=PRECISIONS, help="auto: bf16 on GPU")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's own)")
    ap.add_argument("--json", type=Path, help="also write the results here (machine-readable)")


def setup(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """Threads set; the device and dtype the options name."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    return device, pick_dtype(args.precision, device)


def machine(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """The machine and software a result was measured on."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "gpu": gpu,
        "device": device.type,
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "load": os.getloadavg()[0],
    }


def machine_line(m: dict[str, Any]) -> str:
    where = m["gpu"] or f"{m['cpu']}, {m['cores']} cores, {m['threads']} thread(s)"
    return f"{where}; {m['device']} {m['dtype']}; torch {m['torch']}; load average {m['load']:.2f}"


def finish(args: argparse.Namespace, record: dict[str, Any]) -> None:
    """Write ``record`` to ``--json`` when given."""
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
