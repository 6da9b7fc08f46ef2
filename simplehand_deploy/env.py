"""Environment fingerprint: what a benchmark number depends on, recorded in every results row.

Works on a bare CPU machine: nothing here imports TensorRT unless the real module is present, and
Jetson facts (model, L4T release, nvpmodel power mode, jetson_clocks) are read, never changed.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from . import __version__
from .errors import UsageError
from .fileio import write_json_atomic


def _run(cmd: list[str], timeout: float = 5.0) -> str:
    if shutil.which(cmd[0]) is None:
        return ""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def physical_cores() -> int:
    """Physical cores this process may use (ONNX Runtime's default intra-op pool size); logical CPUs if unknown."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    try:
        proc, phys, core = None, "0", None
        for line in [*Path("/proc/cpuinfo").read_text().splitlines(), ""]:
            key, _, value = line.partition(":")
            key, value = key.strip().lower(), value.strip()
            if key == "processor":
                proc = int(value)
            elif key == "physical id":
                phys = value
            elif key == "core id":
                core = value
            elif not line.strip() and proc is not None:
                if proc in allowed:
                    cores.add((phys, core if core is not None else str(proc)))
                proc, phys, core = None, "0", None
    except (OSError, ValueError):
        cores = set()
    return len(cores) or len(allowed) or 1


def _busy_cpu_seconds(stat: str = "/proc/stat") -> float | None:
    """Seconds all CPUs of the machine have spent on work since boot (everything but idle and iowait)."""
    try:
        with open(stat) as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How much of the machine other processes used while we measured: `cpu_other_pct` on a results row.

    A busy neighbour *inside* this machine (a build, a test run, a busy loop) takes CPU time the kernel
    accounts to it; we read the machine's busy time from /proc/stat and subtract our own process's CPU
    time. What the kernel cannot see stays invisible: a hypervisor running someone else's VM on the same
    cores, or sharing their caches, slows us without showing up here. So 0% does not prove a quiet host,
    but a large share proves a crowded machine. None where /proc/stat is absent (macOS, Windows).
    """

    def __init__(self, stat: str = "/proc/stat") -> None:
        self._stat = stat
        self._busy0 = _busy_cpu_seconds(stat)
        self._own0 = time.process_time()
        self._wall0 = time.monotonic()

    def percent(self) -> float | None:
        """Other processes' CPU time since construction, as a percentage of all CPUs' capacity (0..100)."""
        busy = _busy_cpu_seconds(self._stat)
        wall = time.monotonic() - self._wall0
        if busy is None or self._busy0 is None or wall <= 0:
            return None
        others = (busy - self._busy0) - (time.process_time() - self._own0)
        return round(min(100.0, max(0.0, 100.0 * others / (wall * (os.cpu_count() or 1)))), 1)


GPU_PROBES = ("torch", "cuda-python", "pycuda")  # how device 0 is reached, in the order `via="auto"` tries them


def cuda_device(via: str = "auto") -> dict[str, Any]:
    """Device 0, the one GPU probe: name, sm, sm_count, memory_mb, cuda (runtime version), cuda_major and the
    Jetson board; {} without a CUDA device. `via` names the library that looks (one of GPU_PROBES; "auto":
    torch, else cuda-python, else pycuda, for Jetson images without NVIDIA's torch wheel), so the builder, the
    runtime and the results record see the same device."""
    probes = {"torch": _torch_device, "cuda-python": _cuda_python_device, "pycuda": _pycuda_device}
    for name in GPU_PROBES if via == "auto" else (via,):
        found = probes[name]()
        if found:
            return {**found, "cuda_major": found["cuda"].split(".")[0], "board": board_model()}
    return {}


def require_cuda_device(via: str = "auto") -> dict[str, Any]:
    """`cuda_device(via)` for work that cannot run without a GPU (TensorRT): UsageError when there is none."""
    device = cuda_device(via)
    if not device:
        seen = "neither torch, cuda-python nor pycuda" if via == "auto" else via
        raise UsageError(f"no CUDA device: TensorRT engines are built and run on an NVIDIA GPU ({seen} sees one)")
    return device


def _torch_device() -> dict[str, Any] | None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": torch.cuda.get_device_name(0), "sm": f"{props.major}.{props.minor}",
            "sm_count": int(props.multi_processor_count), "memory_mb": int(props.total_memory) >> 20,
            "cuda": str(torch.version.cuda or "")}


def _cuda_python_device() -> dict[str, Any] | None:
    try:
        try:
            from cuda.bindings import runtime as rt
        except ImportError:
            from cuda import cudart as rt
        err, count = rt.cudaGetDeviceCount()
        if int(err) != 0 or count < 1:
            return None
        err, props = rt.cudaGetDeviceProperties(0)
        err2, version = rt.cudaRuntimeGetVersion()
        if int(err) != 0:
            return None
        name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
        return {"name": name, "sm": f"{props.major}.{props.minor}", "sm_count": int(props.multiProcessorCount),
                "memory_mb": int(props.totalGlobalMem) >> 20,
                "cuda": f"{version // 1000}.{version % 1000 // 10}" if int(err2) == 0 else ""}
    except Exception:
        return None


def _pycuda_device() -> dict[str, Any] | None:
    try:
        import pycuda.driver as drv

        drv.init()
        dev = drv.Device(0)
        major, minor = dev.compute_capability()
        count = dev.get_attributes().get(drv.device_attribute.MULTIPROCESSOR_COUNT, 0)
        version = drv.get_version()
        return {"name": dev.name(), "sm": f"{major}.{minor}", "sm_count": int(count),
                "memory_mb": int(dev.total_memory()) >> 20, "cuda": f"{version[0]}.{version[1]}"}
    except Exception:
        return None


def gpu_info() -> dict[str, str]:
    """name, sm, driver, cuda of device 0 as results record them ({} without a CUDA device)."""
    device = cuda_device()
    if not device:
        return {}
    driver = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]).splitlines()
    return {"name": str(device["name"]), "sm": str(device["sm"]), "driver": driver[0] if driver else "",
            "cuda": str(device["cuda"])}


def l4t_release(path: str = "/etc/nv_tegra_release") -> str:
    """Jetson L4T release line (e.g. 'R35 (release), REVISION: 4.1'), '' elsewhere."""
    try:
        first = Path(path).read_text().splitlines()[0]
    except (OSError, IndexError):
        return ""
    return first.lstrip("# ").split(", GCID")[0].strip()


def board_model(path: str = "/proc/device-tree/model") -> str:
    """Jetson board model ('NVIDIA Jetson Orin Nano Developer Kit'), '' where the device tree has none."""
    try:
        return Path(path).read_bytes().decode(errors="replace").replace("\x00", "").strip()
    except OSError:
        return ""


def jetson_info() -> dict[str, str]:
    """Jetson model, L4T release and nvpmodel power mode ({} off a Jetson)."""
    model, release = board_model(), l4t_release()
    if "jetson" not in model.lower() and not release:
        return {}
    power = _run(["nvpmodel", "-q"])
    mode = re.search(r"NV Power Mode:\s*(\S+)", power)
    return {"jetson_model": model, "l4t_release": release,
            "jetson_power_mode": mode.group(1) if mode else power.splitlines()[0] if power else ""}


def slug(text: str) -> str:
    """The one file-name rule for names from outside (devices, runners, variants): lower case, a-z0-9 and '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def _version(module: str) -> str:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return ""


def fingerprint() -> dict[str, Any]:
    """The env columns of the results schema (strings; '' when absent)."""
    from ._deps import tensorrt_or_none

    gpu = gpu_info()
    jet = jetson_info()
    trt = tensorrt_or_none()
    device = gpu.get("name") or cpu_model()
    now = time.gmtime()
    return {
        "device_name": device, "device_slug": slug(device), "host": socket.gethostname(),
        "os": f"{platform.system()} {platform.release()}", "arch": platform.machine(),
        "python_version": platform.python_version(), "torch_version": _version("torch"),
        "onnxruntime_version": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "tensorrt_version": str(trt.__version__) if trt is not None else "",
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count() or 0,
        "cuda_version": gpu.get("cuda", ""), "driver_version": gpu.get("driver", ""),
        "jetson_model": jet.get("jetson_model", ""), "jetson_power_mode": jet.get("jetson_power_mode", ""),
        "toolkit_version": __version__, "run_id": f"{time.strftime('%Y%m%d-%H%M%S', now)}-{slug(device)}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
    }


def write_env_json(folder: str | os.PathLike[str], env: dict[str, Any]) -> Path:
    """`<folder>/env.json`, the machine record beside every results file (atomic; the one writer of it)."""
    return write_json_atomic(Path(folder) / "env.json", env)


def details() -> dict[str, Any]:
    """Everything `simplehand-bench env` shows: the fingerprint plus CPU, GPU and Jetson details."""
    out = fingerprint()
    out["cpu_physical_cores"] = physical_cores()
    out.update({f"gpu_{k}": v for k, v in gpu_info().items()})
    out.update(jetson_info())
    return out
