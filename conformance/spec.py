"""The Case: one 2-D convolution problem, described precisely and validated.

Invariants
- A `Case` is immutable and hashable; equal parameters give an equal `id` on every
  machine and Python version (the id is built from the parameters as text, never from
  `hash()`).
- A *malformed* case (a wrong type, an unknown op, a non-positive size) cannot be built:
  the constructor raises `CaseError` naming the field, the value received and the rule.
- A *well-formed but invalid* case (the output would be empty, groups do not divide the
  channels, the filter's channel count disagrees with the input) can be built, because
  the expected behaviour of a backend on it is a clear error. `case.invalid_reason`
  says why; it is `None` for a valid case.
- Padding and output-size arithmetic live in exactly one function, `conv_geometry`.
  The oracle, the inputs, the strategies, the adapters and the reports all call it.

Canonical layouts (TensorFlow's): x is (N, H, W, C); conv2d filters are
(kh, kw, C/groups, O); depthwise filters are (kh, kw, C, M); the output is
(N, OH, OW, O) for conv2d and (N, OH, OW, C*M) for depthwise, channel k*M + q.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Union

OPS = ("conv2d", "depthwise_conv2d")
DTYPES = ("float32", "float16", "bfloat16", "float64")
DATA_FORMATS = ("NHWC", "NCHW")
PROFILES = ("normal", "small_integers", "wide_range", "special", "subnormal", "overflow")
#: Every profile a case may have. `PROFILES` is what the sweep and the strategies vary
#: (adding a level there changes every seeded case of the default set); the others are
#: used by catalogue cases only, for now.
ALL_PROFILES = PROFILES + ("subnormal_weights",)
PADDING_NAMES = ("SAME", "VALID")

#: Short dtype spellings used in case ids.
DTYPE_TAGS = {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "float64": "f64"}

#: Cases above these sizes are refused: a case file must never be able to exhaust memory.
MAX_ELEMENTS = 1 << 26  # per tensor (input, filter or output): 64 Mi elements
MAX_MACS = 1 << 34  # multiply-adds of the whole convolution

Padding = Union[str, tuple[tuple[int, int], tuple[int, int]]]


class CaseError(ValueError):
    """A malformed case: names the field, the value received and the rule."""

    def __init__(self, field_name: str, value: Any, rule: str):
        self.field = field_name
        self.value = value
        self.rule = rule
        super().__init__(f"{field_name}: expected {rule}, received {value!r}")


@dataclass(frozen=True)
class Geometry:
    """Output size and the explicit pads one padding spelling resolves to, per axis."""

    out_h: int
    out_w: int
    pads: tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))
    effective_kernel: tuple[int, int]  # (kh - 1) * dh + 1, (kw - 1) * dw + 1


def conv_geometry(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    padding: Padding,
) -> Geometry:
    """The one function that turns a padding spelling into pads and an output size.

    SAME is TensorFlow's: out = ceil(in / s); the total pad is
    max((out - 1) * s + eff_k - in, 0) and the odd pixel goes to the bottom/right
    (ONNX `SAME_UPPER`). VALID is no padding. Explicit pads are used as given.
    An output size of 0 (or less) is returned as 0: the caller decides it is invalid.
    """
    outs, pads, effs = [], [], []
    for axis in range(2):
        n, k, s, d = in_hw[axis], kernel[axis], strides[axis], dilations[axis]
        eff = (k - 1) * d + 1
        if padding == "SAME":
            out = -(-n // s)
            total = max((out - 1) * s + eff - n, 0)
            lo, hi = total // 2, total - total // 2
        elif padding == "VALID":
            lo = hi = 0
            out = (n - eff) // s + 1 if n >= eff else 0
        else:
            lo, hi = padding[axis]
            span = n + lo + hi
            out = (span - eff) // s + 1 if span >= eff else 0
        outs.append(max(out, 0))
        pads.append((lo, hi))
        effs.append(eff)
    return Geometry(outs[0], outs[1], (tuple(pads[0]), tuple(pads[1])), (effs[0], effs[1]))


def _pair(name: str, value: Any, *, minimum: int) -> tuple[int, int]:
    if isinstance(value, bool):
        raise CaseError(name, value, f"an integer >= {minimum} or a pair of them")
    if isinstance(value, int):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise CaseError(name, value, f"an integer >= {minimum} or a pair of them")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise CaseError(name, value, f"integers >= {minimum}")
    return (int(value[0]), int(value[1]))


def _int(name: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CaseError(name, value, f"an integer >= {minimum}")
    return int(value)


def _padding(value: Any) -> Padding:
    if isinstance(value, str):
        if value.upper() in PADDING_NAMES:
            return value.upper()
        raise CaseError("padding", value, "'SAME', 'VALID' or ((top, bottom), (left, right))")
    try:
        (t, b), (l, r) = value
    except (TypeError, ValueError):
        raise CaseError("padding", value, "'SAME', 'VALID' or ((top, bottom), (left, right))") from None
    for v in (t, b, l, r):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise CaseError("padding", value, "non-negative integer pads ((top, bottom), (left, right))")
    return ((int(t), int(b)), (int(l), int(r)))


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise CaseError(name, value, "one of " + ", ".join(repr(c) for c in choices))
    return value


@dataclass(frozen=True)
class Case:
    """One convolution problem. Build with keywords; everything is validated.

    `out_channels` and `groups` belong to conv2d, `channel_multiplier` to depthwise.
    `filter_channels` (conv2d only) defaults to in_channels / groups; set it only to
    describe an invalid case whose filter disagrees with the input.
    """

    op: str
    batch: int
    height: int
    width: int
    in_channels: int
    kernel: tuple[int, int]
    out_channels: int | None = None
    channel_multiplier: int | None = None
    groups: int = 1
    strides: tuple[int, int] = (1, 1)
    dilations: tuple[int, int] = (1, 1)
    padding: Padding = "VALID"
    dtype: str = "float32"
    data_format: str = "NHWC"
    profile: str = "normal"
    bias: bool = False
    filter_channels: int | None = None
    # Free text carried along for people (catalogue reason); not part of the id.
    name: str | None = field(default=None, compare=False)
    reason: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        set_("op", _choice("op", self.op, OPS))
        for name in ("batch", "height", "width", "in_channels"):
            set_(name, _int(name, getattr(self, name), minimum=1))
        set_("kernel", _pair("kernel", self.kernel, minimum=1))
        set_("strides", _pair("strides", self.strides, minimum=1))
        set_("dilations", _pair("dilations", self.dilations, minimum=1))
        set_("padding", _padding(self.padding))
        set_("dtype", _choice("dtype", self.dtype, DTYPES))
        set_("data_format", _choice("data_format", self.data_format, DATA_FORMATS))
        set_("profile", _choice("profile", self.profile, ALL_PROFILES))
        if not isinstance(self.bias, bool):
            raise CaseError("bias", self.bias, "true or false")
        if self.op == "conv2d":
            if self.out_channels is None:
                raise CaseError("out_channels", None, "an integer >= 1 for op 'conv2d'")
            set_("out_channels", _int("out_channels", self.out_channels, minimum=1))
            set_("groups", _int("groups", self.groups, minimum=1))
            if self.channel_multiplier is not None:
                raise CaseError("channel_multiplier", self.channel_multiplier, "no channel_multiplier for op 'conv2d' (use out_channels)")
            if self.filter_channels is not None:
                set_("filter_channels", _int("filter_channels", self.filter_channels, minimum=1))
        else:
            if self.channel_multiplier is None:
                raise CaseError("channel_multiplier", None, "an integer >= 1 for op 'depthwise_conv2d'")
            set_("channel_multiplier", _int("channel_multiplier", self.channel_multiplier, minimum=1))
            if self.out_channels is not None:
                raise CaseError("out_channels", self.out_channels, "no out_channels for op 'depthwise_conv2d' (it is in_channels * channel_multiplier)")
            if self.groups != 1:
                raise CaseError("groups", self.groups, "groups = 1 for op 'depthwise_conv2d' (depthwise is groups = in_channels by definition)")
            if self.filter_channels is not None:
                raise CaseError("filter_channels", self.filter_channels, "no filter_channels for op 'depthwise_conv2d'")
        for label, shape in (("input", self.input_shape), ("filter", self.filter_shape), ("output", self.output_shape)):
            n = math.prod(shape)
            if n > MAX_ELEMENTS:
                raise CaseError("size", f"{label} {shape} = {n} elements", f"at most {MAX_ELEMENTS} elements per tensor")
        macs = math.prod(self.output_shape) * self.reduction_size
        if macs > MAX_MACS:
            raise CaseError("size", f"{macs} multiply-adds", f"at most {MAX_MACS} multiply-adds per case")

    # ---- derived quantities -------------------------------------------------------

    @property
    def geometry(self) -> Geometry:
        return conv_geometry((self.height, self.width), self.kernel, self.strides, self.dilations, self.padding)

    @property
    def filter_in_channels(self) -> int:
        """Channels per group as the filter has them (conv2d), 1 for depthwise."""
        if self.op == "depthwise_conv2d":
            return 1
        if self.filter_channels is not None:
            return self.filter_channels
        return max(self.in_channels // self.groups, 1)

    @property
    def output_channels(self) -> int:
        if self.op == "conv2d":
            return self.out_channels
        return self.in_channels * self.channel_multiplier

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(N, H, W, C), canonical NHWC whatever `data_format` says."""
        return (self.batch, self.height, self.width, self.in_channels)

    @property
    def filter_shape(self) -> tuple[int, int, int, int]:
        """(kh, kw, C/groups, O) for conv2d; (kh, kw, C, M) for depthwise."""
        kh, kw = self.kernel
        if self.op == "conv2d":
            return (kh, kw, self.filter_in_channels, self.out_channels)
        return (kh, kw, self.in_channels, self.channel_multiplier)

    @property
    def bias_shape(self) -> tuple[int] | None:
        return (self.output_channels,) if self.bias else None

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        """(N, OH, OW, O or C*M); OH or OW is 0 for an empty-output invalid case."""
        g = self.geometry
        return (self.batch, g.out_h, g.out_w, self.output_channels)

    @property
    def reduction_size(self) -> int:
        """K: products summed per output element (kh * kw * C/groups; kh * kw for depthwise)."""
        kh, kw = self.kernel
        return kh * kw * self.filter_in_channels

    @property
    def invalid_reason(self) -> str | None:
        """Why no correct backend can compute this case, or None when it is valid."""
        g = self.geometry
        if g.out_h <= 0 or g.out_w <= 0:
            return (
                f"empty output: input {self.height}x{self.width} with effective kernel "
                f"{g.effective_kernel[0]}x{g.effective_kernel[1]}, strides {self.strides} and "
                f"padding {self.padding} gives {g.out_h}x{g.out_w}"
            )
        if self.op == "conv2d":
            if self.in_channels % self.groups:
                return f"groups {self.groups} does not divide in_channels {self.in_channels}"
            if self.out_channels % self.groups:
                return f"groups {self.groups} does not divide out_channels {self.out_channels}"
            if self.filter_channels is not None and self.filter_channels * self.groups != self.in_channels:
                return (
                    f"filter has {self.filter_channels} input channels per group, but "
                    f"in_channels / groups = {self.in_channels}/{self.groups}"
                )
        return None

    @property
    def is_valid(self) -> bool:
        return self.invalid_reason is None

    # ---- identity ---------------------------------------------------------------

    @property
    def id(self) -> str:
        """Stable, readable id: `dw-n1-14x14x32-k3x3-m64-s1x1-d1x1-same-f32`.

        Every parameter that changes the problem appears; defaults that are common
        (NHWC, normal values, no bias, groups 1) are left out to keep ids short.
        """
        parts = ["conv" if self.op == "conv2d" else "dw", f"n{self.batch}", f"{self.height}x{self.width}x{self.in_channels}"]
        parts.append(f"k{self.kernel[0]}x{self.kernel[1]}")
        if self.op == "conv2d":
            parts.append(f"o{self.out_channels}")
            if self.groups != 1:
                parts.append(f"g{self.groups}")
            if self.filter_channels is not None:
                parts.append(f"fc{self.filter_channels}")
        else:
            parts.append(f"m{self.channel_multiplier}")
        parts.append(f"s{self.strides[0]}x{self.strides[1]}")
        parts.append(f"d{self.dilations[0]}x{self.dilations[1]}")
        if isinstance(self.padding, str):
            parts.append(self.padding.lower())
        else:
            (t, b), (l, r) = self.padding
            parts.append(f"p{t}.{b}.{l}.{r}")
        parts.append(DTYPE_TAGS[self.dtype])
        if self.data_format != "NHWC":
            parts.append(self.data_format.lower())
        if self.profile != "normal":
            parts.append(self.profile.replace("_", ""))
        if self.bias:
            parts.append("bias")
        return "-".join(parts)

    def __str__(self) -> str:
        return self.id

    # ---- serialisation ----------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-serialisable record; `Case.from_dict(c.to_dict()) == c`."""
        d: dict[str, Any] = {"op": self.op, "batch": self.batch, "height": self.height, "width": self.width,
                             "in_channels": self.in_channels, "kernel": list(self.kernel)}
        if self.op == "conv2d":
            d["out_channels"] = self.out_channels
            d["groups"] = self.groups
            if self.filter_channels is not None:
                d["filter_channels"] = self.filter_channels
        else:
            d["channel_multiplier"] = self.channel_multiplier
        d["strides"] = list(self.strides)
        d["dilations"] = list(self.dilations)
        d["padding"] = self.padding if isinstance(self.padding, str) else [list(p) for p in self.padding]
        d["dtype"] = self.dtype
        d["data_format"] = self.data_format
        d["profile"] = self.profile
        d["bias"] = self.bias
        if self.name is not None:
            d["name"] = self.name
        if self.reason is not None:
            d["reason"] = self.reason
        return d

    @classmethod
    def from_dict(cls, data: Any) -> "Case":
        """Build from a plain mapping (YAML/JSON); unknown fields are refused by name."""
        if not isinstance(data, dict):
            raise CaseError("case", data, "a mapping of case fields")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CaseError(unknown[0], data[unknown[0]], "a known case field (" + ", ".join(sorted(known)) + ")")
        missing = [k for k in ("op", "batch", "height", "width", "in_channels", "kernel") if k not in data]
        if missing:
            raise CaseError(missing[0], None, "a value (this field is required)")
        kwargs = dict(data)
        for key in ("kernel", "strides", "dilations"):
            if isinstance(kwargs.get(key), list):
                kwargs[key] = tuple(kwargs[key])
        pad = kwargs.get("padding")
        if isinstance(pad, list):
            try:
                kwargs["padding"] = tuple(tuple(p) if isinstance(p, list) else p for p in pad)
            except TypeError:
                pass  # _padding reports it
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Case":
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    @classmethod
    def from_yaml(cls, text: str) -> "Case":
        import yaml

        return cls.from_dict(yaml.safe_load(text))

    def replace(self, **changes: Any) -> "Case":
        """A copy with some fields changed (validated again); drops the name and reason."""
        changes.setdefault("name", None)
        changes.setdefault("reason", None)
        return dataclasses.replace(self, **changes)
