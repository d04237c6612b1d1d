"""The vocabulary of findings: features of a Case, atoms over them, and their conjunctions.

A finding's predicate says which cases one bug covers ("depthwise_conv2d with strides > 1
and dilations > 1"). It must be evaluable on any Case, from anywhere (a run's records, a
merge of shards, a manifest entry, the pytest plugin's drawn cases), so it is built from
this module's features only.

Invariants
- A feature is a pure function of a Case (valid or invalid): its parameters and what
  `spec` derives from them (geometry, K, validity). No inputs, no backend.
- An atom tests one feature: categorical `in` (a set of values), boolean `is`/`not`,
  integer bounds `>=`/`<=`, and residues `% m = r` / `% m != 0`. A numeric atom is False
  where its feature has no value (the channel multiplier of a conv2d).
- A predicate without an atom on `validity` covers valid cases only: a bug in how a
  backend computes is one mechanism, and how it rejects (or accepts) an invalid case is
  another. A predicate about invalid cases names their validity category.
- A predicate is a conjunction of atoms in canonical order (FEATURES order, then the
  atom's form), with its values canonical (sets in domain order). Its `text` is
  therefore canonical too: equal predicates have equal text, and `parse(text)` gives it
  back. Findings hash this text into their id, so it never depends on discovery order.
- `words()` is the plain-language form for titles; it is never parsed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Iterable

from .spec import ALL_PROFILES, DATA_FORMATS, DTYPES, OPS, Case, Geometry

#: The pseudo-feature of an atom that holds when its sub-atoms all hold on one spatial axis.
AXIS = "axis"
#: Why a case is invalid, as a category (`invalid_reason` in words, without the numbers).
VALIDITY = ("valid", "empty_output", "groups_exceed_in_channels", "groups_not_dividing_in_channels",
            "groups_not_dividing_out_channels", "filter_channels_mismatch")
PADDING_KINDS = ("VALID", "SAME", "explicit")


def validity(c: Case, g: Geometry | None = None) -> str:
    """The VALIDITY category of `c` (the first reason `Case.invalid_reason` would give);
    `g`: its geometry, where the caller has it."""
    g = g or c.geometry
    if g.out_h <= 0 or g.out_w <= 0:
        return "empty_output"
    if c.forward_op == "conv2d":
        if c.in_channels % c.groups:
            return "groups_exceed_in_channels" if c.groups > c.in_channels else "groups_not_dividing_in_channels"
        if c.out_channels % c.groups:
            return "groups_not_dividing_out_channels"
        if c.filter_channels is not None and c.filter_channels * c.groups != c.in_channels:
            return "filter_channels_mismatch"
    return "valid"


def _effective_dilation(c: Case, g: Geometry) -> int:
    """The largest dilation on an axis whose kernel is wider than 1 (elsewhere a dilation
    changes nothing: a one-tap kernel samples the same pixel whatever its dilation)."""
    return max([d for d, k in zip(c.dilations, c.kernel) if k > 1], default=1)


def _pad_kind(c: Case, g: Geometry) -> str:
    return c.padding if isinstance(c.padding, str) else "explicit"


@dataclass(frozen=True)
class Feature:
    """One function of a Case (and its geometry, computed once). `kind`: "cat" (values in
    `domain`), "bool" or "int"."""

    name: str
    kind: str
    get: Callable[[Case, Geometry], Any]
    noun: str  # how words() names it
    domain: tuple = ()


FEATURES: tuple[Feature, ...] = (
    Feature("op", "cat", lambda c, g: c.op, "op", OPS),
    Feature("validity", "cat", validity, "validity", VALIDITY),
    Feature("dtype", "cat", lambda c, g: c.dtype, "dtype", DTYPES),
    Feature("profile", "cat", lambda c, g: c.profile, "profile", ALL_PROFILES),
    Feature("data_format", "cat", lambda c, g: c.data_format, "data_format", DATA_FORMATS),
    Feature("padding", "cat", _pad_kind, "padding", PADDING_KINDS),
    Feature("bias", "bool", lambda c, g: c.bias, "a bias"),
    Feature("asymmetric_pad", "bool", lambda c, g: any(lo != hi for lo, hi in g.pads), "asymmetric pads"),
    Feature("batch", "int", lambda c, g: c.batch, "batch"),
    Feature("height", "int", lambda c, g: c.height, "input height"),
    Feature("width", "int", lambda c, g: c.width, "input width"),
    Feature("in_channels", "int", lambda c, g: c.in_channels, "in_channels"),
    Feature("per_group_channels", "int", lambda c, g: c.filter_in_channels, "in_channels per group"),
    Feature("out_channels", "int", lambda c, g: c.output_channels, "output channels"),
    Feature("per_group_out_channels", "int",
            lambda c, g: c.out_channels // c.groups if c.forward_op == "conv2d" else c.channel_multiplier,
            "output channels per group"),
    Feature("groups", "int", lambda c, g: c.groups if c.forward_op == "conv2d" else None, "groups"),
    Feature("multiplier", "int", lambda c, g: c.channel_multiplier, "channel multiplier"),
    Feature("kernel", "int", lambda c, g: max(c.kernel), "kernel size"),
    Feature("kernel_h", "int", lambda c, g: c.kernel[0], "kernel height"),
    Feature("kernel_w", "int", lambda c, g: c.kernel[1], "kernel width"),
    Feature("stride", "int", lambda c, g: max(c.strides), "strides"),
    Feature("stride_h", "int", lambda c, g: c.strides[0], "stride (height)"),
    Feature("stride_w", "int", lambda c, g: c.strides[1], "stride (width)"),
    Feature("dilation", "int", _effective_dilation, "dilations"),
    Feature("dilation_h", "int", lambda c, g: c.dilations[0], "dilation (height)"),
    Feature("dilation_w", "int", lambda c, g: c.dilations[1], "dilation (width)"),
    Feature("pad", "int", lambda c, g: max(max(p) for p in g.pads), "largest pad"),
    Feature("out_h", "int", lambda c, g: g.out_h, "output height"),
    Feature("out_w", "int", lambda c, g: g.out_w, "output width"),
    Feature("output_pixels", "int", lambda c, g: g.out_h * g.out_w, "output pixels"),
    Feature("K", "int", lambda c, g: c.reduction_size, "K (products per output)"),
    Feature("input_elements", "int", lambda c, g: c.batch * c.height * c.width * c.in_channels, "input elements"),
    Feature("output_elements", "int",
            lambda c, g: c.batch * g.out_h * g.out_w * c.output_channels, "output elements"),
)
BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
_ORDER = {f.name: i for i, f in enumerate(FEATURES)}
_ORDER[AXIS] = len(FEATURES)
#: The features an `axis` atom tests on one spatial axis: generic name -> (height's, width's).
PER_AXIS = {"size": ("height", "width"), "kernel": ("kernel_h", "kernel_w"), "stride": ("stride_h", "stride_w"),
            "dilation": ("dilation_h", "dilation_w"), "out": ("out_h", "out_w")}
_GENERIC = {h: g for g, (h, w) in PER_AXIS.items()} | {w: g for g, (h, w) in PER_AXIS.items()}
_NOUNS = {"size": "input size", "kernel": "kernel", "stride": "stride", "dilation": "dilation", "out": "output size"}
#: Atom forms in canonical order within one feature.
FORMS = ("in", "is", "not", "=", ">=", "<=", "%=", "%!=", "some")


@lru_cache(maxsize=1 << 16)
def features(case: Case) -> dict[str, Any]:
    """Every feature of `case`, by name (cached: treat the dict as read-only)."""
    g = case.geometry
    return {f.name: f.get(case, g) for f in FEATURES}


@dataclass(frozen=True)
class Atom:
    """One test of one feature. `value`: a tuple of domain values (`in`), an int (`=`,
    `>=`, `<=`), (modulus, residue) (`%=`), the modulus (`%!=`), None (`is`, `not`).
    Feature AXIS, form `some`: `value` is a tuple of integer atoms on height's features
    (PER_AXIS), and the atom holds when they all hold on the height axis or all on the
    width axis ("a stride and a dilation on the same axis")."""

    feature: str
    form: str
    value: Any = None

    def __post_init__(self) -> None:
        if self.feature == AXIS:
            subs = tuple(sorted(self.value, key=lambda a: (a.sort_key, a.text())))
            if self.form != "some" or not subs or any(a.feature not in _GENERIC or a.feature != PER_AXIS[
                    _GENERIC[a.feature]][0] for a in subs):
                raise ValueError(f"atom on axis: expected form 'some' and atoms on {', '.join(PER_AXIS)}, "
                                 f"received {self.form!r} {self.value!r}")
            object.__setattr__(self, "value", subs)
            return
        f = BY_NAME.get(self.feature)
        if f is None:
            raise ValueError(f"atom feature: expected one of {', '.join(BY_NAME)}, received {self.feature!r}")
        allowed = {"cat": ("in",), "bool": ("is", "not"), "int": ("=", ">=", "<=", "%=", "%!=")}[f.kind]
        if self.form not in allowed:
            raise ValueError(f"atom on {self.feature}: expected a form in {allowed}, received {self.form!r}")
        if self.form == "in":
            values = tuple(v for v in f.domain if v in set(self.value))
            if not values or len(values) != len(set(self.value)):
                raise ValueError(f"atom on {self.feature}: expected values among {f.domain}, received {self.value!r}")
            object.__setattr__(self, "value", values)

    def on_axis(self, side: int) -> tuple["Atom", ...]:
        """An AXIS atom's sub-atoms on the height (0) or width (1) axis's features."""
        return tuple(Atom(PER_AXIS[_GENERIC[a.feature]][side], a.form, a.value) for a in self.value)

    def holds(self, values: dict[str, Any]) -> bool:
        if self.feature == AXIS:
            return any(all(a.holds(values) for a in self.on_axis(side)) for side in (0, 1))
        v = values[self.feature]
        if self.form == "in":
            return v in self.value
        if self.form == "is":
            return bool(v)
        if self.form == "not":
            return not v
        if v is None:
            return False
        if self.form == "=":
            return v == self.value
        if self.form == ">=":
            return v >= self.value
        if self.form == "<=":
            return v <= self.value
        if self.form == "%=":
            return v % self.value[0] == self.value[1]
        return v % self.value != 0

    @property
    def sort_key(self) -> tuple:
        return (_ORDER[self.feature], FORMS.index(self.form))

    def text(self) -> str:
        """Canonical, parseable: `op = conv2d`, `dtype in {float16, bfloat16}`, `bias`,
        `K >= 2305`, `K % 256 != 0`, `per_group_channels % 8 = 3`, `axis(stride >= 2, dilation >= 2)`."""
        if self.feature == AXIS:
            return "axis(" + ", ".join(_GENERIC[a.feature] + a.text()[len(a.feature):] for a in self.value) + ")"
        f = BY_NAME[self.feature]
        if self.form == "in":
            if len(self.value) == 1:
                return f"{self.feature} = {self.value[0]}"
            rest = [v for v in f.domain if v not in self.value]
            if len(rest) == 1:
                return f"{self.feature} != {rest[0]}"
            return f"{self.feature} in {{{', '.join(self.value)}}}"
        if self.form == "is":
            return self.feature
        if self.form == "not":
            return f"not {self.feature}"
        if self.form == "%=":
            return f"{self.feature} % {self.value[0]} = {self.value[1]}"
        if self.form == "%!=":
            return f"{self.feature} % {self.value} != 0"
        return f"{self.feature} {self.form} {self.value}"

    def words(self) -> str:
        """Plain language for titles: "depthwise_conv2d", "dtype float16 or bfloat16", "strides > 1"."""
        if self.feature == AXIS:
            parts = [f"{_NOUNS[_GENERIC[a.feature]]} {a.phrase()}" for a in self.value]
            return (", ".join(parts[:-1]) + " and " if len(parts) > 1 else "") + parts[-1] + " on one axis"
        f = BY_NAME[self.feature]
        if self.form == "in":
            if self.feature == "op":
                return " or ".join(self.value)
            if self.feature == "validity":
                return " or ".join(_VALIDITY_WORDS[v] for v in self.value)
            rest = [v for v in f.domain if v not in self.value]
            if len(rest) == 1 and len(self.value) > 2:
                return f"{f.noun} other than {rest[0]}"
            return f"{f.noun} {' or '.join(self.value)}"
        if self.form == "is":
            return f.noun
        if self.form == "not":
            return "no " + f.noun.split(" ", 1)[1] if f.noun.startswith(("a ", "an ")) else f"not {f.noun}"
        return f"{f.noun} {self.phrase()}"

    def phrase(self) -> str:
        """An integer atom's test without its noun: ">= 2305", "% 8 == 3", "not a multiple of 256"."""
        if self.form == "%=":
            return f"% {self.value[0]} == {self.value[1]}"
        if self.form == "%!=":
            return f"not a multiple of {self.value}"
        if self.form == ">=" and self.value == 2:
            return "> 1"
        return f"{self.form} {self.value}"

    def to_dict(self) -> dict[str, Any]:
        if self.feature == AXIS:
            return {"feature": AXIS, "form": self.form, "value": [a.to_dict() for a in self.value], "text": self.text()}
        value = list(self.value) if isinstance(self.value, tuple) else self.value
        return {"feature": self.feature, "form": self.form, "value": value, "text": self.text()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Atom":
        v = d.get("value")
        if d.get("feature") == AXIS:
            return cls(AXIS, d["form"], tuple(cls.from_dict(x) for x in v))
        return cls(d["feature"], d["form"], tuple(v) if isinstance(v, list) else v)


_VALIDITY_WORDS = {
    "valid": "valid", "empty_output": "an empty output", "groups_exceed_in_channels": "groups > in_channels",
    "groups_not_dividing_in_channels": "groups not dividing in_channels",
    "groups_not_dividing_out_channels": "groups not dividing out_channels",
    "filter_channels_mismatch": "filter channels that disagree with the input",
}


class Predicate:
    """A conjunction of atoms, canonical (see the module invariants). Empty: true."""

    def __init__(self, atoms: Iterable[Atom] = ()):
        self.atoms: tuple[Atom, ...] = tuple(sorted(_normal(atoms), key=lambda a: (a.sort_key, a.text())))

    def holds(self, case: Case | dict[str, Any]) -> bool:
        """Whether every atom holds for a Case (or its `features` dict)."""
        values = features(case) if isinstance(case, Case) else case
        if values["validity"] != "valid" and not any(a.feature == "validity" for a in self.atoms):
            return False
        return all(a.holds(values) for a in self.atoms)

    def text(self) -> str:
        return " and ".join(a.text() for a in self.atoms) if self.atoms else "true"

    def words(self) -> str:
        """"depthwise_conv2d with strides > 1 and dilations > 1"; "convolution with ..." without
        an op; the atoms on one integer feature share its noun ("K >= 2305 and not a multiple of 256")."""
        lead = [a for a in self.atoms if a.feature == "op" and a.form == "in"]
        rest: list[str] = []
        by_feature: dict[str, list[Atom]] = {}
        for a in self.atoms:
            if a not in lead:
                by_feature.setdefault(a.feature, []).append(a)
        for name, atoms in by_feature.items():
            if name != AXIS and BY_NAME[name].kind == "int" and len(atoms) > 1:
                rest.append(f"{BY_NAME[name].noun} {' and '.join(a.phrase() for a in atoms)}")
            else:
                rest += [a.words() for a in atoms]
        subject = lead[0].words() if lead else "convolution"
        if any(a.feature == "validity" and "valid" not in a.value for a in self.atoms):
            subject = "invalid " + subject
        if not rest:
            return subject
        return subject + " with " + (", ".join(rest[:-1]) + " and " if len(rest) > 1 else "") + rest[-1]

    def without(self, atom: Atom) -> "Predicate":
        return Predicate(a for a in self.atoms if a != atom)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Predicate) and other.text() == self.text()

    def __hash__(self) -> int:
        return hash(self.text())

    def __repr__(self) -> str:
        return f"Predicate({self.text()!r})"

    def to_list(self) -> list[dict[str, Any]]:
        return [a.to_dict() for a in self.atoms]

    @classmethod
    def from_list(cls, items: list[dict[str, Any]]) -> "Predicate":
        return cls(Atom.from_dict(d) for d in items)


def _normal(atoms: Iterable[Atom]) -> list[Atom]:
    """One `in` per categorical feature (the intersection), the tightest bounds per integer
    feature (`=` where they meet), duplicates dropped: the canonical form of a conjunction."""
    out: dict[str, Atom] = {}
    bounds: dict[str, list[int | None]] = {}
    for a in atoms:
        if a.form == "in" and a.feature in out:
            both = tuple(v for v in out[a.feature].value if v in a.value)
            out[a.feature] = Atom(a.feature, "in", both) if both else a  # an empty set describes no case
        elif a.form in ("=", ">=", "<="):
            lo, hi = bounds.setdefault(a.feature, [None, None])
            if a.form in ("=", ">="):
                lo = a.value if lo is None else max(lo, a.value)
            if a.form in ("=", "<="):
                hi = a.value if hi is None else min(hi, a.value)
            bounds[a.feature] = [lo, hi]
        else:
            out.setdefault(a.text(), a) if a.form != "in" else out.setdefault(a.feature, a)
    result = list(out.values())
    for name, (lo, hi) in bounds.items():
        if lo is not None and lo == hi:
            result.append(Atom(name, "=", lo))
        else:
            result += ([Atom(name, ">=", lo)] if lo is not None else []) + ([Atom(name, "<=", hi)] if hi is not None else [])
    return result


def parse(text: str) -> Predicate:
    """The Predicate whose `text()` is `text`; ValueError naming the part that is not an atom."""
    if text.strip() == "true":
        return Predicate()
    return Predicate(_parse_atom(part.strip(), text) for part in text.split(" and "))


def _parse_atom(part: str, whole: str) -> Atom:
    def bad() -> ValueError:
        return ValueError(f"predicate {whole!r}: expected atoms like 'op = conv2d', 'dtype in {{float16, bfloat16}}', "
                          f"'bias', 'not bias', 'K >= 2305', 'K % 256 != 0' joined by ' and ', received {part!r}")

    words = part.split()
    try:
        if part.startswith("axis(") and part.endswith(")"):
            subs = []
            for inner in part[5:-1].split(","):
                name, _, rest = inner.strip().partition(" ")
                if name not in PER_AXIS:
                    raise bad()
                subs.append(_parse_atom(f"{PER_AXIS[name][0]} {rest}", whole))
            return Atom(AXIS, "some", tuple(subs))
        if len(words) == 1:
            return Atom(words[0], "is")
        if len(words) == 2 and words[0] == "not":
            return Atom(words[1], "not")
        name, rest = words[0], words[1:]
        f = BY_NAME.get(name)
        if f is None:
            raise bad()
        if f.kind == "cat":
            if rest[0] == "=" and len(rest) == 2:
                return Atom(name, "in", (rest[1],))
            if rest[0] == "!=" and len(rest) == 2:
                return Atom(name, "in", tuple(v for v in f.domain if v != rest[1]))
            if rest[0] == "in":
                inner = " ".join(rest[1:]).strip()
                if not (inner.startswith("{") and inner.endswith("}")):
                    raise bad()
                return Atom(name, "in", tuple(v.strip() for v in inner[1:-1].split(",")))
            raise bad()
        if rest[0] == "%" and len(rest) == 4:
            m = int(rest[1])
            if rest[2] == "=":
                return Atom(name, "%=", (m, int(rest[3])))
            if rest[2] == "!=" and rest[3] == "0":
                return Atom(name, "%!=", m)
            raise bad()
        if rest[0] in ("=", ">=", "<=") and len(rest) == 2:
            return Atom(name, rest[0], int(rest[1]))
        raise bad()
    except (ValueError, IndexError) as exc:
        if str(exc).startswith("predicate"):
            raise
        raise bad() from None
