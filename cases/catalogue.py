"""Case files: loading and validating the YAML catalogue, regressions and user files.

A case file is a YAML mapping (see docs/cases.md, "Case files"):

    description: one line about the file          # optional
    defaults:                                     # optional: case fields shared by every entry
      op: depthwise_conv2d
      dtype: float32
    cases:                                        # required: a list of entries
      - name: dw-stride2-dilation2                # unique in the catalogue
        reason: TF returns a wrongly shaped result here      # one line
        batch: 1
        height: 9
        width: 9
        in_channels: 2
        kernel: [3, 3]
        channel_multiplier: 1
        strides: [2, 2]
        dilations: [2, 2]
        padding: SAME
        sets: [smoke]                             # optional: named sets the entry belongs to
        expect: error                             # optional: "error" (invalid case) or "result"
        found_by: {backend: tensorflow, ...}      # optional: free metadata (regressions)
        source:                                   # where a real layer comes from (required in cases/models/)
          model: ResNet-50
          layer: layer3.1.conv2
          reference: He et al. 2016 (arXiv:1512.03385); torchvision.models.resnet50
          also: [DeepBench server ...]            # optional: the same geometry elsewhere
        default_dtypes: [float32, float16]        # optional, with sets: [default]: the dtypes
                                                  # the default set runs the entry at

Invariants
- Nothing in a file is executed: the text goes through `yaml.safe_load` only, so a
  `!!python/...` tag is an error. Files above `MAX_FILE_BYTES` are refused unread, and a
  document whose aliases would expand to more than `MAX_NODES` nodes is refused before
  it is built (the "billion laughs" attack).
- Every problem is a `CaseFileError` that names the file, the case (its name, or its
  index when it has none) and the rule broken; problems with a case's own fields reuse
  `CaseError`'s field, value and rule. Sizes beyond `spec.MAX_ELEMENTS`/`MAX_MACS` are
  refused by `Case` itself and reported the same way.
- Entry order is file order; `load_catalogue` reads files in sorted name order, so the
  catalogue is the same list on every machine. Two entries with the same name or the
  same case id (the same problem twice) are an error, across files too.
- Catalogue files are strict: every entry has a `name` and a one-line `reason`, and an
  invalid case must say `expect: error` (so an invalid case is never written by
  accident). Other files may leave `name` out (the case id is used) and `reason` out.
- Model files (cases/models/*.yaml, the `models` set) are catalogue files whose every entry
  also has a `source` (model, layer, reference: the paper or reference implementation the
  shape comes from) and is a valid case; no two of them share a geometry (case id).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from conformance.spec import DTYPES, Case, CaseError

#: Where the curated catalogue and the regressions written by `conformance explore` live.
CATALOGUE_DIR = Path(__file__).resolve().parent / "catalogue"
REGRESSIONS_DIR = Path(__file__).resolve().parent / "regressions"
#: The layers of published networks (the `models` set).
MODELS_DIR = Path(__file__).resolve().parent / "models"

#: Larger files are refused unread: a case file is a few kB of text.
MAX_FILE_BYTES = 2 << 20
#: Largest number of YAML nodes a document may expand to once aliases are followed.
MAX_NODES = 200_000

CASE_FIELDS = tuple(f.name for f in dataclasses.fields(Case) if f.name not in ("name", "reason"))
#: Keys an entry may carry besides the case fields.
ENTRY_KEYS = ("name", "reason", "sets", "expect", "found_by", "source", "default_dtypes")
#: Keys of an entry's `source`: the first three are required strings, `also` a list of strings.
SOURCE_KEYS = ("model", "layer", "reference", "also")
FILE_KEYS = ("description", "defaults", "cases")
EXPECTATIONS = ("error", "result")


class CaseFileError(ValueError):
    """A problem in a case file: names the file, the case and the rule.

    `path`, `case` (name, `#index` or None for the file as a whole) and, when the problem
    is a case field, `field`, `value`, `rule` (as in `CaseError`).
    """

    def __init__(self, path: str | Path, case: str | None, rule: str, *, field: str | None = None,
                 value: Any = None):
        self.path = str(path)
        self.case = case
        self.field = field
        self.value = value
        self.rule = rule
        where = f"{self.path}: case {case}" if case is not None else self.path
        if field is not None:
            super().__init__(f"{where}: {field}: expected {rule}, received {value!r}")
        else:
            super().__init__(f"{where}: {rule}")


class Entry(NamedTuple):
    """One loaded entry: the case and what the file says about it."""

    case: Case
    path: str
    index: int
    sets: tuple[str, ...]
    expect: str | None
    found_by: dict | None
    source: dict | None = None
    default_dtypes: tuple[str, ...] | None = None


# ---- reading YAML safely ----------------------------------------------------------


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes the document has once every alias is expanded (memoised: aliases share nodes)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a recursive alias counts once instead of looping
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[key] = min(size, MAX_NODES + 1)
    return memo[key]


def read_yaml(path: str | Path) -> Any:
    """The document in `path`, through the safe loader only, size- and alias-bounded."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise CaseFileError(p, None, f"cannot read the file ({exc.strerror or exc})") from None
    if size > MAX_FILE_BYTES:
        raise CaseFileError(p, None, f"expected a case file of at most {MAX_FILE_BYTES} bytes, received {size} bytes")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(p, None, f"cannot read the file as UTF-8 text ({exc})") from None
    return parse_yaml(text, p)


def parse_yaml(text: str, path: str | Path = "<text>") -> Any:
    """`yaml.safe_load(text)` after refusing documents that alias-expand beyond MAX_NODES."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None and _expanded_size(root, {}) > MAX_NODES:
            raise CaseFileError(path, None, f"expected at most {MAX_NODES} YAML nodes once aliases are "
                                            "expanded, received more (an alias bomb?)")
        return yaml.safe_load(text)
    except RecursionError:
        raise CaseFileError(path, None, "expected YAML nested a few levels deep, received nesting too deep to read") from None
    except yaml.YAMLError as exc:
        # Covers syntax errors, several documents and unsafe tags such as !!python/object.
        detail = " ".join(str(exc).split())
        raise CaseFileError(path, None, f"expected valid YAML (safe subset, one document), received an error: {detail}") from None


# ---- validating --------------------------------------------------------------------


def _label(raw: Any, index: int) -> str:
    name = raw.get("name") if isinstance(raw, dict) else None
    return f"{name!r} (#{index})" if isinstance(name, str) and name else f"#{index}"


def _source(path: Path, label: str, source: Any, required: bool) -> dict | None:
    if source is None:
        if required:
            raise CaseFileError(path, label, "a source (model, layer, reference): every model case says where "
                                             "its shape comes from", field="source", value=None)
        return None
    rule = "a mapping with model, layer and reference (non-empty one-line strings) and optionally also (a list)"
    if not isinstance(source, dict) or any(k not in SOURCE_KEYS for k in source):
        raise CaseFileError(path, label, rule, field="source", value=source)
    for key in SOURCE_KEYS[:3]:
        v = source.get(key)
        if not isinstance(v, str) or not v.strip() or "\n" in v.strip():
            raise CaseFileError(path, label, rule, field=f"source.{key}", value=v)
    also = source.get("also", [])
    if not isinstance(also, list) or not all(isinstance(a, str) and a.strip() for a in also):
        raise CaseFileError(path, label, "a list of non-empty strings", field="source.also", value=also)
    return dict(source)


def _entry(path: Path, index: int, raw: Any, defaults: dict, strict: bool, model: bool = False) -> Entry:
    label = _label(raw, index)
    if not isinstance(raw, dict):
        raise CaseFileError(path, f"#{index}", "a mapping of case fields", field="case", value=raw)
    unknown = sorted((k for k in raw if k not in CASE_FIELDS and k not in ENTRY_KEYS), key=str)
    if unknown:
        known = ", ".join(CASE_FIELDS + ENTRY_KEYS)
        raise CaseFileError(path, label, f"a known field ({known})", field=str(unknown[0]), value=raw[unknown[0]])
    name, reason = raw.get("name"), raw.get("reason")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise CaseFileError(path, label, "a non-empty string", field="name", value=name)
    if reason is not None and (not isinstance(reason, str) or not reason.strip() or "\n" in reason.strip()):
        raise CaseFileError(path, label, "a one-line string", field="reason", value=reason)
    if strict and name is None:
        raise CaseFileError(path, label, "a name (every catalogue case is named)", field="name", value=None)
    if strict and reason is None:
        raise CaseFileError(path, label, "a one-line reason (every catalogue case says why it is there)",
                            field="reason", value=None)
    sets = raw.get("sets", [])
    if not isinstance(sets, list) or not all(isinstance(s, str) and s for s in sets):
        raise CaseFileError(path, label, "a list of set names", field="sets", value=sets)
    expect = raw.get("expect")
    if expect is not None and expect not in EXPECTATIONS:
        raise CaseFileError(path, label, "'error' or 'result'", field="expect", value=expect)
    found_by = raw.get("found_by")
    if found_by is not None and not isinstance(found_by, dict):
        raise CaseFileError(path, label, "a mapping of metadata (backend, versions, date, ...)",
                            field="found_by", value=found_by)
    source = _source(path, label, raw.get("source"), required=model)
    default_dtypes = raw.get("default_dtypes")
    if default_dtypes is not None:
        if (not isinstance(default_dtypes, list) or not default_dtypes
                or not all(isinstance(d, str) and d in DTYPES for d in default_dtypes)):
            raise CaseFileError(path, label, f"a list of dtypes ({', '.join(DTYPES)})", field="default_dtypes",
                                value=default_dtypes)
        if "default" not in sets:
            raise CaseFileError(path, label, "default_dtypes only with sets: [default]", field="default_dtypes",
                                value=default_dtypes)
    fields = {**defaults, **{k: v for k, v in raw.items() if k in CASE_FIELDS}}
    fields["name"] = name.strip() if name else None
    fields["reason"] = reason.strip() if reason else None
    try:
        case = Case.from_dict(fields)
    except CaseError as exc:
        raise CaseFileError(path, label, exc.rule, field=exc.field, value=exc.value) from None
    except TypeError as exc:  # e.g. a padding of the wrong nesting that from_dict cannot unpack
        raise CaseFileError(path, label, f"well-formed case fields ({exc})") from None
    if case.name is None:
        case = dataclasses.replace(case, name=case.id)
    invalid = case.invalid_reason
    if expect == "error" and invalid is None:
        raise CaseFileError(path, label, "an invalid case because of 'expect: error', but the case is valid")
    if invalid is not None and (expect == "result" or (strict and expect != "error")):
        raise CaseFileError(path, label, f"a valid case, but it is invalid ({invalid}); "
                                         "write 'expect: error' if that is intended")
    if model and invalid is not None:
        raise CaseFileError(path, label, f"a valid case (a model's layer), but it is invalid ({invalid})")
    return Entry(case, str(path), index, tuple(sets), expect, found_by, source,
                 tuple(default_dtypes) if default_dtypes else None)


def load_entries(path: str | Path, *, strict: bool = False, model: bool = False) -> list[Entry]:
    """Every entry of one case file, validated. `strict` applies the catalogue's rules,
    `model` also those of cases/models/ (a source on every entry, valid cases only)."""
    strict = strict or model
    p = Path(path)
    doc = read_yaml(p)
    if not isinstance(doc, dict):
        raise CaseFileError(p, None, f"expected a mapping with a 'cases:' list, received {type(doc).__name__}")
    if "cases" not in doc:
        hint = " (this looks like a single case: put it in a list under 'cases:')" if "op" in doc else ""
        raise CaseFileError(p, None, f"expected a mapping with a 'cases:' list, received keys {sorted(map(str, doc))}{hint}")
    unknown = sorted(str(k) for k in doc if k not in FILE_KEYS)
    if unknown:
        raise CaseFileError(p, None, f"expected only the top-level keys {', '.join(FILE_KEYS)}, received {unknown[0]!r}")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise CaseFileError(p, None, f"expected 'defaults' to be a mapping of case fields, received {defaults!r}")
    bad = sorted(str(k) for k in defaults if k not in CASE_FIELDS)
    if bad:
        raise CaseFileError(p, None, f"expected 'defaults' to hold case fields only ({', '.join(CASE_FIELDS)}), "
                                     f"received {bad[0]!r}")
    raw_cases = doc["cases"]
    if not isinstance(raw_cases, list):
        raise CaseFileError(p, None, f"expected 'cases' to be a list, received {type(raw_cases).__name__}")
    entries = [_entry(p, i, raw, defaults, strict, model) for i, raw in enumerate(raw_cases)]
    check_unique(entries)
    return entries


def check_unique(entries: list[Entry]) -> None:
    """Refuse two entries with the same name or the same case id, naming both."""
    names: dict[str, Entry] = {}
    ids: dict[str, Entry] = {}
    for e in entries:
        label = _label({"name": e.case.name}, e.index)
        for key, seen, what in ((e.case.id, ids, "case id"), (e.case.name, names, "name")):
            if key in seen:
                first = seen[key]
                raise CaseFileError(e.path, label, f"a unique {what}, but {key!r} is also case "
                                                   f"#{first.index} of {first.path}")
            seen[key] = e


def load_file(path: str | Path) -> list[Case]:
    """The cases of one case file (a user's, a regression or a catalogue file)."""
    return [e.case for e in load_entries(path)]


def catalogue_files() -> list[Path]:
    return sorted(CATALOGUE_DIR.glob("*.yaml"))


def regression_files() -> list[Path]:
    return sorted(REGRESSIONS_DIR.glob("*.yaml")) if REGRESSIONS_DIR.is_dir() else []


def load_catalogue_entries() -> list[Entry]:
    """Catalogue entries (strict rules), then regressions; unique names and ids across all."""
    entries: list[Entry] = []
    for path in catalogue_files():
        entries.extend(load_entries(path, strict=True))
    for path in regression_files():
        entries.extend(load_entries(path))
    check_unique(entries)
    return entries


def model_files() -> list[Path]:
    return sorted(MODELS_DIR.glob("*.yaml")) if MODELS_DIR.is_dir() else []


def load_model_entries() -> list[Entry]:
    """cases/models/*.yaml in sorted file order (model rules); unique names and geometries."""
    entries: list[Entry] = []
    for path in model_files():
        entries.extend(load_entries(path, model=True))
    check_unique(entries)
    return entries


def load_catalogue() -> list[Case]:
    """cases/catalogue/*.yaml then cases/regressions/*.yaml, each in sorted file order."""
    return [e.case for e in load_catalogue_entries()]


def dump_cases(cases: list[Case], *, description: str | None = None,
               found_by: dict | None = None) -> str:
    """A case file for `cases` (what `conformance explore` writes to cases/regressions/).

    `found_by` (backend, versions, date, ...) is attached to every entry; the output
    loads back with `load_file` to the same cases.
    """
    doc: dict[str, Any] = {}
    if description:
        doc["description"] = description
    entries = []
    for case in cases:
        d = case.to_dict()
        d.setdefault("name", case.id)
        if case.invalid_reason is not None:
            d["expect"] = "error"
        if found_by:
            d["found_by"] = dict(found_by)
        entries.append(d)
    doc["cases"] = entries
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=120)
