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

Training ops are described by their *forward* case (`OP_INFO[op].forward`): the same
fields, the same `conv_geometry`. dy has the forward output's shape (`conv_output_shape`);
the gradient with respect to the input has x's shape, with respect to the filters the
filter's shape; the transposed convolution's output-size ambiguity is resolved by the
forward input size (`Geometry.output_padding`). `separable_conv2d` is a depthwise conv
(the case's kernel, strides, dilations, padding and channel multiplier) followed by a
1x1 pointwise conv to `out_channels` (pointwise filters (1, 1, C*M, O)), then the bias.
A gradient case with a bias is malformed (the bias's gradient is a plain sum, not a
convolution).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Union

FORWARD_OPS = ("conv2d", "depthwise_conv2d")


@dataclass(frozen=True)
class OpInfo:
    """What an op computes, described by the forward case it derives from."""

    forward: str  # the forward op whose case fields describe it ("conv2d" or "depthwise_conv2d")
    operands: tuple[str, ...]  # the arrays `run(case, *operands)` receives, in order
    result: str  # what it returns: "output" (y), "input" (dx) or "filter" (dfilters)
    tag: str  # the case id's first part


OP_INFO = {
    "conv2d": OpInfo("conv2d", ("x", "filters", "bias"), "output", "conv"),
    "depthwise_conv2d": OpInfo("depthwise_conv2d", ("x", "filters", "bias"), "output", "dw"),
    "conv2d_backprop_input": OpInfo("conv2d", ("dy", "filters"), "input", "convdx"),
    "depthwise_conv2d_backprop_input": OpInfo("depthwise_conv2d", ("dy", "filters"), "input", "dwdx"),
    "conv2d_backprop_filter": OpInfo("conv2d", ("x", "dy"), "filter", "convdf"),
    "depthwise_conv2d_backprop_filter": OpInfo("depthwise_conv2d", ("x", "dy"), "filter", "dwdf"),
    "separable_conv2d": OpInfo("depthwise_conv2d", ("x", "filters", "pointwise", "bias"), "output", "sep"),
}
OPS = tuple(OP_INFO)
GRADIENT_OPS = tuple(op for op, info in OP_INFO.items() if info.result != "output")
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
    # Rows/columns at the bottom/right of the padded input that no output reads: the
    # transposed convolution's output_padding (its output size is (out - 1) * s - pads
    # + effective kernel + output_padding = the forward input size).
    output_padding: tuple[int, int] = (0, 0)


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
    outs, pads, effs, unread = [], [], [], []
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
        unread.append(n + lo + hi - ((out - 1) * s + eff) if out > 0 else 0)
    return Geometry(outs[0], outs[1], (tuple(pads[0]), tuple(pads[1])), (effs[0], effs[1]), (unread[0], unread[1]))


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
        family = self.forward_op
        wants_out = family == "conv2d" or self.op == "separable_conv2d"
        if wants_out:
            if self.out_channels is None:
                raise CaseError("out_channels", None, f"an integer >= 1 for op {self.op!r}")
            set_("out_channels", _int("out_channels", self.out_channels, minimum=1))
        elif self.out_channels is not None:
            raise CaseError("out_channels", self.out_channels,
                            f"no out_channels for op {self.op!r} (it is in_channels * channel_multiplier)")
        if family == "conv2d":
            set_("groups", _int("groups", self.groups, minimum=1))
            if self.channel_multiplier is not None:
                raise CaseError("channel_multiplier", self.channel_multiplier,
                                f"no channel_multiplier for op {self.op!r} (use out_channels)")
            if self.filter_channels is not None:
                set_("filter_channels", _int("filter_channels", self.filter_channels, minimum=1))
        else:
            if self.channel_multiplier is None:
                raise CaseError("channel_multiplier", None, f"an integer >= 1 for op {self.op!r}")
            set_("channel_multiplier", _int("channel_multiplier", self.channel_multiplier, minimum=1))
            if self.groups != 1:
                raise CaseError("groups", self.groups, f"groups = 1 for op {self.op!r} (depthwise is groups = "
                                                       "in_channels by definition)")
            if self.filter_channels is not None:
                raise CaseError("filter_channels", self.filter_channels, f"no filter_channels for op {self.op!r}")
        if self.bias and self.op in GRADIENT_OPS:
            raise CaseError("bias", self.bias, f"bias false for op {self.op!r} (a gradient op takes no bias)")
        shapes = [("input", self.input_shape), ("filter", self.filter_shape), ("output", self.conv_output_shape),
                  ("result", self.output_shape)]
        for label, shape in shapes:
            n = math.prod(shape)
            if n > MAX_ELEMENTS:
                raise CaseError("size", f"{label} {shape} = {n} elements", f"at most {MAX_ELEMENTS} elements per tensor")
        macs = self.macs
        if macs > MAX_MACS:
            raise CaseError("size", f"{macs} multiply-adds", f"at most {MAX_MACS} multiply-adds per case")

    # ---- derived quantities -------------------------------------------------------

    @property
    def geometry(self) -> Geometry:
        return conv_geometry((self.height, self.width), self.kernel, self.strides, self.dilations, self.padding)

    @property
    def forward_op(self) -> str:
        """The forward op whose case this is ("conv2d" or "depthwise_conv2d"; separable: its
        spatial stage, a depthwise conv)."""
        return OP_INFO[self.op].forward

    @property
    def operands(self) -> tuple[str, ...]:
        """Names of the arrays `run(case, *operands)` receives, in order."""
        return OP_INFO[self.op].operands

    @property
    def filter_in_channels(self) -> int:
        """Channels per group as the filter has them (conv2d), 1 for depthwise."""
        if self.forward_op == "depthwise_conv2d":
            return 1
        if self.filter_channels is not None:
            return self.filter_channels
        return max(self.in_channels // self.groups, 1)

    @property
    def conv_channels(self) -> int:
        """Output channels of the (spatial) convolution: O for conv2d, C*M for depthwise."""
        if self.forward_op == "conv2d":
            return self.out_channels
        return self.in_channels * self.channel_multiplier

    @property
    def output_channels(self) -> int:
        """Channels of the forward result (and of the bias): O for conv2d and separable, C*M
        for depthwise."""
        return self.out_channels if self.out_channels is not None else self.conv_channels

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(N, H, W, C), canonical NHWC whatever `data_format` says."""
        return (self.batch, self.height, self.width, self.in_channels)

    @property
    def filter_shape(self) -> tuple[int, int, int, int]:
        """(kh, kw, C/groups, O) for conv2d; (kh, kw, C, M) for depthwise (and separable's
        spatial stage)."""
        kh, kw = self.kernel
        if self.forward_op == "conv2d":
            return (kh, kw, self.filter_in_channels, self.out_channels)
        return (kh, kw, self.in_channels, self.channel_multiplier)

    @property
    def pointwise_shape(self) -> tuple[int, int, int, int] | None:
        """(1, 1, C*M, O): separable's pointwise filters; None for the other ops."""
        if self.op != "separable_conv2d":
            return None
        return (1, 1, self.conv_channels, self.out_channels)

    @property
    def bias_shape(self) -> tuple[int] | None:
        return (self.output_channels,) if self.bias else None

    @property
    def conv_output_shape(self) -> tuple[int, int, int, int]:
        """(N, OH, OW, O or C*M): the spatial convolution's output, which is dy's shape for
        the gradient ops and the forward ops' result. OH or OW is 0 for an empty output."""
        g = self.geometry
        return (self.batch, g.out_h, g.out_w, self.conv_channels)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape of what the op returns: the forward output (N, OH, OW, O or C*M); x's
        shape for a gradient with respect to the input, the filter's for one with respect to
        the filters; (N, OH, OW, O) for separable."""
        result = OP_INFO[self.op].result
        if result == "input":
            return self.input_shape
        if result == "filter":
            return self.filter_shape
        n, oh, ow, _ = self.conv_output_shape
        return (n, oh, ow, self.output_channels)

    @property
    def operand_shapes(self) -> tuple[tuple[int, ...] | None, ...]:
        """The shapes of the operands, in `operands` order (None: no bias)."""
        shapes = {"x": self.input_shape, "filters": self.filter_shape, "dy": self.conv_output_shape,
                  "pointwise": self.pointwise_shape, "bias": self.bias_shape}
        return tuple(shapes[name] for name in self.operands)

    @property
    def reduction_size(self) -> int:
        """K: products summed per result element (at most), the error model's term count.

        conv2d kh * kw * C/groups; depthwise kh * kw; gradient w.r.t. the input: the taps
        that reach one input pixel (ceil(k / (s / gcd(s, d))) per axis) times the output
        channels of its group; gradient w.r.t. the filters: N * OH * OW; separable:
        kh * kw + 1 + C*M (its depthwise sum, the intermediate's one rounding, its
        pointwise sum)."""
        kh, kw = self.kernel
        op = self.op
        if op == "separable_conv2d":
            return kh * kw + 1 + self.conv_channels
        if OP_INFO[op].result == "filter":
            g = self.geometry
            return self.batch * g.out_h * g.out_w
        if OP_INFO[op].result == "input":
            taps = 1
            for k, s, d in zip(self.kernel, self.strides, self.dilations):
                taps *= -(-k // (s // math.gcd(s, d)))
            per_group = self.channel_multiplier if self.forward_op == "depthwise_conv2d" else \
                max(self.out_channels // self.groups, 1)
            return taps * per_group
        return kh * kw * self.filter_in_channels

    @property
    def macs(self) -> int:
        """Multiply-adds of the whole op (a gradient costs what its forward conv costs)."""
        kh, kw = self.kernel
        conv = math.prod(self.conv_output_shape) * kh * kw * self.filter_in_channels
        if self.op == "separable_conv2d":
            return conv + math.prod(self.output_shape) * self.conv_channels
        return conv

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
        if self.forward_op == "conv2d":
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
        parts = [OP_INFO[self.op].tag, f"n{self.batch}", f"{self.height}x{self.width}x{self.in_channels}"]
        parts.append(f"k{self.kernel[0]}x{self.kernel[1]}")
        if self.forward_op == "conv2d":
            parts.append(f"o{self.out_channels}")
            if self.groups != 1:
                parts.append(f"g{self.groups}")
            if self.filter_channels is not None:
                parts.append(f"fc{self.filter_channels}")
        else:
            parts.append(f"m{self.channel_multiplier}")
            if self.out_channels is not None:
                parts.append(f"o{self.out_channels}")
        parts.append(f"s{self.strides[0]}x{self.strides[1]}")
        parts.append(f"d{self.dilations[0]}x{self.dilations[1]}")
        if isinstance(self.padding, str):
            parts.append(self.padding.lower())
        else:
            (t, b), (l, r) = self.padding
            parts.append(f"p{t}.{b}.{l}.{r}")
        unread = self.geometry.output_padding
        if OP_INFO[self.op].result == "input" and any(unread):
            parts.append(f"op{unread[0]}x{unread[1]}")  # derived (the input size fixes it): shown, not chosen
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
        if self.forward_op == "conv2d":
            d["out_channels"] = self.out_channels
            d["groups"] = self.groups
            if self.filter_channels is not None:
                d["filter_channels"] = self.filter_channels
        else:
            d["channel_multiplier"] = self.channel_multiplier
            if self.out_channels is not None:
                d["out_channels"] = self.out_channels
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
