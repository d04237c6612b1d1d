"""Large outputs are judged block by block first (compare._blocked_pass): every figure, the
contract met and the sign test must be exactly what judging the whole arrays gives."""

from __future__ import annotations

import numpy as np
import pytest

from conformance import compare as compare_mod
from conformance.inputs import make_inputs
from conformance.oracle import reference
from conformance.spec import Case

CASES = [
    Case(op="conv2d", batch=1, height=40, width=40, in_channels=8, out_channels=32, kernel=3, padding="SAME"),
    Case(op="conv2d", batch=1, height=40, width=40, in_channels=8, out_channels=32, kernel=3, padding="SAME",
         dtype="float16", bias=True),
    Case(op="depthwise_conv2d", batch=2, height=33, width=30, in_channels=24, channel_multiplier=2, kernel=3,
         padding="VALID", dtype="bfloat16"),
]


def _outputs(case, ref, rng):
    """Correct roundings, a sum within `relaxed` only, a directed rounding (the sign test's
    case), a gross error in the last block and a NaN."""
    from conformance.dtypes import fmt, np_dtype

    dt, u = np_dtype(case.dtype), fmt(case.dtype).unit_roundoff
    exact = ref.value.astype(dt)
    wider = (ref.value + 1.5 * u * ref.magnitude * np.sign(rng.standard_normal(ref.value.shape))).astype(dt)
    wide = exact.astype(np.float64)
    toward = np.where(np.abs(wide) > np.abs(ref.value), np.nextafter(exact.astype(np.float32), np.float32(0)),
                      exact.astype(np.float32)).astype(dt)  # one float32 ulp: exact in float16/bfloat16 only where it rounds
    last = exact.copy()
    last.reshape(-1)[-1] = last.reshape(-1)[-1] * 2 + 1
    nan = exact.copy()
    nan.reshape(-1)[5] = np.nan
    return {"exact": exact, "wider": wider, "toward": toward, "last": last, "nan": nan}


@pytest.mark.parametrize("precision", ["strict", "relaxed", "any"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_block_by_block_judging_gives_the_whole_arrays_verdict(monkeypatch, case, precision):
    monkeypatch.setattr(compare_mod, "_BLOCK", 4096)
    rng = np.random.default_rng(3)
    inputs = make_inputs(case)
    ref = reference(case, *inputs)
    assert ref.value.size > 2 * compare_mod._BLOCK  # several blocks
    for name, y in _outputs(case, ref, rng).items():
        monkeypatch.setattr(compare_mod, "_BLOCKED_MIN", 10**12)
        whole = compare_mod.compare(case, y, ref, inputs, precision)
        monkeypatch.setattr(compare_mod, "_BLOCKED_MIN", 0)
        blocked = compare_mod.compare(case, y, ref, inputs, precision)
        assert (blocked.passed, blocked.kind, blocked.message) == (whole.passed, whole.kind, whole.message), name
        assert blocked.figures == whole.figures, name
        assert blocked.precision_met == whole.precision_met, name
