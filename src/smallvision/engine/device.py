"""Device, precision and seeding: the same rules for train, evaluate, predict, lr-find and the benchmarks."""

from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path

import numpy as np
import torch

from smallvision.errors import UsageError


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA, else Apple's MPS, else the CPU. A named device that is absent is a one-line error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here (use --device cpu or auto)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("--device mps: Apple's MPS is not available here (use --device cpu or auto)")
    return torch.device(name)


# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA), lowest first; bf16 arithmetic is native from AVX512_CORE_BF16 on
ISA_ORDER = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
             "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX", "AVX512_CORE_AMX",
             "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2", "ALL", "DEFAULT")


def isa_allows_bf16(cap: str | None = None) -> bool:
    """False when ONEDNN_MAX_CPU_ISA caps oneDNN below AVX512_CORE_BF16 (a laptop-class CPU,
    or one measured as such): then bf16 is emulated and slower than fp32."""
    cap = (cap if cap is not None else os.environ.get("ONEDNN_MAX_CPU_ISA", "")).strip().upper()
    if not cap or cap not in ISA_ORDER:
        return True
    return ISA_ORDER.index(cap) >= ISA_ORDER.index("AVX512_CORE_BF16")


def cpu_has_native_bf16(flags: str | None = None) -> bool:
    """True on CPUs with bf16 matrix instructions (AMX or AVX512-BF16), where bf16 autocast is
    2-3× faster than fp32 (unless ONEDNN_MAX_CPU_ISA caps oneDNN below them); elsewhere torch
    emulates bf16 and it is slower."""
    if flags is None:
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    return ("amx_bf16" in flags or "avx512_bf16" in flags) and isa_allows_bf16()


def autocast_for(device: torch.device, precision: str) -> tuple[contextlib.AbstractContextManager, str]:
    """The autocast context for a precision setting, and the precision actually used.

    auto: bf16 on CUDA, fp32 elsewhere (seed recipes stay faithful); fast: bf16 wherever the
    hardware runs it natively (CUDA, or a CPU with AMX/AVX512-BF16), else fp32.
    """
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    elif precision == "fast":
        precision = "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16()) else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext(), "fp32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "fp16" and device.type == "cpu":
        raise UsageError("--precision fp16 needs a GPU; on the CPU use bf16 or fp32")
    return torch.autocast(device.type, dtype=dtype), precision


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
