"""Cost of a network: parameters, FLOPs at the working resolution, CPU latency at batch 1."""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tans._errors import TansError

__all__ = ["Cost", "count_parameters", "count_flops", "measure_latency", "measure", "machine_name"]


@dataclass(frozen=True)
class Cost:
    """What a network costs to hold and to run."""

    params: int  # trainable and frozen parameters, classifier included
    flops: int  # forward FLOPs of one image (PyTorch's counter: a multiply-add counts 2)
    input_size: int  # height = width of the image the FLOPs and latency were measured at
    latency_ms: float  # median wall time of one forward pass at batch 1, eval mode
    latency_threads: int  # torch intra-op threads during the latency measurement
    machine: str  # where the latency was measured

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def _probe(model: nn.Module, input_size: int, in_chans: int) -> torch.Tensor:
    if input_size < 8:
        raise TansError(f"Input size must be at least 8 pixels, got {input_size}.")
    device = next(model.parameters()).device
    return torch.zeros(1, in_chans, input_size, input_size, device=device)


@torch.no_grad()
def count_flops(model: nn.Module, *, input_size: int = 32, in_chans: int = 3) -> int:
    """Forward FLOPs of one ``input_size`` x ``input_size`` image, counted by PyTorch.

    Counts convolutions and matrix products (2 per multiply-add), not element-wise ops, as
    ``torch.utils.flop_counter.FlopCounterMode`` does.
    """
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(_probe(model, input_size, in_chans))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@lru_cache(maxsize=1)
def machine_name() -> str:
    """CPU model, architecture and core count, e.g. ``'AMD EPYC (x86_64, 2 cores)'``."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cpu = cpu or platform.processor() or "unknown CPU"
    return f"{cpu} ({platform.machine()}, {os.cpu_count()} cores)"


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    *,
    input_size: int = 32,
    in_chans: int = 3,
    repeats: int = 30,
    warmup: int = 5,
    threads: int | None = 1,
) -> tuple[float, int]:
    """Median CPU latency of one forward pass at batch 1, in milliseconds.

    Parameters
    ----------
    model : nn.Module
        Measured in eval mode on the CPU (a copy is not made: the model is moved to the CPU).
    input_size, in_chans : int
        Shape of the image.
    repeats, warmup : int
        Timed passes (the median is reported) after untimed warm-up passes.
    threads : int or None
        torch intra-op threads during the measurement (restored afterwards); ``None`` keeps the
        current setting. One thread makes numbers comparable across a busy machine.

    Returns
    -------
    (float, int)
        Median milliseconds and the thread count used.
    """
    if repeats < 1 or warmup < 0:
        raise TansError(f"Need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}.")
    before = torch.get_num_threads()
    was_training = model.training
    model.cpu().eval()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        x = _probe(model, input_size, in_chans)
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
        model.train(was_training)
    return statistics.median(times) * 1e3, used


def measure(model: nn.Module, *, input_size: int = 32, in_chans: int = 3, repeats: int = 30, threads: int | None = 1) -> Cost:
    """Parameters, FLOPs and CPU latency of ``model`` in one :class:`Cost`."""
    latency, used = measure_latency(model, input_size=input_size, in_chans=in_chans, repeats=repeats, threads=threads)
    return Cost(
        params=count_parameters(model),
        flops=count_flops(model, input_size=input_size, in_chans=in_chans),
        input_size=input_size,
        latency_ms=latency,
        latency_threads=used,
        machine=machine_name(),
    )
