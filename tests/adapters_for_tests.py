"""Adapters that misbehave on purpose, for the runner's tests (plain classes, no base class).

Load them as `--adapter tests/adapters_for_tests.py:Class`. What `Misbehaving` does is
chosen by the case's *name* (a case-file field that travels with the case to the
worker), so a test reads like its case file: a case named `segv-...` segfaults.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from conformance.dtypes import np_dtype
from conformance.oracle import convolve


def _invalid_error(case):
    if not case.is_valid:
        raise ValueError(f"invalid convolution: {case.invalid_reason}")


class Faithful:
    """Computes every valid case with the oracle, rejects every invalid one."""

    name = "faithful"

    def version(self) -> str:
        return "1.2.0"

    def device(self) -> str:
        return "cpu"

    def supports(self, case):
        return None

    def run(self, case, x, filters, bias):
        _invalid_error(case)
        return convolve(case, x, filters, bias).astype(np_dtype(case.dtype))


class Misbehaving(Faithful):
    """Faithful, except on cases whose name starts with one of these words:

    segv (SIGSEGV), abort (SIGABRT), exit (os._exit(7)), hang (sleeps an hour),
    raise (RuntimeError), wrong (adds 1 to the result), accept (returns zeros even for an
    invalid case), unsupported (supports() gives a reason).
    """

    name = "misbehaving"

    def supports(self, case):
        if (case.name or "").startswith("unsupported"):
            return "this backend has no such kernel"
        return None

    def run(self, case, x, filters, bias):
        word = (case.name or "").split("-")[0]
        if word == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif word == "abort":
            os.abort()
        elif word == "exit":
            os._exit(7)
        elif word == "hang":
            time.sleep(3600)
        elif word == "raise":
            raise RuntimeError("deliberate failure inside the backend")
        elif word == "accept":
            return np.zeros(case.output_shape, dtype=np_dtype(case.dtype))
        y = super().run(case, x, filters, bias)
        return y + np.asarray(1, dtype=y.dtype) if word == "wrong" else y


class SegfaultsOnBfloat16(Faithful):
    """Segfaults on every bfloat16 case (as torch 2.13 did on a bfloat16 case on this CPU);
    faithful otherwise. Chosen by the case's parameters, not its name, so that
    hypothesis-drawn cases (the plugin's property tests, explore) meet it."""

    name = "segfaults-on-bf16"

    def run(self, case, x, filters, bias):
        if case.dtype == "bfloat16":
            os.kill(os.getpid(), signal.SIGSEGV)
        return super().run(case, x, filters, bias)


class SegfaultsOnBfloat16WrongOnFloat64(SegfaultsOnBfloat16):
    """SegfaultsOnBfloat16 that also adds 1 to every float64 result: a second bug to find."""

    name = "segfaults-wrong"

    def run(self, case, x, filters, bias):
        y = super().run(case, x, filters, bias)
        return y + np.asarray(1, dtype=y.dtype) if case.dtype == "float64" else y


class HangsOnFloat16(Faithful):
    """Hangs (sleeps an hour) on every float16 case; faithful otherwise (chosen by parameters)."""

    name = "hangs-on-f16"

    def run(self, case, x, filters, bias):
        if case.dtype == "float16":
            time.sleep(3600)
        return super().run(case, x, filters, bias)


class Raises(Faithful):
    """Raises on every case: valid cases are errors, invalid cases pass."""

    name = "raises"

    def run(self, case, x, filters, bias):
        raise TypeError("this backend always fails")


class FailsToImport(Faithful):
    """Its framework is not installed: building it fails, as a missing import would."""

    name = "fails-to-import"

    def __init__(self):
        import conformance_test_framework_that_does_not_exist  # noqa: F401


class Slow(Misbehaving):
    """Misbehaving, but takes 0.6 s per case: gives an interrupt test time to land mid-run, even
    on a loaded machine."""

    name = "slow"

    def run(self, case, x, filters, bias):
        time.sleep(0.6)
        return super().run(case, x, filters, bias)


class OffByOne(Faithful):
    """Adds 1 to every valid result, whatever the case: a divergence the minimiser can shrink."""

    name = "off-by-one"

    def run(self, case, x, filters, bias):
        y = super().run(case, x, filters, bias)
        return y + np.asarray(1, dtype=y.dtype)


class LogsCases(OffByOne):
    """OffByOne that appends the id of every case it runs to the file named by
    $CONFORMANCE_TEST_CASE_LOG: a test reads which cases hypothesis drew, in order."""

    name = "logs-cases"

    def run(self, case, x, filters, bias):
        with open(os.environ["CONFORMANCE_TEST_CASE_LOG"], "a", encoding="utf-8") as log:
            log.write(case.id + "\n")
        return super().run(case, x, filters, bias)


class BadSupports(Faithful):
    """Faithful, except that supports() misbehaves on cases whose name starts with:

    answer42 (returns the int 42), empty (returns ""), supportsraise (raises KeyError),
    supportssegv (SIGSEGV inside supports()), supportshang (sleeps an hour inside supports()).
    """

    name = "bad-supports"

    def supports(self, case):
        word = (case.name or "").split("-")[0]
        if word == "answer42":
            return 42
        if word == "empty":
            return ""
        if word == "supportsraise":
            raise KeyError("no such kernel table entry")
        if word == "supportssegv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if word == "supportshang":
            time.sleep(3600)
        return None


class WithOptions(Faithful):
    """Faithful, with keyword options (strings from `--adapter-option k=v`): `scale` multiplies
    the result (so an option visibly reaches the worker), `label` becomes part of the name."""

    def __init__(self, scale: str = "1", label: str = "plain"):
        self.scale = float(scale)
        self.name = f"with-options-{label}"

    def run(self, case, x, filters, bias):
        y = super().run(case, x, filters, bias)
        return (y * np.asarray(self.scale, dtype=y.dtype)).astype(y.dtype)


class ReturnsOther(Faithful):
    """Returns the right values in the wrong container, chosen by the case name: `list`
    (a nested Python list), `none` (None), `object` (an object that is no array)."""

    name = "returns-other"

    def run(self, case, x, filters, bias):
        word = (case.name or "").split("-")[0]
        y = super().run(case, x, filters, bias)
        if word == "list":
            return y.tolist()
        if word == "none":
            return None
        if word == "object":
            return ReturnsOther()
        return y


class EatsMemory(Faithful):
    """Touches 300 MiB, waits for the parent to see it, then dies of SIGKILL as an OOM kill does."""

    name = "eats-memory"

    def run(self, case, x, filters, bias):
        hog = np.ones(300 * 2 ** 20 // 8)
        time.sleep(1.5)
        os.kill(os.getpid(), signal.SIGKILL)
        return hog


class SaysOneDnn(OffByOne):
    """OffByOne whose optional fingerprint() states a kernel path (as a variant that forces
    TensorFlow's oneDNN on would): manifest `when:` conditions match against it."""

    name = "says-onednn"
    onednn = True

    def fingerprint(self) -> dict:
        return {"tensorflow.onednn": self.onednn, "build": "test"}


class SaysEigen(SaysOneDnn):
    """The same bug, on the other kernel path."""

    name = "says-eigen"
    onednn = False


class FaithfulSaysEigen(Faithful):
    """Right answers, on the path where a oneDNN-only bug cannot show."""

    name = "faithful-eigen"

    def fingerprint(self) -> dict:
        return {"tensorflow.onednn": False}


class FingerprintRaises(Faithful):
    """An optional fingerprint() that raises: the worker records the error and carries on."""

    name = "fingerprint-raises"

    def fingerprint(self) -> dict:
        raise RuntimeError("no environment here")


class SaysWaitPolicy(Faithful):
    """Faithful; its version is the thread wait policy its process was started with."""

    name = "says-wait-policy"

    def version(self) -> str:
        return f"{os.environ.get('OMP_WAIT_POLICY')}/{os.environ.get('OPENBLAS_THREAD_TIMEOUT')}"


class FlipsAnUlp(Faithful):
    """Faithful, but every other call (the first, the third ...) flips the lowest bit of
    its first element: each answer is within tolerance (on a profile that is not exact),
    no two calls in a row are alike. A case named `wrong-...` also gets 1 added (a
    divergence of its own before any repeat)."""

    name = "flips-an-ulp"

    def __init__(self):
        self.calls = 0

    def run(self, case, x, filters, bias):
        y = super().run(case, x, filters, bias)
        if (getattr(case, "name", None) or "").startswith("wrong"):  # (a repro script's case has no name)
            y = y + np.asarray(1, dtype=y.dtype)
        if self.calls % 2 == 0:
            y.reshape(-1).view(f"u{y.dtype.itemsize}")[0] ^= 1
        self.calls += 1
        return y


class ShuffledSum(Faithful):
    """A correct float32 kernel whose summation order changes from call to call, as a
    thread-count dependent split does: the kernel taps are added in float32 in a random
    order each call (conv2d with one group and depthwise; others as Faithful)."""

    name = "shuffled-sum"

    def run(self, case, x, filters, bias):
        if case.dtype != "float32" or (case.op == "conv2d" and case.groups != 1) or not case.is_valid:
            return super().run(case, x, filters, bias)
        from conformance.patches import pad, windows

        under = windows(pad(x, case.geometry.pads), case.geometry, case.kernel, case.strides, case.dilations)
        kh, kw = case.kernel
        acc = np.zeros(case.output_shape, dtype=np.float32)
        for k in np.random.default_rng().permutation(kh * kw):  # unseeded: another order each call
            patch, w = under[:, :, :, k // kw, k % kw, :], filters[k // kw, k % kw]
            if case.op == "conv2d":
                acc += np.einsum("nhwc,co->nhwo", patch, w)
            else:
                acc += np.einsum("nhwc,cm->nhwcm", patch, w).reshape(acc.shape)
        return acc if bias is None else acc + bias


class WritesIntoInputs(Faithful):
    """Faithful, then zeroes the x it was given: only fresh inputs per call keep it right."""

    name = "writes-into-inputs"

    def run(self, case, x, filters, bias):
        y = super().run(case, x, filters, bias)
        x[...] = 0
        return y
