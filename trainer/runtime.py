"""What a training run ran on, and the library noise it keeps off the terminal.

Float kernels differ between machines (AVX2 against AVX-512, thread counts, GPU models), and so
do the last bits of every number a run produces. :func:`runtime_info` names what this process
computes with; ``simenv train`` prints it in its header and writes it to ``result.json``, so two
runs' numbers can be compared knowing whether they came from the same kind of machine.
"""

from __future__ import annotations

import platform
import warnings
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import torch

__all__ = ["describe_runtime", "quiet_library_warnings", "resolve_device", "runtime_info"]


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def resolve_device(name: str) -> torch.device:
    """``auto`` is ``cuda`` when a GPU is visible and ``cpu`` otherwise; any other name as is."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def runtime_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The device and its float kernels, torch's threads and the library versions.

    ``device`` is where the model runs: for ``cuda`` the GPU's name, otherwise torch's CPU
    capability (``AVX2``, ``AVX512``, ``DEFAULT`` ...), which picks the kernels it computes with.
    """
    device = torch.device(device)
    info: dict[str, Any] = {"device": device.type}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    info["cpu"] = platform.processor() or platform.machine()
    info["threads"] = torch.get_num_threads()
    info["python"] = platform.python_version()
    for package in ("torch", "transformers", "peft"):
        info[package] = _version(package)
    return info


def describe_runtime(info: dict[str, Any]) -> str:
    """One line for a run's header: ``cpu AVX2, 2 threads, torch 2.13.0 ...``."""
    where = (
        f"cuda {info['gpu']}" if "gpu" in info else f"cpu {info['cpu_capability']}"
    )  # the kernels' name is what differs between CPUs
    libs = ", ".join(f"{p} {info[p]}" for p in ("torch", "transformers", "peft"))
    return f"{where}, {info['threads']} threads, {libs}, python {info['python']}"


def quiet_library_warnings() -> None:
    """Hide library warnings that say nothing actionable to someone running ``simenv train``.

    transformers warns at every forward of a peft-wrapped model that ``is_gradient_checkpointing``
    will change (a note to library authors); the run never turns gradient checkpointing on.
    """
    warnings.filterwarnings(
        "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
    )
