"""Hypothesis strategies that construct convolution cases directly.

Every strategy is a keyword-only function that checks its arguments first and then
*builds* cases: the output size is drawn and the input size derived from it (through
the same arithmetic as `spec.conv_geometry`), channels are drawn per group, so no
example is discarded by `assume` or `.filter`.

Shrinking: integers shrink towards their lower bound and `sampled_from` towards its
first element, so examples shrink towards batch 1, a 1x1 output and input, 1 channel,
a 1x1 kernel, stride 1, dilation 1, VALID padding, the first op/dtype/profile/data
format given (conv2d, float32, normal, NHWC by default) and no bias.
"""

from __future__ import annotations

from hypothesis import strategies as st

from conformance.spec import DATA_FORMATS, DTYPES, FORWARD_OPS, GRADIENT_OPS, OP_INFO, OPS, PROFILES, Case

PADDING_KINDS = ("VALID", "SAME", "explicit")
INVALID_KINDS = ("empty_output", "groups_in", "groups_out", "filter_channels")


def _check_choice(name: str, values, allowed) -> tuple:
    if isinstance(values, str):
        values = (values,)
    values = tuple(values)
    if not values or any(v not in allowed for v in values):
        raise ValueError(f"{name}: expected a non-empty sequence of {', '.join(map(str, allowed))}, received {values!r}")
    return values


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, received {value!r}")
    return value


def _common(draw, op, dtypes, profiles, data_formats, bias):
    # A gradient op takes no bias; the draw is made all the same, so shrinking compares like with like.
    with_bias = draw(bias)
    return dict(dtype=draw(st.sampled_from(dtypes)), profile=draw(st.sampled_from(profiles)),
                data_format=draw(st.sampled_from(data_formats)), bias=with_bias and op not in GRADIENT_OPS)


def _axis(draw, max_spatial: int, max_kernel: int, max_stride: int, max_dilation: int, padding_kind: str):
    """(input size, kernel, stride, dilation, (lo, hi) pads) for one axis, always valid."""
    k = draw(st.integers(1, min(max_kernel, max_spatial)))
    # Keep the effective kernel (k-1)*d+1 within max_spatial so an output exists.
    d_max = max_dilation if k == 1 else min(max_dilation, max(1, (max_spatial - 1) // (k - 1)))
    d = draw(st.integers(1, d_max))
    s = draw(st.integers(1, max_stride))
    eff = (k - 1) * d + 1
    lo = hi = 0
    if padding_kind == "explicit":
        lo = draw(st.integers(0, 2))
        hi = draw(st.integers(0, 2))
    if padding_kind == "SAME":
        # n in [(out-1)*s + 1, out*s] has ceil(n/s) = out.
        out = draw(st.integers(1, max(1, max_spatial // s)))
        n = min((out - 1) * s + 1 + draw(st.integers(0, s - 1)), max_spatial)
        return n, k, s, d, None
    # VALID/explicit: n + lo + hi = (out-1)*s + eff + j, 0 <= j < s; shrinks to n = eff - lo - hi.
    out_max = max(1, (max_spatial + lo + hi - eff) // s + 1)
    out = draw(st.integers(1, out_max))
    n = max((out - 1) * s + eff + draw(st.integers(0, s - 1)) - lo - hi, 1)
    return n, k, s, d, (lo, hi)


@st.composite
def _valid(draw, ops, dtypes, profiles, data_formats, bias, max_batch, max_spatial, max_channels,
           max_multiplier, max_kernel, max_stride, max_dilation):
    op = draw(st.sampled_from(ops))
    batch = draw(st.integers(1, max_batch))
    kind = draw(st.sampled_from(PADDING_KINDS))
    axes = [_axis(draw, max_spatial, max_kernel, max_stride, max_dilation, kind) for _ in range(2)]
    (h, kh, sh, dh, ph), (w, kw, sw, dw, pw) = axes
    padding = kind if kind != "explicit" else (ph, pw)
    fields = dict(op=op, batch=batch, height=h, width=w, kernel=(kh, kw), strides=(sh, sw),
                  dilations=(dh, dw), padding=padding, **_common(draw, op, dtypes, profiles, data_formats, bias))
    # Every op makes the same draws (some unused), so shrinking compares like with like
    # and prefers the first op instead of whichever op needs fewer choices.
    groups = draw(st.integers(1, max_channels))
    per_in = draw(st.integers(1, max(1, max_channels // groups)))
    per_out = draw(st.integers(1, max(1, max_channels // groups)))
    multiplier = draw(st.integers(1, max_multiplier))
    if OP_INFO[op].forward == "conv2d":
        fields.update(in_channels=groups * per_in, groups=groups, out_channels=groups * per_out)
    else:
        fields.update(in_channels=groups, channel_multiplier=multiplier)
        if op == "separable_conv2d":  # its pointwise stage's outputs
            fields.update(out_channels=per_out)
    return Case(**fields)


def valid_cases(*, ops=OPS, dtypes=DTYPES, profiles=PROFILES, data_formats=DATA_FORMATS,
                bias=None, max_batch: int = 2, max_spatial: int = 8, max_channels: int = 8,
                max_multiplier: int = 3, max_kernel: int = 3, max_stride: int = 3,
                max_dilation: int = 2) -> st.SearchStrategy[Case]:
    """Valid cases (`case.is_valid`), built directly.

    `ops` are any of spec.OPS: a training op's case is its forward case with that op.
    `bias` None draws it (shrinking to False), True/False fixes it (for the ops that take
    one: a gradient case never has a bias). Input height and
    width stay <= max_spatial + max_stride - 1 (the effective kernel <= max_spatial);
    in_channels and out_channels stay <= max_channels (conv2d draws groups, then
    channels per group). Examples shrink towards a conv2d, batch 1, 1x1 input and
    kernel, one channel, stride and dilation 1, VALID, float32, NHWC, normal, no bias
    (the first of each `ops`/`dtypes`/`profiles`/`data_formats` given).
    """
    ops = _check_choice("ops", ops, OPS)
    dtypes = _check_choice("dtypes", dtypes, DTYPES)
    profiles = _check_choice("profiles", profiles, PROFILES)
    data_formats = _check_choice("data_formats", data_formats, DATA_FORMATS)
    for name, value in (("max_batch", max_batch), ("max_spatial", max_spatial), ("max_channels", max_channels),
                        ("max_multiplier", max_multiplier), ("max_kernel", max_kernel),
                        ("max_stride", max_stride), ("max_dilation", max_dilation)):
        _check_int(name, value, 1)
    if bias is not None and not isinstance(bias, bool):
        raise ValueError(f"bias: expected None, True or False, received {bias!r}")
    bias_st = st.booleans() if bias is None else st.just(bias)
    return _valid(ops, dtypes, profiles, data_formats, bias_st, max_batch, max_spatial, max_channels,
                  max_multiplier, max_kernel, max_stride, max_dilation)


@st.composite
def _invalid(draw, kinds, dtypes, max_spatial, max_channels):
    # Every kind makes the same draws, so examples shrink towards the first kind given.
    kind = draw(st.sampled_from(kinds))
    dtype = draw(st.sampled_from(dtypes))
    op = draw(st.sampled_from(FORWARD_OPS))
    batch = draw(st.integers(1, 2))
    a = draw(st.integers(1, max_spatial))
    b = draw(st.integers(1, max_spatial))
    c = draw(st.integers(0, 3))
    e = draw(st.integers(1, max_channels))
    f = draw(st.integers(1, 3))
    if kind == "empty_output":
        # Kernel height a + 1 + c against input height a plus c rows of explicit pad.
        padding = "VALID" if c == 0 else ((c, 0), (0, 0))
        extra = dict(out_channels=f) if op == "conv2d" else dict(channel_multiplier=f)
        return Case(op=op, batch=batch, height=a, width=b, in_channels=e, kernel=(a + 1 + c, 1),
                    padding=padding, dtype=dtype, **extra)
    groups = 1 + a  # >= 2, so a remainder 1 .. groups-1 exists
    rest = 1 + c % (groups - 1)
    size = dict(op="conv2d", batch=batch, height=b, width=b, kernel=1, groups=groups, dtype=dtype)
    if kind == "groups_in":
        return Case(in_channels=groups * (e - 1) + rest, out_channels=groups * f, **size)
    if kind == "groups_out":
        return Case(in_channels=groups * f, out_channels=groups * (e - 1) + rest, **size)
    return Case(in_channels=groups * f, out_channels=groups * e, filter_channels=f + 1 + c, **size)


def invalid_cases(*, kinds=INVALID_KINDS, dtypes=DTYPES, max_spatial: int = 8,
                  max_channels: int = 8) -> st.SearchStrategy[Case]:
    """Well-formed invalid cases (`case.invalid_reason` is set), one of `kinds`:

    `empty_output` (a kernel larger than the padded input), `groups_in` / `groups_out`
    (groups that do not divide in_channels / out_channels), `filter_channels` (a filter
    whose channels disagree with in_channels / groups). Examples shrink towards the
    first kind given, batch 1, the smallest sizes and float32 (an empty_output conv2d
    with a 1x1 input and a 2x1 kernel, by default). conv2d is used for the group and
    filter kinds; channels can exceed max_channels there (groups * channels per group).
    """
    kinds = _check_choice("kinds", kinds, INVALID_KINDS)
    dtypes = _check_choice("dtypes", dtypes, DTYPES)
    _check_int("max_spatial", max_spatial, 1)
    _check_int("max_channels", max_channels, 1)
    return _invalid(kinds, dtypes, max_spatial, max_channels)


@st.composite
def _mixed(draw, valid, invalid):
    # The valid case is always drawn first, so a shrinking invalid example can always
    # become a (shorter, hence simpler) valid one: examples shrink towards valid cases.
    case = draw(valid)
    if draw(st.integers(0, 3)) == 3:  # about one example in four is invalid
        case = draw(invalid)
    return case


def cases(*, ops=OPS, dtypes=DTYPES, profiles=PROFILES, data_formats=DATA_FORMATS, invalid: bool = True,
          max_spatial: int = 8, max_channels: int = 8) -> st.SearchStrategy[Case]:
    """Valid cases, and (about one in four) invalid ones unless `invalid=False`.

    Examples shrink towards valid cases, and within them as `valid_cases` does.
    """
    valid = valid_cases(ops=ops, dtypes=dtypes, profiles=profiles, data_formats=data_formats,
                        max_spatial=max_spatial, max_channels=max_channels)
    if not invalid:
        return valid
    return _mixed(valid, invalid_cases(dtypes=dtypes, max_spatial=max_spatial, max_channels=max_channels))
