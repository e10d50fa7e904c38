"""Pick the device and the compute dtype (``--device`` / ``--precision``)."""

from __future__ import annotations

import torch

from lfft.errors import ConfigError, LfftError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LfftError("--device cuda: no CUDA GPU is visible; use --device cpu (or auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: expected auto, cpu or cuda[:N]") from None


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: ``auto`` is bf16 on a GPU that supports it, fp32 otherwise.

    Weights stay in fp32 (master weights); bf16/fp16 run the forward under autocast.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if precision == "fp16" and device.type != "cuda":
        raise LfftError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on the CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise LfftError("--precision bf16: this GPU does not support bf16; use fp16 or fp32")
    return DTYPES[precision]


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory so far: allocated on CUDA, resident set size of the process on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
