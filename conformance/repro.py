"""Standalone repro scripts and paste-ready bug reports (`conformance repro`).

`make_script(case, adapter)` writes a Python script that a framework maintainer can run
with nothing but NumPy and that one framework:
1. the exact inputs, inlined as base64 of their raw little-endian bytes (zlib-compressed),
   decoded to the case dtype (bfloat16 arrays need `ml_dtypes`, which JAX and TensorFlow
   install; the reference reads the same bits as float32 by a 16-bit shift, no import).
   Inputs above MAX_INLINE_BYTES (real layers: megabytes) are instead regenerated inside
   the script from the case's seed by the same few NumPy calls `conformance.inputs` makes
   (PCG64, `standard_normal`), and verified by their SHA-256: a NumPy whose generator
   gives other numbers makes the script stop with exit status 2, never judge other inputs;
2. the framework call, exactly `adapter.repro_code(case)` (the very code the built-in
   adapters run); an adapter without `repro_code` (a third-party one) is instead loaded by
   its spec (`module:Class` or `path/to/file.py:Class`) and its `run()` called, so the
   script then also needs that adapter importable;
3. a small reference: the DESIGN.md formula in NumPy, pads, strides and sizes written as
   literals, accumulated in float64 (`np.longdouble` for float64 cases, so the reference
   stays more precise than what it judges where the platform's long double is wider);
4. the check: the suite's own per-element rule, `conformance/_rule.py` embedded verbatim
   (NumPy only), with the case's parameters (`tolerance.rule_params`) and the precision
   contract written as literals. So the script applies exactly the suite's rule for every
   kind: the element limits of the contract (sqrt(K), cancellation-aware sigma and
   round-once bounds), the accepted overflows, the IEEE alternative of padded taps and
   the rounding-bias sign test. It prints expected vs actual (shape, max abs error, the
   worst elements) and exits 1 when the result diverges (or, for an invalid case, when
   the framework returns instead of raising), 0 otherwise: the suite's verdict.

Invariants
- The script imports nothing of conv-conformance (built-in adapters' repro code imports
  only NumPy and the framework; the NumPy backend's imports our oracle, being it).
- A script carries its inputs or the means to regenerate them exactly (seed, generator,
  checksum), so it reproduces on a machine without this suite. Large inputs of a profile
  other than `normal` (`REGENERATED_PROFILES`) raise ReproError: run `conformance repro`
  on the minimised case instead.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import platform
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import _rule, tolerance
from .spec import Case

#: Inputs larger than this (raw bytes of x, filters and bias together) are not inlined.
MAX_INLINE_BYTES = 1 << 20
#: A bug report embeds the script when it is at most this long (else: attach it).
MAX_EMBED_CHARS = 64 << 10
WORST_SHOWN = 5
#: Profiles whose inputs a script can regenerate from the seed instead of inlining them.
REGENERATED_PROFILES = ("normal",)


class ReproError(ValueError):
    """A repro script cannot be written for this case (too large, unusable adapter)."""


# ---- the script ----------------------------------------------------------------------


def _blob(arr: np.ndarray) -> str:
    raw = np.ascontiguousarray(arr)
    data = raw.view(np.uint16) if raw.dtype.name == "bfloat16" else raw
    text = base64.b64encode(zlib.compress(data.astype(data.dtype.newbyteorder("<")).tobytes(), 9)).decode()
    chunks = textwrap.wrap(text, 88) or [""]
    return "(\n" + "".join(f'    "{c}"\n' for c in chunks) + ")"


def _array_literal(name: str, arr: np.ndarray | None, case: Case) -> str:
    if arr is None:
        return f"{name} = None\n"
    storage = "<u2" if case.dtype == "bfloat16" else np.dtype(arr.dtype).newbyteorder("<").str
    return f"{name} = _decode({_blob(arr)}, {storage!r}, {tuple(arr.shape)!r})\n"


def _input_bytes(arr: np.ndarray) -> bytes:
    data = arr.view(np.uint16) if arr.dtype.name == "bfloat16" else arr
    return np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes()


def inputs_checksum(x: np.ndarray, filters: np.ndarray, bias: np.ndarray | None) -> str:
    """SHA-256 of the inputs' little-endian bytes, x then filters then bias (as the script computes it)."""
    h = hashlib.sha256()
    for a in (x, filters, bias):
        if a is not None:
            h.update(_input_bytes(a))
    return h.hexdigest()


def _seed(case: Case) -> int:
    # conformance.inputs.rng_for(case): PCG64 seeded with the first 16 bytes of SHA-256(id + "|").
    return int.from_bytes(hashlib.sha256(f"{case.id}|".encode()).digest()[:16], "little")


_GENERATED = '''\
# The inputs are {nbytes:,} bytes: instead of inlining them, this script regenerates them
# exactly as conv-conformance made them (profile "normal": x ~ N(0, 1), filters ~ N(0, 1/K),
# bias ~ N(0, 1), from one PCG64 stream seeded per case), then checks their SHA-256.
import hashlib

SEED = {seed:#x}
INPUTS_SHA256 = "{checksum}"


def _generate():
    rng = np.random.Generator(np.random.PCG64(SEED))
    x = rng.standard_normal({x_shape!r})
    w = rng.standard_normal({f_shape!r}) / np.sqrt({k})
    b = rng.standard_normal({channels})
    if DTYPE == "bfloat16":
        import ml_dtypes  # bfloat16 arrays for the framework (installed with JAX and TensorFlow)

        dt = ml_dtypes.bfloat16
    else:
        dt = np.dtype(DTYPE)
    return x.astype(dt), w.astype(dt), (b.astype(dt) if {bias} else None)


def _checksum(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            data = a.view(np.uint16) if a.dtype.name == "bfloat16" else a
            h.update(np.ascontiguousarray(data).astype(data.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


x, filters, bias = _generate()
if _checksum(x, filters, bias) != INPUTS_SHA256:
    print(f"CANNOT JUDGE: the regenerated inputs differ from the ones conv-conformance used (NumPy "
          f"{{np.__version__}} generates other numbers from this seed); run `conformance repro` with the suite")
    sys.exit(2)
'''


def _generated_inputs(case: Case, inputs: Any, nbytes: int) -> str:
    return _GENERATED.format(nbytes=nbytes, seed=_seed(case), checksum=inputs_checksum(*inputs),
                             x_shape=tuple(case.input_shape), f_shape=tuple(case.filter_shape),
                             k=max(case.reduction_size, 1), channels=case.output_channels, bias=bool(case.bias))


def _spec_of(adapter: Any) -> str:
    """module:Class for an importable adapter class, path/to/file.py:Class otherwise."""
    import importlib.util

    cls = type(adapter)
    module = sys.modules.get(cls.__module__)
    # The registry loads path/to/file.py adapters under a private module name that a
    # fresh interpreter cannot import: those are named by their file.
    private = cls.__module__ == "__main__" or cls.__module__.startswith("conformance_user_adapter_")
    try:
        importable = not private and importlib.util.find_spec(cls.__module__) is not None
    except (ImportError, ValueError):
        importable = False
    if importable:
        return f"{cls.__module__}:{cls.__qualname__}"
    path = getattr(module, "__file__", None)
    if path is None:
        raise ReproError(f"adapter {getattr(adapter, 'name', cls.__name__)!r} has no repro_code() and its class "
                         f"{cls.__qualname__} cannot be imported again: expected a spec (module:Class or file.py:Class)")
    return f"{Path(path).resolve()}:{cls.__qualname__}"


_LOAD_ADAPTER = '''\
# This adapter has no repro_code(): load it by its spec and call its run().
# (Needs the adapter importable here; the case is passed as a plain namespace.)
import importlib
import importlib.util
import types

SPEC = {spec!r}


def _load_adapter(spec):
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        mspec = importlib.util.spec_from_file_location("repro_adapter", target)
        module = importlib.util.module_from_spec(mspec)
        mspec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    obj = getattr(module, attr)
    return obj() if isinstance(obj, type) or not hasattr(obj, "run") else obj  # a class or a factory


_geometry = types.SimpleNamespace(out_h={out_h}, out_w={out_w}, pads={pads!r}, effective_kernel={eff!r})
case = types.SimpleNamespace(id={case_id!r}, geometry=_geometry, is_valid={valid!r}, invalid_reason={invalid!r},
                             input_shape={in_shape!r}, filter_shape={f_shape!r}, output_shape={out_shape!r},
                             **{fields!r})
y = _load_adapter(SPEC).run(case, x, filters, bias)
'''


def _framework_code(case: Case, adapter: Any, spec: str | None) -> str:
    repro_code = getattr(adapter, "repro_code", None)
    if callable(repro_code):
        return str(repro_code(case)).rstrip("\n") + "\n"
    g = case.geometry
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in case.to_dict().items()
              if k not in ("name", "reason")}
    if isinstance(case.padding, tuple):
        fields["padding"] = case.padding
    return _LOAD_ADAPTER.format(spec=spec or _spec_of(adapter), out_h=g.out_h, out_w=g.out_w, pads=g.pads,
                                eff=g.effective_kernel, case_id=case.id, valid=case.is_valid,
                                invalid=case.invalid_reason, in_shape=case.input_shape,
                                f_shape=case.filter_shape, out_shape=case.output_shape, fields=fields)


_HEADER = '''\
"""Reproduce: {framework} {op} on case {case_id}.

Generated by conv-conformance {version}. Needs only NumPy and {framework}{extra}.
Run: python {{this file}}. Exit status 0: the result is right; 1: it diverges{invalid_note}.
The reference below is the formula of the convolution written out in NumPy; the check is
conv-conformance's own rule (embedded below), under the precision contract `{precision}`.
"""
import base64
import sys
import zlib

import numpy as np

CASE = {case_json}
DTYPE = {dtype!r}
EXPECTED_SHAPE = {out_shape!r}


def _decode(text, storage, shape):
    """Exact inputs: raw little-endian bytes (zlib, base64) -> an array of the case dtype."""
    raw = np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=storage).reshape(shape)
    if DTYPE != "bfloat16":
        return raw.copy()
    import ml_dtypes  # bfloat16 arrays for the framework (installed with JAX and TensorFlow)

    return raw.view(ml_dtypes.bfloat16).copy()


def _as_float64(a):
    if a.dtype.name == "bfloat16":  # bfloat16 is the top half of a float32: exact
        return (a.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return np.asarray(a, dtype=np.float64)


'''

_REFERENCE = '''

# ---- the reference: the convolution formula, in NumPy ------------------------------
KH, KW = {kernel!r}
SH, SW = {strides!r}
DH, DW = {dilations!r}
(PT, PB), (PL, PR) = {pads!r}  # padding {padding!r} resolved as TensorFlow does (odd pixel bottom/right)
OH, OW = {out_h}, {out_w}
ACC = np.longdouble if DTYPE == "float64" else np.float64  # more precise than what it judges


def _tap(patch, w):
    """Contribution of one kernel tap: patch (N, OH, OW, C), w = filters[di, dj]."""
{tap}

def _pow2(a):
    top = float(np.max(a)) if a.size else 0.0
    return float(2.0 ** np.floor(np.log2(top))) if top > 0 else 1.0


def reference(x, filters, bias):
    """(value, alternative, magnitude, norm, unbiased), float64 (N, OH, OW, O).

    alternative skips padded taps; magnitude = sum |x| |w| (+ |bias|); norm =
    sqrt(sum (x w)^2 (+ bias^2)); unbiased = value without the bias.
    """
    x, w = _as_float64(x).astype(ACC), _as_float64(filters).astype(ACC)
    xp = np.pad(x, ((0, 0), (PT, PB), (PL, PR), (0, 0)))
    inside = np.pad(np.ones(x.shape[1:3], bool), ((PT, PB), (PL, PR)))
    ax, aw = np.abs(np.where(np.isfinite(xp), xp, 0)), np.abs(np.where(np.isfinite(w), w, 0))
    sx, sw = _pow2(ax), _pow2(aw)  # squares scaled by powers of two: no under/overflow
    qx, qw = np.square(ax / sx), np.square(aw / sw)
    value = alternative = magnitude = squares = 0
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        for di in range(KH):
            for dj in range(KW):
                rows = slice(di * DH, di * DH + SH * (OH - 1) + 1, SH)
                cols = slice(dj * DW, dj * DW + SW * (OW - 1) + 1, SW)
                term = _tap(xp[:, rows, cols, :], w[di, dj])
                value = value + term
                alternative = alternative + np.where(inside[rows, cols][None, :, :, None], term, 0)
                magnitude = magnitude + _tap(ax[:, rows, cols, :], aw[di, dj])
                squares = squares + _tap(qx[:, rows, cols, :], qw[di, dj])
        unbiased = None
        if bias is not None:
            b = _as_float64(bias).astype(ACC)
            unbiased = np.asarray(value, dtype=np.float64)
            value, alternative = value + b, alternative + b
            ab = np.abs(np.where(np.isfinite(b), b, 0))
            magnitude = magnitude + ab
            squares = squares + np.square(ab / (sx * sw))
        norm = np.sqrt(np.asarray(squares, dtype=np.float64)) * sx * sw
    value, alternative, magnitude = (np.asarray(a, dtype=np.float64) for a in (value, alternative, magnitude))
    finite = np.isfinite(value)
    magnitude, norm = np.where(finite, magnitude, np.inf), np.where(finite, norm, np.inf)
    if np.array_equal(alternative, value, equal_nan=True):
        alternative = None
    return value, alternative, magnitude, norm, unbiased


# ---- the check: conv-conformance's per-element rule (conformance/_rule.py, verbatim) ---
{rule}
# ---- end of conformance/_rule.py ------------------------------------------------------

PARAMS = {params!r}
PRECISION = {precision!r}

ref, alt, mag, norm, unbiased = reference(x, filters, bias)
# The transform contracts' scales (the input tiles' or planes' magnitudes), where they apply.
scales = {{level: transform_scale(PARAMS, level, _as_float64(x), _as_float64(filters),
                                  None if bias is None else _as_float64(bias)) for level in PARAMS["transforms"]}}
y = np.asarray(y)
print(f"case {{CASE['id']}} (precision contract {{PRECISION}})")
print(f"expected: shape {{EXPECTED_SHAPE}}, dtype {{DTYPE}}")
print(f"received: shape {{tuple(y.shape)}}, dtype {{y.dtype}}")
if tuple(y.shape) != EXPECTED_SHAPE:
    print(f"DIVERGES: expected output shape {{EXPECTED_SHAPE}}, received {{tuple(y.shape)}}")
    sys.exit(1)
if y.dtype.name != DTYPE:  # the contract says the case dtype: a divergence whatever the values
    print(f"DIVERGES: expected an output of dtype {{DTYPE}}, received {{y.dtype}}")
    sys.exit(1)
y64 = _as_float64(y)
e, limit, bad = beyond(PARAMS, PRECISION, y64, ref, alt, mag, norm, unbiased, scales)
with np.errstate(invalid="ignore"):
    err = np.where(np.isfinite(ref) & np.isfinite(y64), np.abs(y64 - ref), 0.0)
print(f"max abs error {{err.max():.6g}}; max normalised error {{e.max():.4g}}; "
      f"{{int(bad.sum())}} of {{bad.size}} elements beyond their limit under `{{PRECISION}}`")
ok, why = passes(PARAMS, PRECISION, y64, ref, alt, mag, norm, unbiased, scales)
if ok:
    print("OK: within tolerance")
    sys.exit(0)
if why == "bias":
    z = rounding_bias_z(PARAMS, y64, ref, unbiased, PRECISION)
    print(f"DIVERGES: every element within its limit, but the inexact ones round "
          f"{{'toward' if z > 0 else 'away from'}} zero far beyond chance (sign test z = {{z:.1f}}, "
          f"|z| > {{PARAMS['bias_z']:g}})")
    sys.exit(1)
order = np.argsort(-np.where(bad, e / np.where(limit > 0, limit, 1e-300), -1.0), axis=None, kind="stable")[:{worst}]
for flat in order:
    i = np.unravel_index(flat, e.shape)
    if bad[i]:
        print(f"  at {{tuple(int(v) for v in i)}}: expected {{float(ref[i])!r}}, received {{float(y64[i])!r}}, "
              f"normalised error {{e[i]:.4g}} (limit {{limit[i]:.4g}})")
met = strongest_met(PARAMS, y64, ref, alt, mag, norm, unbiased, scales)
if met is not None and met in weaker(PARAMS, PRECISION):
    print(f"DIVERGES: meets `{{met}}`, not `{{PRECISION}}`")
else:
    print("DIVERGES")
sys.exit(1)
'''

_TAP_CONV = '''\
    groups, cg, og = {groups}, {cg}, {og}
    return np.concatenate([patch[..., g * cg:(g + 1) * cg] @ w[:, g * og:(g + 1) * og]
                           for g in range(groups)], axis=-1)
'''
_TAP_DW = '''\
    n, oh, ow, c = patch.shape
    return np.einsum("nhwc,cm->nhwcm", patch, w).reshape(n, oh, ow, c * w.shape[1])  # channel k*M + q
'''

_INVALID = '''
# An invalid case: {reason}. A correct framework raises.
try:
{body}except Exception as exc:
    print(f"OK: raised as expected: {{type(exc).__name__}}: {{exc}}")
    sys.exit(0)
print(f"DIVERGES: an invalid case ({reason}) returned an output of shape {{tuple(y.shape)}} instead of raising")
sys.exit(1)
'''


def rule_source() -> str:
    """The source of conformance/_rule.py, embedded verbatim in every script."""
    return Path(_rule.__file__).read_text(encoding="utf-8")


def make_script(case: Case, adapter: Any, *, spec: str | None = None,
                precision: str = tolerance.DEFAULT_PRECISION) -> str:
    """A standalone repro script for `case` on `adapter` (see the module docstring), judging
    under the contract `precision`.

    `spec` is how to load an adapter that has no `repro_code` (defaults to its class).
    Raises ReproError when the inputs are too large to inline.
    """
    tolerance.check_precision(precision)
    from . import __version__
    from .inputs import make_inputs

    size = math.prod(case.input_shape) + math.prod(case.filter_shape) + (case.output_channels if case.bias else 0)
    nbytes = size * (2 if case.dtype in ("float16", "bfloat16") else 4 if case.dtype == "float32" else 8)
    regenerate = nbytes > MAX_INLINE_BYTES
    if regenerate and case.profile not in REGENERATED_PROFILES:
        raise ReproError(f"case {case.id}: expected inputs of at most {MAX_INLINE_BYTES} bytes to inline in a "
                         f"script, or of a profile the script regenerates ({', '.join(REGENERATED_PROFILES)}), "
                         f"received {nbytes} bytes of profile {case.profile!r}; run `conformance repro` on the "
                         "minimised case instead")
    inputs = make_inputs(case)
    framework = str(getattr(adapter, "framework", "") or getattr(adapter, "name", "the framework"))
    parts = [_HEADER.format(framework=framework, op=case.op, case_id=case.id, version=__version__,
                            extra=" (and ml_dtypes for bfloat16)" if case.dtype == "bfloat16" else "",
                            invalid_note=" (the framework returned instead of raising)" if not case.is_valid else "",
                            case_json=repr({"id": case.id, **{k: v for k, v in case.to_dict().items() if k not in ("name", "reason")}}),
                            dtype=case.dtype, out_shape=tuple(case.output_shape), precision=precision)]
    parts.append("# ---- the exact inputs (canonical: x (N, H, W, C), filters "
                 + ("(kh, kw, C/groups, O)" if case.op == "conv2d" else "(kh, kw, C, M)") + ") ----\n")
    if regenerate:
        parts.append(_generated_inputs(case, inputs, nbytes))
    else:
        parts += [_array_literal("x", inputs.x, case), _array_literal("filters", inputs.filters, case),
                  _array_literal("bias", inputs.bias, case)]
    code = _framework_code(case, adapter, spec)
    parts.append(f"\n# ---- the framework call ({framework}) ----\n")
    if not case.is_valid:
        parts.append(_INVALID.format(reason=case.invalid_reason, body=textwrap.indent(code, "    ")))
        return "".join(parts)
    parts.append(code)
    g = case.geometry
    if case.op == "conv2d":
        tap = _TAP_CONV.format(groups=case.groups, cg=case.filter_in_channels, og=case.out_channels // case.groups)
    else:
        tap = _TAP_DW
    text = _REFERENCE.format(kernel=case.kernel, strides=case.strides, dilations=case.dilations, pads=g.pads,
                             padding=case.padding, out_h=g.out_h, out_w=g.out_w, tap=tap, worst=WORST_SHOWN,
                             params=tolerance.rule_params(case), precision=precision, rule="{rule}")
    parts.append(text.replace("{rule}", rule_source()))
    return "".join(parts)


# ---- the bug report ----------------------------------------------------------------


def environment(adapter: Any) -> dict[str, str]:
    """OS, CPU (with the kernel-selecting flags), Python, NumPy, the framework's version, the
    device and its kernel path (FTZ/DAZ, oneDNN, ...: conformance.fingerprint), as display strings."""
    from .fingerprint import fingerprint, machine_line, path_line

    name = str(getattr(adapter, "name", "backend"))
    version = str(adapter.version())  # imports the framework: the fingerprint then sees it
    fp = fingerprint(adapter)
    return {"OS": platform.platform(), "CPU": machine_line(fp),
            "Python": sys.version.split()[0], "NumPy": np.__version__,
            name: version, "Device": str(adapter.device()), "Kernel path": path_line(fp)}


def _fmt(v: Any) -> str:
    if v is None:
        return "inf"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _padding_text(case: Case) -> str:
    (t, b), (l, r) = case.geometry.pads
    return f"{case.padding} (pads top {t}, bottom {b}, left {l}, right {r})"


def _parameters(case: Case) -> list[tuple[str, str]]:
    rows = [("op", case.op), ("input x (N, H, W, C)", str(case.input_shape)),
            ("filters " + ("(kh, kw, C/groups, O)" if case.op == "conv2d" else "(kh, kw, C, M)"),
             str(case.filter_shape))]
    if case.op == "conv2d":
        rows.append(("groups", str(case.groups)))
    else:
        rows.append(("channel multiplier", str(case.channel_multiplier)))
    rows += [("strides", str(tuple(case.strides))), ("dilations", str(tuple(case.dilations))),
             ("padding", _padding_text(case)), ("dtype", case.dtype), ("data format (internal)", case.data_format),
             ("value profile", case.profile), ("bias", "yes" if case.bias else "no"),
             ("expected output (N, OH, OW, O)", str(case.output_shape))]
    return rows


def bug_report(case: Case, adapter: Any, comparison: Any, diagnosis: Any = None, *, outcome: Any = None,
               spec: str | None = None) -> str:
    """A Markdown issue body: environment, the minimal case, the call, observed vs expected, why.

    `comparison` is a `compare.Comparison` (None when the backend raised: pass the
    `inprocess.Outcome` as `outcome` for its message); `diagnosis` a Diagnosis or its dict.
    """
    if diagnosis is not None and not isinstance(diagnosis, dict):
        diagnosis = diagnosis.to_dict()
    name = str(getattr(adapter, "name", "backend"))
    kind = getattr(comparison, "kind", None) or getattr(outcome, "status", None) or "divergence"
    out = [f"## {name}: `{case.op}` gives a wrong result ({kind}) on a small case", ""]
    summary = getattr(comparison, "message", None) or getattr(outcome, "message", "")
    out += [f"`{case.op}` with the parameters below does not match the mathematically exact result: {summary}.",
            "Found by conv-conformance, against an exact NumPy reference.", ""]
    out += ["### Environment", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in environment(adapter).items()]
    out += ["", "### Minimal case", "", f"Case id: `{case.id}`", "", "| parameter | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in _parameters(case)]
    if not case.is_valid:
        out += ["", f"This case is **invalid** ({case.invalid_reason}): no correct output exists, so the expected "
                    "behaviour is an error."]
    try:
        code = _framework_code(case, adapter, spec)
    except ReproError as exc:
        code = f"# (no framework call available: {exc})\n"
    out += ["", "### The framework call", "", "Given NumPy arrays `x` (N, H, W, C), `filters` and `bias` "
            "(canonical TensorFlow layouts, in the case dtype), this computes `y`:", "", "```python", code.rstrip(),
            "```", "", "### Observed vs expected", ""]
    figures = getattr(comparison, "figures", None) or {}
    if "expected_shape" in figures:
        out.append(f"- expected output shape {tuple(figures['expected_shape'])}, observed "
                   f"{tuple(figures['actual_shape'])}")
    if summary:
        out.append(f"- {summary}")
    if outcome is not None and getattr(outcome, "error", None):
        out += ["", "```", outcome.error.rstrip(), "```"]
    shown = [k for k in ("elements", "mismatched", "max_abs_error", "max_rel_error", "max_ulp",
                         "max_normalised_error", "threshold", "hard_bound", "effective_bits", "dtype_bits")
             if k in figures]
    if shown:
        out += ["", "| figure | value |", "|---|---|"] + [
            f"| {k} | {'n/a' if k == 'effective_bits' and figures[k] is None else _fmt(figures[k])} |" for k in shown]
        precision = getattr(comparison, "precision", None) or tolerance.DEFAULT_PRECISION
        out += ["", "The normalised error of an element is |y - exact| / (u · Σ|x||w| + underflow floor), u the "
                    "unit roundoff of the dtype. A correct implementation, whatever its summation order, stays "
                    f"below the threshold {tolerance.threshold_text()} (K products per output; zero for exactly "
                    "representable results), within "
                    f"{tolerance.SIGMA_LIMIT:g} standard deviations of a correct sum's rounding error, and can "
                    "never exceed the hard bound ≈ K + 1 (the rigorous worst case). "
                    f"Judged under the precision contract `{precision}`"
                    + (" (16-bit types accumulated in at least float32 and rounded once to the dtype, once more "
                       "for a separately added bias)" if precision == "strict" else "") + "."]
    worst = getattr(comparison, "worst", None) or []
    if worst:
        out += ["", "Worst elements (index is (n, row, column, channel) of the NHWC output):", "",
                "| index | expected | observed | normalised error |", "|---|---|---|---|"]
        out += [f"| {tuple(w['index'])} | {_fmt(w['expected'])} | {_fmt(w['actual'])} | "
                f"{_fmt(w['normalised_error'])} |" for w in worst[:WORST_SHOWN]]
    if diagnosis:
        out += ["", "### Diagnosis", "", f"Most likely: **{diagnosis.get('hypothesis') or 'unexplained'}**. "
                f"{diagnosis.get('explanation') or ''}".rstrip()]
    out += ["", "### Reproduce", ""]
    try:
        script = make_script(case, adapter, spec=spec,
                             precision=getattr(comparison, "precision", None) or tolerance.DEFAULT_PRECISION)
    except ReproError as exc:
        out.append(f"No standalone script: {exc}.")
    else:
        if len(script) <= MAX_EMBED_CHARS:
            out += ["Save as `repro.py` and run `python repro.py` (NumPy and the framework only; it embeds the "
                    "exact inputs and exits 1 while the bug is present).", "",
                    "<details><summary>repro.py</summary>", "", "```python", script.rstrip(), "```", "", "</details>"]
        else:
            out.append(f"The repro script is {len(script)} characters: attach it (`conformance repro {case.id} "
                       f"--backend {spec or name} --out repro.py`).")
    return "\n".join(out) + "\n"


# ---- the CLI: conformance repro CASE --backend B ------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("case", metavar="CASE", nargs="?",
                        help="a case id (of the default/full set or the catalogue) or a YAML case file with one case")
    parser.add_argument("--finding", metavar="ID",
                        help="instead of CASE: a finding of a run (its id); --report writes its bug report, "
                             "--out its short repro script")
    parser.add_argument("--results", metavar="RESULTS_JSON", default="reports/results.json",
                        help="the run whose finding --finding names (default reports/results.json)")
    parser.add_argument("--backend", required=True, metavar="SPEC",
                        help="built-in name, entry-point name, module:Class or path/to/file.py:Class")
    parser.add_argument("--out", metavar="FILE", help="write the script here (default: stdout)")
    parser.add_argument("--precision", choices=tolerance.PRECISIONS, default=tolerance.DEFAULT_PRECISION,
                        help=f"precision contract the script judges under (default {tolerance.DEFAULT_PRECISION})")
    parser.add_argument("--report", metavar="FILE",
                        help="also run the case here (in this process) and write a Markdown bug report")


def resolve_case(selector: str) -> Case:
    """The one case `selector` names (an id or a one-case file). ValueError with a clear message otherwise."""
    from .cases.sets import select

    cases = list(select(selector))
    if not cases:
        raise ValueError(f"case: expected an id of the default/full set or catalogue, or a case file, received "
                         f"{selector!r}, which matches nothing")
    if len(cases) > 1:
        ids = ", ".join(c.id for c in cases[:5]) + (", ..." if len(cases) > 5 else "")
        raise ValueError(f"case: expected one case, received {selector!r}, which matches {len(cases)} ({ids})")
    return cases[0]


def written_message(path: str, case_id: str, backend: str, outcome) -> str:
    """What `python PATH` will do, from this process's verdict on the case (inprocess.Outcome)."""
    if outcome.status == "diverge":
        return f"python {path} exits 1 while {case_id} diverges on {backend} ({outcome.kind}, as here)"
    if outcome.status == "pass":
        return (f"{case_id} passes on {backend} here, so python {path} exits 0; it exits 1 where the case "
                f"diverges (another version, device or machine)")
    if outcome.status == "unsupported":
        return f"{case_id} is unsupported on {backend} here ({outcome.message}); the script may not run"
    return f"{case_id} raises on {backend} here, so python {path} fails with that exception ({outcome.message})"


def load_backend(spec: str) -> Any:
    """The adapter `--backend SPEC` names, or None after saying why on stderr (exit 2)."""
    from .adapters.registry import load

    try:
        return load(spec)
    except ValueError as exc:
        print(f"conformance repro: --backend: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace) -> int:
    """0: script (and report) written; 2: unknown case or backend, or a case too large to inline."""
    if args.finding:
        from .short_repro import run_finding

        return run_finding(args)
    if not args.case:
        print("conformance repro: expected a CASE (an id or a case file) or --finding ID, received neither",
              file=sys.stderr)
        return 2
    try:
        case = resolve_case(args.case)
    except ValueError as exc:
        print(f"conformance repro: {exc}", file=sys.stderr)
        return 2
    adapter = load_backend(args.backend)
    if adapter is None:
        return 2
    try:
        script = make_script(case, adapter, spec=args.backend, precision=args.precision)
    except ReproError as exc:
        print(f"conformance repro: {exc}", file=sys.stderr)
        return 2
    outcome = None
    if args.out or args.report:
        from .inprocess import judge

        outcome = judge(case, adapter, precision=args.precision)
    if args.out:
        Path(args.out).write_text(script, encoding="utf-8")
        print(f"wrote {args.out}: {written_message(args.out, case.id, adapter.name, outcome)}", file=sys.stderr)
    else:
        sys.stdout.write(script)
    if args.report:
        if outcome.status in ("pass", "unsupported"):
            print(f"note: {case.id} gives {outcome.status} on {adapter.name} here ({outcome.message})",
                  file=sys.stderr)
        Path(args.report).write_text(bug_report(case, adapter, outcome.comparison, outcome.diagnosis,
                                                outcome=outcome, spec=args.backend), encoding="utf-8")
        print(f"wrote {args.report}", file=sys.stderr)
    return 0
