"""What this machine offers: CPUs, memory, GPUs (NVML or nvidia-smi when present), and its load."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import psutil


def hostname() -> str:
    return socket.gethostname()


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def memory_bytes() -> int:
    return int(psutil.virtual_memory().total)


def detect_gpus() -> list[str]:
    """The NVIDIA devices' indices (what CUDA_VISIBLE_DEVICES takes), from NVML when the
    nvidia-ml-py package is installed, else from `nvidia-smi`; [] when there is no NVIDIA driver."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        pass
    else:
        try:
            pynvml.nvmlInit()
            try:
                return [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
            finally:
                pynvml.nvmlShutdown()
        except Exception:  # pynvml.NVMLError and its many subclasses: no usable driver
            return []
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return []
    try:
        out = subprocess.run(
            [nvidia_smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]


class LoadSampler:
    """CPU and memory use, sampled without blocking (psutil's interval=None compares with the last call)."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)

    def sample(self) -> tuple[float, float]:
        return float(psutil.cpu_percent(interval=None)), float(psutil.virtual_memory().percent)


def advertise_host(master: str) -> str:
    """The address other machines reach this worker at: the local address of the route to the master."""
    host = master.rpartition(":")[0].strip("[]")
    if host in ("127.0.0.1", "localhost", "::1", ""):
        return "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, 9))  # no packet is sent: this only picks the route
            return str(probe.getsockname()[0])
    except OSError:
        return hostname()
