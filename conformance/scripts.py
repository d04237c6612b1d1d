"""Repro scripts: the full one of a case and the short one of a finding.

Both are standalone Python scripts that need only NumPy and one framework, import
nothing of conv-conformance, and exit with the suite's verdict: 0 while the result is
right, 1 while it diverges. The framework call in each is `framework_code(case, adapter)`:
exactly `adapter.repro_code(case)` (the very code the built-in adapters run), or for an
adapter without it (a third-party one), code that loads the adapter by its spec
(`module:Class` or `path/to/file.py:Class`) and calls its `run()`, so the script then
also needs that adapter importable.

The full script (`make_script(case, adapter)`, `conformance repro`, the run's repro/):
1. the exact inputs, inlined as base64 of their raw little-endian bytes (zlib-compressed),
   decoded to the case dtype (bfloat16 arrays need `ml_dtypes`, which JAX and TensorFlow
   install; the reference reads the same bits as float32 by a 16-bit shift, no import).
   Inputs above MAX_INLINE_BYTES (real layers: megabytes) are instead regenerated inside
   the script from the case's seed by the same few NumPy calls `conformance.inputs` makes
   (PCG64, `standard_normal`), and verified by their SHA-256: a NumPy whose generator
   gives other numbers makes the script stop with exit status 2, never judge other inputs;
2. the framework call; for a `nondeterministic` divergence (`calls` > 1) it is made that
   many times, each on its own copy of the inputs, and a later output that differs from
   the first in value (not in a NaN's payload or a zero's sign) makes the script exit 1
   while the first is within tolerance, as the suite's repeats judge (`repeats`);
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

The short script (`make_short_script(case, adapter)`, a finding's, what a maintainer
pastes into an issue; at most about 40 lines):
1. the suite's judging rule, `conformance/_rule.py` verbatim, as one compressed line that
   it executes: the script judges under the one rule, never a second one;
2. the inputs: for the `normal` profile generated in the script (the case's PCG64 seed,
   checked by SHA-256), else written out (small inputs only);
3. the framework call, under `warnings.catch_warnings`: the framework's version, the
   kernel path the suite saw (e.g. TensorFlow oneDNN on) and its own warnings are printed;
4. the expected result by the formula in float64 (its value, magnitude and norm, what
   the rule needs), and the verdict: `passes` of the rule under the contract, the worst
   element printed, exit 1 while it diverges. `exit_code_for` checks, on the output the
   suite judged, that the script agrees with the verdict.

Invariants
- A script imports nothing of conv-conformance (built-in adapters' repro code imports
  only NumPy and the framework; the NumPy backend's imports our oracle, being it).
- A full script carries its inputs or the means to regenerate them exactly (seed,
  generator, checksum), so it reproduces on a machine without this suite. Large inputs
  of a profile other than `normal` (`REGENERATED_PROFILES`) raise ReproError: run
  `conformance repro` on the minimised case instead. A short script generates the inputs
  of the normal profile and writes out small ones of other profiles (`MAX_ELEMENTS`, else
  ShortReproError).
- This module is below the worker: a worker process writes the scripts of its own
  adapter (`process.worker`), and the bug reports (`bug_reports`) embed them.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import math
import sys
import textwrap
import threading
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from . import _rule, tolerance
from .dtypes import fmt
from .inputs import make_inputs
from .repro_formulas import reference_source
from .spec import FORWARD_OPS, Case


def operand_layouts(case: Case) -> list[tuple[str, str]]:
    """(name, canonical layout) of each operand of the case's op, in `case.operands` order."""
    depthwise = case.forward_op == "depthwise_conv2d"
    layouts = {"x": "(N, H, W, C)", "filters": "(kh, kw, C, M)" if depthwise else "(kh, kw, C/groups, O)",
               "dy": "(N, OH, OW, C*M)" if depthwise else "(N, OH, OW, O)", "pointwise": "(1, 1, C*M, O)",
               "bias": "(O,)" if case.forward_op == "conv2d" or case.op == "separable_conv2d" else "(C*M,)"}
    return [(name, layouts[name]) for name in case.operands]


# ---- the full script of a case ----------------------------------------------------------

#: Inputs larger than this (raw bytes of x, filters and bias together) are not inlined.
MAX_INLINE_BYTES = 1 << 20
WORST_SHOWN = 5
#: Profiles whose inputs a script can regenerate from the seed instead of inlining them.
REGENERATED_PROFILES = ("normal",)


class ReproError(ValueError):
    """A repro script cannot be written for this case (too large, unusable adapter)."""




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


_geometry = types.SimpleNamespace(out_h={out_h}, out_w={out_w}, pads={pads!r}, effective_kernel={eff!r},
                                  output_padding={unread!r})
case = types.SimpleNamespace(id={case_id!r}, geometry=_geometry, is_valid={valid!r}, invalid_reason={invalid!r},
                             input_shape={in_shape!r}, filter_shape={f_shape!r}, output_shape={out_shape!r},
                             conv_output_shape={conv_shape!r}, operands={operands!r}, forward_op={forward!r},
                             **{fields!r})
adapter = _load_adapter(SPEC)
'''
#: The call of a loaded adapter (after `_LOAD_ADAPTER`), with the op's operands: the one line a
#: repeated call repeats.
_LOADED_CALL = "y = adapter.run(case, {operands})\n"


def framework_code(case: Case, adapter: Any, spec: str | None) -> str:
    """The framework call of a script: `adapter.repro_code(case)`, or for an adapter without
    it, code that loads the adapter by its spec and calls its run()."""
    return "".join(_framework_parts(case, adapter, spec))


def _framework_parts(case: Case, adapter: Any, spec: str | None) -> tuple[str, str]:
    """(setup, call) of `framework_code`: a loaded adapter is built once in the setup and
    its run() is the call; a repro_code() snippet is all call (it is the framework's own
    source, whose setup this module cannot tell apart)."""
    repro_code = getattr(adapter, "repro_code", None)
    if callable(repro_code):
        return "", str(repro_code(case)).rstrip("\n") + "\n"
    g = case.geometry
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in case.to_dict().items()
              if k not in ("name", "reason")}
    if isinstance(case.padding, tuple):
        fields["padding"] = case.padding
    return _LOAD_ADAPTER.format(spec=spec or _spec_of(adapter), out_h=g.out_h, out_w=g.out_w, pads=g.pads,
                                eff=g.effective_kernel, case_id=case.id, valid=case.is_valid,
                                invalid=case.invalid_reason, in_shape=case.input_shape,
                                f_shape=case.filter_shape, out_shape=case.output_shape, fields=fields,
                                unread=g.output_padding, conv_shape=case.conv_output_shape, operands=case.operands,
                                forward=case.forward_op), \
        _LOADED_CALL.format(operands=", ".join(case.operands))


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
'''

_CHECK = '''

# ---- the check: conv-conformance's per-element rule (conformance/_rule.py, verbatim) ---
{rule}
# ---- end of conformance/_rule.py ------------------------------------------------------

PARAMS = {params!r}
PRECISION = {precision!r}

ref, alt, mag, norm, unbiased = reference({operands})
# The transform contracts' scales (the input tiles' or planes' magnitudes), where they apply.
scales = {scales}
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
{repeat_check}    print("OK: within tolerance")
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

_REPEATED_CALL = '''\
# conv-conformance saw calls with the same inputs give different results: the call is made
# {calls} times, each on its own copy of the inputs, and every output must equal the first.{rebuilt}
CALLS = {calls}
_inputs = ({operands},)
outputs = []
for _call in range(CALLS):
    {operands}, = (None if a is None else a.copy() for a in _inputs)
{code}    outputs.append(y)
{operands}, = _inputs
y = outputs[0]
'''

_REBUILT = ("\n# (conv-conformance keeps a framework's model or session between calls; code that builds one\n"
            "# builds it again here, on each call.)")

# Inside `if ok:` (the first output is within tolerance): what the suite's repeats judge.
_REPEAT_CHECK = '''\
    for n, other in enumerate(outputs[1:], start=2):
        other = np.asarray(other)
        if other.shape != y.shape or other.dtype != y.dtype:
            print(f"DIVERGES: not deterministic: call {n} of {CALLS} returned shape {other.shape}, dtype "
                  f"{other.dtype} where call 1 returned shape {y.shape}, dtype {y.dtype}")
            sys.exit(1)
        b64 = _as_float64(other)
        differ = ~((y64 == b64) | (np.isnan(y64) & np.isnan(b64)))  # NaN payloads and zero signs are not judged
        if differ.any():
            with np.errstate(invalid="ignore"):
                gap = np.where(differ, np.nan_to_num(np.abs(y64 - b64), nan=np.inf), -1.0)
            i = np.unravel_index(int(np.argmax(gap)), gap.shape)
            print(f"DIVERGES: not deterministic: call 1 is within tolerance, but call {n} of {CALLS} with the "
                  f"same inputs differs from it in {int(differ.sum())} of {differ.size} elements, e.g. at "
                  f"{tuple(int(v) for v in i)}: {float(y64[i])!r} then {float(b64[i])!r}")
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
                precision: str = tolerance.DEFAULT_PRECISION, calls: int = 1) -> str:
    """A standalone repro script for `case` on `adapter` (see the module docstring), judging
    under the contract `precision`. With `calls` > 1 (a `nondeterministic` divergence) the
    framework is called that many times, each on its own copy of the inputs, and the script
    exits 1 when a later output differs from the first in value (`repeats`) although the
    first is within tolerance.

    `spec` is how to load an adapter that has no `repro_code` (defaults to its class).
    Raises ReproError when the inputs are too large to inline.
    """
    tolerance.check_precision(precision)
    from . import __version__

    size = sum(math.prod(shape) for shape in case.operand_shapes if shape is not None)
    nbytes = size * (2 if case.dtype in ("float16", "bfloat16") else 4 if case.dtype == "float32" else 8)
    regenerate = nbytes > MAX_INLINE_BYTES
    if regenerate and case.op not in FORWARD_OPS:
        raise ReproError(f"case {case.id}: expected inputs of at most {MAX_INLINE_BYTES} bytes to inline in a "
                         f"script of op {case.op!r} (its scripts do not regenerate inputs), received {nbytes} bytes; "
                         "run `conformance repro` on the minimised case instead")
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
    parts.append("# ---- the exact inputs (canonical: " + ", ".join(f"{name} {layout}" for name, layout in
                                                             operand_layouts(case)) + ") ----\n")
    if regenerate:
        parts.append(_generated_inputs(case, inputs, nbytes))
    else:
        parts += [_array_literal(name, a, case) for name, a in zip(case.operands, inputs)]
    setup, call = _framework_parts(case, adapter, spec)
    code = setup + call
    parts.append(f"\n# ---- the framework call ({framework}) ----\n")
    if not case.is_valid:
        parts.append(_INVALID.format(reason=case.invalid_reason, body=textwrap.indent(code, "    ")))
        return "".join(parts)
    if calls > 1:
        rebuilt = "" if setup else _REBUILT
        code = setup + _REPEATED_CALL.format(calls=calls, code=textwrap.indent(call, "    "), rebuilt=rebuilt,
                                             operands=", ".join(case.operands))
    parts.append(code)
    g = case.geometry
    tap = ""
    if case.op == "conv2d":
        tap = _TAP_CONV.format(groups=case.groups, cg=case.filter_in_channels, og=case.out_channels // case.groups)
    elif case.op == "depthwise_conv2d":
        tap = _TAP_DW
    if case.op in FORWARD_OPS:
        parts.append(_REFERENCE.format(kernel=case.kernel, strides=case.strides, dilations=case.dilations,
                                       pads=g.pads, padding=case.padding, out_h=g.out_h, out_w=g.out_w, tap=tap))
        scales = ('{level: transform_scale(PARAMS, level, _as_float64(x), _as_float64(filters),\n'
                  '                          None if bias is None else _as_float64(bias)) for level in PARAMS["transforms"]}')
    else:
        parts.append(reference_source(case))
        scales = "{}  # (the transform contracts are forward-only)"
    text = _CHECK.format(worst=WORST_SHOWN, params=tolerance.rule_params(case), precision=precision, rule="{rule}",
                         repeat_check=_REPEAT_CHECK if calls > 1 else "", operands=", ".join(case.operands),
                         scales=scales)
    parts.append(text.replace("{rule}", rule_source()))
    return "".join(parts)


# ---- the short script of a finding ------------------------------------------------------

#: Inputs with more elements than this (x, filters and bias together) get no short script.
MAX_ELEMENTS = 4096

_DTYPES = {"float32": "np.float32", "float16": "np.float16", "float64": "np.float64", "bfloat16": "ml_dtypes.bfloat16"}


#: The lines around the framework call of a valid case's script (see `exit_code_for`).
CALL_BEGIN = "# ---- the framework call ----\n"
CALL_END = "# ---- end of the framework call ----\n"


_EXEC_LOCK = threading.Lock()


def exit_code_for(script: str, y: Any) -> int | None:
    """The exit status `script` gives when the framework returns `y`: the script run here
    with its framework call replaced by `y` (no framework is imported). None for a script
    without the markers (an invalid case's, which exits 1 whenever the call returns)."""
    if CALL_BEGIN not in script or CALL_END not in script:
        return None
    head, rest = script.split(CALL_BEGIN, 1)
    tail = rest.split(CALL_END, 1)[1]
    ns: dict[str, Any] = {"__name__": "__short_repro__", "_y_given": y}
    try:
        with _EXEC_LOCK, contextlib.redirect_stdout(io.StringIO()):  # sys.stdout is global: one at a time
            exec(compile(head + "y = _y_given\n" + tail, "<short repro>", "exec"), ns)  # noqa: S102 (our script)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


class ShortReproError(ValueError):
    """No short script for this case (inputs too large to write out)."""


def _source_number(v: float) -> str:
    """A float as Python source for a script (np.nan, -np.inf, -0.0, 3 for 3.0)."""
    if math.isnan(v):
        return "np.nan"
    if math.isinf(v):
        return "np.inf" if v > 0 else "-np.inf"
    if v == 0 and math.copysign(1.0, v) < 0:
        return "-0.0"
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def _literal(name: str, arr: np.ndarray | None, dtype: str, comment: str) -> str:
    if arr is None:
        return f"{name} = None\n"
    flat = np.asarray(arr, dtype=np.float64).ravel()
    values = ", ".join(_source_number(float(v)) for v in flat)
    return f"{name} = np.array([{values}], dtype={_DTYPES[dtype]}).reshape{tuple(arr.shape)}  # {comment}\n"


_SHORT_TAP = {  # one kernel tap's contribution, float64 (N, OH, OW, O), for the short script's reference
    "conv2d": "np.concatenate([t[..., g * {cg}:(g + 1) * {cg}] @ f[:, g * {og}:(g + 1) * {og}] for g in range({groups})], -1)",
    "depthwise_conv2d": "np.einsum('nhwc,cm->nhwcm', t, f).reshape(t.shape[:3] + (-1,))",
}


def _rule_blob() -> str:
    return base64.b64encode(zlib.compress(rule_source().encode("utf-8"), 9)).decode("ascii")


def make_short_script(case: Case, adapter: Any, *, spec: str | None = None, header: str = "",
                      precision: str = tolerance.DEFAULT_PRECISION, kernel_path: str = "") -> str:
    """The short script for `case` on `adapter` (module docstring); `header` goes first as
    comments, `kernel_path` (fingerprint.path_line of the worker that found it) is printed."""
    tolerance.check_precision(precision)
    if case.op not in FORWARD_OPS:  # its formula does not fit the short form: the full script is the repro
        raise ShortReproError(f"case {case.id}: expected op conv2d or depthwise_conv2d for a short script, received "
                              f"{case.op!r}; the full script (`conformance repro`) reproduces it")
    x, filters, bias = make_inputs(case)
    regenerate = case.profile in REGENERATED_PROFILES
    size = x.size + filters.size + (0 if bias is None else bias.size)
    if not regenerate and size > MAX_ELEMENTS:
        raise ShortReproError(f"case {case.id}: {size} input elements of profile {case.profile!r}, expected at most "
                              f"{MAX_ELEMENTS} to write out (or profile normal, whose inputs the script generates)")
    framework = str(getattr(adapter, "framework", "") or "")
    out = [f"# {line}\n" for line in header.splitlines()]
    out.append("import base64, hashlib, sys, warnings, zlib\nimport numpy as np\n")
    out.append("warnings.simplefilter('always')  # the framework's warnings are all printed\n")
    if case.dtype == "bfloat16":
        out.append("import ml_dtypes  # bfloat16 arrays (installed with JAX and TensorFlow)\n")
    out.append(f"exec(zlib.decompress(base64.b64decode({_rule_blob()!r})))  # the suite's rule: conformance/_rule.py\n")
    dt = "ml_dtypes.bfloat16" if case.dtype == "bfloat16" else f"np.{case.dtype}"
    if regenerate:  # the inputs conv-conformance judged: one PCG64 stream per case, checked by SHA-256
        b = f"rng.standard_normal({case.output_channels}).astype({dt})" if case.bias else "None"
        out.append(f"rng = np.random.Generator(np.random.PCG64({_seed(case):#x}))\n"
                   f"x = rng.standard_normal({tuple(case.input_shape)}).astype({dt})  # (N, H, W, C)\n"
                   f"filters = (rng.standard_normal({tuple(case.filter_shape)}) / np.sqrt({max(case.reduction_size, 1)}))"
                   f".astype({dt})\nbias = {b}\n"
                   f"assert hashlib.sha256(b''.join(np.ascontiguousarray(a.view(np.uint16) if a.dtype.name == "
                   f"'bfloat16' else a).tobytes() for a in (x, filters, bias) if a is not None)).hexdigest() == "
                   f"{inputs_checksum(x, filters, bias)!r}, 'this NumPy generates other inputs from the seed'\n")
    else:
        fshape = "(kh, kw, C/groups, O)" if case.op == "conv2d" else "(kh, kw, C, M)"
        out += [_literal("x", x, case.dtype, "(N, H, W, C)"), _literal("filters", filters, case.dtype, fshape),
                _literal("bias", bias, case.dtype, "(O,)")]
    code = framework_code(case, adapter, spec).rstrip("\n") + "\n"
    pad = "        " if not case.is_valid else "    "
    call = "".join(pad + line + "\n" if line.strip() else "\n" for line in code.splitlines())
    out.append("caught = []\n" + CALL_BEGIN + "with warnings.catch_warnings(record=True) as caught:\n")
    if not case.is_valid:
        out.append(f"    try:\n{call}    except Exception as exc:\n"
                   f"        print(f'OK: the invalid case was refused: {{type(exc).__name__}}: {{exc}}'); sys.exit(0)\n"
                   + CALL_END)
    else:
        out.append(call + CALL_END)
    seen = f"'| kernel path when found: {kernel_path}'"
    version = f"'{framework}', getattr(sys.modules.get({framework!r}), '__version__', '?'), " if framework else ""
    out.append(f"print({version}{seen}, *(f'\\n{{w.category.__name__}}: {{w.message}}' for w in caught))\n")
    if not case.is_valid:
        out.append(f"print(f'DIVERGES: an invalid case ({case.invalid_reason}) returned shape {{np.shape(y)}}')\n"
                   "sys.exit(1)\n")
        return "".join(out)
    g = case.geometry
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilations
    tap = _SHORT_TAP[case.op].format(cg=case.filter_in_channels, og=case.output_channels // max(case.groups, 1),
                                     groups=case.groups)
    out.append(f"xp = np.pad(x.astype(np.float64), ((0, 0), {g.pads[0]}, {g.pads[1]}, (0, 0)))  # the formula, float64\n"
               f"taps = [(xp[:, i * {dh}:i * {dh} + {sh} * {g.out_h - 1} + 1:{sh}, j * {dw}:j * {dw} + {sw} * "
               f"{g.out_w - 1} + 1:{sw}], filters.astype(np.float64)[i, j]) for i in range({kh}) for j in range({kw})]\n"
               f"conv = lambda p: sum({tap} for t, f in ((p(a), p(b)) for a, b in taps))\n"
               "value, mag, norm, unbiased = conv(lambda a: a), conv(np.abs), np.sqrt(conv(np.square)), None\n")
    if case.bias:
        out.append("b = bias.astype(np.float64)\nunbiased, value, mag, norm = value, value + b, mag + np.abs(b), "
                   "np.sqrt(norm ** 2 + b ** 2)\n")
    out.append(f"y = np.asarray(y)\nif y.shape != value.shape or y.dtype != x.dtype:  # the shape and the dtype, exactly\n"
               f"    sys.exit(print(f'DIVERGES: expected {{value.shape}} {{x.dtype}}, received {{y.shape}} {{y.dtype}}') or 1)\n"
               f"P, y64 = {tolerance.rule_params(case)!r}, y.astype(np.float64)\n"
               f"(e, limit, bad), (ok, why) = (f(P, {precision!r}, y64, value, None, mag, norm, unbiased) "
               f"for f in (beyond, passes))\n"
               "i = np.unravel_index(np.argmax(np.where(bad, e, -1)), e.shape)\n"
               f"print('OK' if ok else 'DIVERGES' + (': biased rounding' if why == 'bias' else ''), f'(contract "
               f"{precision}): expected {{float(value[i])!r}}, received {{float(y64[i])!r}} at {{tuple(map(int, i))}}; "
               "{int(bad.sum())} of {bad.size} elements beyond their limit')\n"
               "sys.exit(0 if ok else 1)\n")
    return "".join(out)
