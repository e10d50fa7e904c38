"""What a device benchmark shares (bench/generate_speed.py, bench/packed_attention.py): the
--device/--precision/--threads/--json options (each script names them, with its own help), the
machine line printed above its table, the JSON record."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

import torch

from lfft.model.device import PRECISIONS, pick_device, pick_dtype


def parse(
    ap: argparse.ArgumentParser, helps: dict[str, str]
) -> tuple[argparse.Namespace, torch.device, torch.dtype]:
    """Parse with the device options added (``helps``: the script's help for ``--device``,
    ``--precision``, ``--threads``, ``--json``); ``--threads`` set; the device and dtype."""
    kinds: dict[str, dict[str, Any]] = {
        "--device": {"default": "auto"},
        "--precision": {"default": "auto", "choices": PRECISIONS},
        "--threads": {"type": int, "default": 0},
        "--json": {"type": Path},
    }
    for flag, text in helps.items():
        ap.add_argument(flag, help=text, **kinds[flag])
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    return args, device, pick_dtype(args.precision, device)


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
    """Write ``record`` to ``--json`` (a path or None)."""
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
