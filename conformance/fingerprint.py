"""The environment a backend computed in: CPU, threads, OS, FTZ/DAZ, framework build and kernel path.

Two runs that disagree can only be compared when each says where it ran: TensorFlow runs
oneDNN kernels on most Intel CPUs and Eigen kernels on AMD without AVX-512, bfloat16
conversions flush subnormals on CPUs with AVX512_BF16, and so on. Every backend worker
measures this once, after building its adapter (so its framework is imported), and sends
it with its hello; every record points at the fingerprint of the worker that produced it.

Invariants
- Plain JSON data, deterministic for one process: the same machine and settings give the
  same fingerprint and the same `fingerprint_id`.
- Knows no framework: the framework part ("frameworks") is what a built-in adapter's own
  probe reports (`kernel_path()`, declared in its class with the facts it defines), and a
  third-party adapter's optional `fingerprint()` is recorded as "adapter". A probe that
  raises becomes `{"error": "..."}` for that part, never a failed worker.
- FTZ/DAZ is *measured* with NumPy float32 arithmetic on subnormals in the calling
  thread (the worker's main thread, where the adapter's Python code runs). Frameworks
  may set FTZ/DAZ only inside their own thread pools or for the duration of an op
  (TensorFlow's ScopedFlushDenormal, XLA's CPU runtime); that is not visible here, and
  is what the suite's `subnormal` cases measure.

`facts(fp)` flattens a fingerprint into the names manifest conditions use
(`when: {tensorflow.onednn: true, cpu.flags: avx512f}`); `CONDITIONS` lists them with
their types: the engine's own (`ENGINE_FACTS`: cpu.*, os.system, ftz, daz, threads) and
every fact a built-in declares (`conformance.adapters.registry.FACTS`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from typing import Any

from conformance.adapters._base import BuiltinAdapter, Fact
from conformance.adapters.registry import FACTS

#: CPU flags that select kernels (x86: /proc/cpuinfo spelling; ARM: the Features line).
KERNEL_FLAGS = ("sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx_vnni_int8", "avx_ne_convert",
                "asimd", "asimdhp", "fphp", "asimddp", "sve", "sve2", "bf16", "i8mm", "sme")
KERNEL_FLAG_PREFIXES = ("avx512", "amx")
#: Environment variables that change a framework's kernel path or threads.
KNOBS = ("TF_ENABLE_ONEDNN_OPTS", "TF_XLA_FLAGS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
         "XLA_FLAGS", "JAX_ENABLE_X64", "JAX_DEFAULT_MATMUL_PRECISION", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
         "OPENBLAS_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE",
         "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY", "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
         "NVIDIA_TF32_OVERRIDE", "CUDA_VISIBLE_DEVICES")

#: The facts of the machine and process every fingerprint has (`facts` reads them).
ENGINE_FACTS: dict[str, Fact] = {
    "cpu.vendor": Fact(str, "CPU vendor (GenuineIntel, AuthenticAMD, ARM, Apple, ...)"),
    "cpu.model": Fact(str, "CPU model name"),
    "cpu.arch": Fact(str, "machine architecture (x86_64, aarch64, arm64)"),
    "cpu.flags": Fact(list, "kernel-selecting ISA flags (avx2, fma, avx512f, avx512_bf16, amx_tile, sve, ...)"),
    "os.system": Fact(str, "operating system (Linux, Darwin, Windows)"),
    "ftz": Fact(bool, "flush-to-zero, measured with NumPy float32 arithmetic in the worker's main thread"),
    "daz": Fact(bool, "denormals-are-zero, measured likewise"),
    "threads": Fact(int, "CPUs usable by the worker"),
}
#: Every condition a manifest `when:` may name: the engine's facts, then each built-in's.
CONDITION_FACTS: dict[str, Fact] = {**ENGINE_FACTS, **FACTS}
#: Condition name -> the type of value it takes (list: names, each present or `!absent`).
CONDITIONS: dict[str, type] = {name: fact.type for name, fact in CONDITION_FACTS.items()}


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (Linux), else {}."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            text = fh.read(200_000)
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu() -> dict[str, Any]:
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    model = info.get("model name") or info.get("Model") or platform.processor() or ""
    if not model and sys.platform == "darwin":
        import subprocess

        try:
            model = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                   timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            model = ""
    vendor = info.get("vendor_id") or ({"0x41": "ARM", "0x61": "Apple", "0x51": "Qualcomm"}.get(
        info.get("CPU implementer", ""), info.get("CPU implementer", "")))
    kept = sorted(f for f in flags if f in KERNEL_FLAGS or f.startswith(KERNEL_FLAG_PREFIXES))
    return {"arch": platform.machine(), "vendor": vendor or "unknown", "model": model or "unknown", "flags": kept}


def threads() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"cpu_count": os.cpu_count(), "usable": usable}


def ftz_daz() -> dict[str, Any]:
    """FTZ and DAZ as NumPy float32 arithmetic sees them in this thread.

    FTZ: half the smallest normal must come out subnormal, not 0. DAZ: a subnormal input
    times 2**20 must come out normal, not 0 (a DAZ unit reads the input as zero).
    """
    import numpy as np

    tiny = np.array([np.finfo(np.float32).tiny], dtype=np.float32)
    sub = np.array([np.float32(1e-40)], dtype=np.float32)
    ftz = bool((tiny * np.float32(0.5))[0] == 0)
    daz = bool((sub * np.float32(2.0 ** 20))[0] == 0)
    return {"ftz": ftz, "daz": daz, "measured": "NumPy float32 arithmetic in the worker's main thread, after "
                                                "the adapter was built; framework thread pools may differ"}


def kernel_path(adapter: Any) -> dict[str, Any]:
    """A built-in adapter's own kernel-path probe, per framework ({} for other adapters)."""
    if not isinstance(adapter, BuiltinAdapter):
        return {}
    try:
        found = adapter.kernel_path()
    except Exception as exc:  # a probe must not cost the run
        return {adapter.base_name: {"error": f"{type(exc).__name__}: {exc}"}}
    if not isinstance(found, dict):
        return {adapter.base_name: {"error": f"kernel_path() returned {type(found).__name__}, expected a dict"}}
    return found


def fingerprint(adapter: Any = None) -> dict[str, Any]:
    """This process's fingerprint: the machine, the process, and the adapter's kernel path
    (a built-in's `kernel_path()` as "frameworks"; any adapter's optional `fingerprint()`,
    a dict, as "adapter")."""
    import numpy

    fp: dict[str, Any] = {
        "cpu": cpu(), "threads": threads(),
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "python": sys.version.split()[0], "numpy": numpy.__version__,
        "float": ftz_daz(),
        "env": {k: os.environ[k] for k in KNOBS if k in os.environ},
        "frameworks": kernel_path(adapter),
    }
    method = getattr(adapter, "fingerprint", None)
    if callable(method):
        try:
            extra = method()
            fp["adapter"] = _plain(extra) if isinstance(extra, dict) else {
                "error": f"fingerprint() returned {type(extra).__name__}, expected a dict"}
        except Exception as exc:
            fp["adapter"] = {"error": f"{type(exc).__name__}: {exc}"}
    return _plain(fp)


def _plain(obj: Any) -> Any:
    """JSON types only (an adapter may return anything)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else str(obj)
    return str(obj)


def fingerprint_id(fp: dict[str, Any]) -> str:
    """A short stable id of a fingerprint (12 hex digits of a SHA-256 of its canonical JSON)."""
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:12]


def facts(fp: dict[str, Any] | None) -> dict[str, Any]:
    """The condition names of CONDITIONS with their values in `fp` (absent: unknown)."""
    if not fp:
        return {}
    out: dict[str, Any] = {}
    c = fp.get("cpu") or {}
    for key in ("vendor", "model", "arch"):
        if c.get(key) is not None:
            out[f"cpu.{key}"] = c[key]
    if isinstance(c.get("flags"), list):
        out["cpu.flags"] = list(c["flags"])
    if (fp.get("os") or {}).get("system"):
        out["os.system"] = fp["os"]["system"]
    f = fp.get("float") or {}
    for key in ("ftz", "daz"):
        if isinstance(f.get(key), bool):
            out[key] = f[key]
    if isinstance((fp.get("threads") or {}).get("usable"), int):
        out["threads"] = fp["threads"]["usable"]
    # A built-in's probe: {"torch": {"mkldnn": false, ...}} gives torch.mkldnn.
    for framework, found in (fp.get("frameworks") or {}).items():
        for key, value in (found.items() if isinstance(found, dict) else ()):
            name = f"{framework}.{key}"
            if name in CONDITIONS and _typed(value, CONDITIONS[name]):
                out[name] = value
    # An adapter (or variant) may state its own kernel path, e.g. {"tensorflow.onednn": true}.
    for key, value in (fp.get("adapter") or {}).items():
        if key in CONDITIONS and value is not None:
            out[key] = value
    return out


def _typed(value: Any, kind: type) -> bool:
    """Whether a probe's value is of the condition's type (None, the framework did not say: no)."""
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def machine_line(fp: dict[str, Any] | None) -> str:
    """CPU, the flags that select kernels, threads and OS, on one line."""
    if not fp or "cpu" not in fp:
        return "environment not recorded" + (f" ({fp['error']})" if fp and fp.get("error") else "")
    c = fp["cpu"]
    flags = [f for f in c.get("flags") or [] if f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16",
                                                         "amx_tile", "sve", "sve2", "asimd")]
    return (f"{c.get('vendor')} {c.get('model')} ({c.get('arch')}; {' '.join(flags) or 'no AVX2/AVX-512'}), "
            f"{(fp.get('threads') or {}).get('usable')} threads, {(fp.get('os') or {}).get('system')}")


def path_line(fp: dict[str, Any] | None) -> str:
    """FTZ/DAZ and each framework's build and kernel path, on one line."""
    if not fp or "float" not in fp:
        return "kernel path not recorded"
    fl = fp["float"]
    parts = [f"FTZ {'on' if fl.get('ftz') else 'off'}, DAZ {'on' if fl.get('daz') else 'off'}"]
    for framework, found in (fp.get("frameworks") or {}).items():
        if not isinstance(found, dict):
            continue
        if "error" in found:
            parts.append(f"{framework} probe failed: {found['error']}")
            continue
        shown = [f"{key} {_shown(value)}" for key, value in found.items() if f"{framework}.{key}" in CONDITIONS]
        parts.append(f"{framework} {found.get('version')}" + (f": {', '.join(shown)}" if shown else ""))
    for key, value in (fp.get("adapter") or {}).items():
        parts.append(f"{key}={value}")
    return "; ".join(parts)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return "+".join(map(str, value)) or "none"
    return "?" if value is None else str(value)


def summary(fp: dict[str, Any] | None) -> str:
    """machine_line and path_line together."""
    return f"{machine_line(fp)}; {path_line(fp)}"


def differences(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """The condition facts that differ between two fingerprints, as 'name: A != B' lines."""
    fa, fb = facts(a), facts(b)
    out = []
    for key, kind in CONDITIONS.items():
        if kind is list:
            sa, sb = set(fa.get(key) or []), set(fb.get(key) or [])
            if sa != sb:
                out.append(f"{key}: {' '.join(sorted(sa - sb)) or '-'} only in one, "
                           f"{' '.join(sorted(sb - sa)) or '-'} only in the other")
        elif fa.get(key) != fb.get(key) and key in fa and key in fb:
            out.append(f"{key}: {fa[key]!r} != {fb[key]!r}")
    return out
