"""results.json and results.jsonl: the plain-data record of a run (docs/results-schema.md).

Invariants
- A run is a plain dict of JSON types only; `write` refuses NaN/Inf (they are written as
  the strings "nan"/"inf"/"-inf" by the code that builds records, never as bare tokens).
- One record per (case_id, backend) pair; `SCHEMA_VERSION` changes whenever a field
  changes meaning or disappears (new optional fields do not bump it).
- results.jsonl is the stream written while a run goes: line 1 is a header
  (`{"type": "header", ...}` with the run parameters), every further line one record
  (`{"type": "record", "record": {...}}`), each flushed as soon as it is written, so a run
  killed at any point keeps every finished record; a torn last line is ignored on reading.
  Once a run completes and results.json (written durably by `write`) holds every record
  and the run's parameters (`run.params`), the stream is removed (`drop_stream`): --resume
  reads that results.json (`resume_point`) and starts a new stream from it
  (`JsonlWriter.replay`). A run interrupted or killed keeps the plain stream, which --resume
  prefers; a completed stream an earlier version kept compressed (results.jsonl.gz) is read too.
- results.json is written in schema 3's compact encoding (`results_codec`), and `load`
  gives the full records back, from a file of schema 2 or 3.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import platform
import socket
import sys
import zlib
from pathlib import Path
from typing import Any, Iterable

from . import results_codec
from .vocabulary import FAILING_STATUSES, STATUSES

SCHEMA_VERSION = 3  # 2: precision contracts, findings, fingerprints; 3: the compact encoding (`encode`)
#: Versions `load` reads (the fingerprint fields are optional: absent = not recorded); a
#: version-2 file is the decoded shape itself.
READABLE_VERSIONS = (2, SCHEMA_VERSION)

RECORD_FIELDS = ("case_id", "case", "backend", "backend_version", "device", "status", "kind", "known",
                 "message", "figures", "worst", "heatmap", "channel_errors", "diagnosis", "minimised",
                 "repro", "error", "exit", "time", "notes", "precision", "precision_met")
#: Optional record fields (absent reads as null): the id of the worker's environment
#: fingerprint, and the repeats of the case with the same inputs (`repeats.difference`).
OPTIONAL_RECORD_FIELDS = ("fingerprint", "repeat")
TOP_FIELDS = ("schema_version", "tool", "environment", "run", "backends", "records")
#: Optional top-level fields (absent reads as empty): fingerprint id -> environment fingerprint.
OPTIONAL_TOP_FIELDS = ("fingerprints",)


class ResultsError(ValueError):
    """An unreadable or incompatible results file; the message names the file and the rule."""


def new_record(case_dict: dict[str, Any], case_id: str, backend: str, **fields: Any) -> dict[str, Any]:
    """A record with every schema field present (defaults: null / empty), `fields` applied."""
    rec: dict[str, Any] = {
        "case_id": case_id, "case": case_dict, "backend": backend, "backend_version": None, "device": None,
        "status": None, "kind": None, "known": None, "message": "", "figures": {}, "worst": [],
        "heatmap": None, "channel_errors": None, "diagnosis": None, "minimised": None, "repro": None,
        "error": None, "exit": None, "time": {"backend_s": None, "oracle_s": None, "compare_s": None},
        "notes": [], "precision": None, "precision_met": None, "fingerprint": None, "repeat": None,
    }
    unknown = set(fields) - set(rec)
    if unknown:
        raise KeyError(f"record fields: expected some of {RECORD_FIELDS}, received {sorted(unknown)}")
    rec.update(fields)
    return rec


def environment() -> dict[str, str]:
    import numpy

    return {"os": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "python": sys.version.split()[0], "numpy": numpy.__version__, "hostname": socket.gethostname()}


def tool() -> dict[str, str]:
    from . import __version__

    return {"name": "conv-conformance", "version": __version__}


def _type_problem(where: str, value: Any, types: tuple[type, ...], label: str) -> str | None:
    if isinstance(value, types) and not (isinstance(value, bool) and bool not in types):
        return None
    return f"{where}: expected {label}, received {type(value).__name__} {str(value)[:40]!r}"


#: Record fields and the JSON types they must have (None allowed where the schema says null).
_RECORD_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "case_id": ((str,), "a string"), "case": ((dict,), "an object"), "backend": ((str,), "a string"),
    "backend_version": ((str, type(None)), "a string or null"), "device": ((str, type(None)), "a string or null"),
    "status": ((str,), "a string"), "kind": ((str, type(None)), "a string or null"),
    "known": ((dict, type(None)), "an object or null"), "message": ((str,), "a string"),
    "figures": ((dict,), "an object"), "worst": ((list,), "a list"),
    "heatmap": ((list, type(None)), "a list or null"), "channel_errors": ((list, type(None)), "a list or null"),
    "diagnosis": ((dict, type(None)), "an object or null"), "minimised": ((dict, type(None)), "an object or null"),
    "repro": ((str, type(None)), "a string or null"), "error": ((dict, type(None)), "an object or null"),
    "exit": ((dict, type(None)), "an object or null"), "time": ((dict,), "an object"),
    "notes": ((list,), "a list"), "fingerprint": ((str, type(None)), "a fingerprint id or null"),
    "repeat": ((dict, type(None)), "an object or null"),
}


def validate(run: Any) -> list[str]:
    """Problems with `run` against the documented schema (empty list: valid).

    Types are checked as well as presence, so that a reader can rely on them: a file whose
    `backends` is a string is refused here with a message, not with an AttributeError later.
    """
    problems: list[str] = []
    if not isinstance(run, dict):
        return [f"results: expected a JSON object, received {type(run).__name__}"]
    for key in TOP_FIELDS:
        if key not in run:
            problems.append(f"results: expected top-level field {key!r}, received none")
    if run.get("schema_version") not in READABLE_VERSIONS:
        problems.append(f"schema_version: expected one of {READABLE_VERSIONS}, received {run.get('schema_version')!r}")
    for key, types, label in (("tool", (dict,), "an object"), ("environment", (dict,), "an object"),
                              ("run", (dict,), "an object"), ("backends", (dict,), "an object"),
                              ("fingerprints", (dict,), "an object"), ("records", (list,), "a list")):
        if key in run:
            bad = _type_problem(key, run[key], types, label)
            if bad:
                problems.append(bad)
    if problems:
        return problems
    for key in ("started", "finished", "selector", "seed", "budget", "shard", "argv"):
        if key not in run["run"]:
            problems.append(f"run: expected field {key!r}, received none")
    backends = run["backends"]
    for name, info in backends.items():
        if not isinstance(info, dict):
            problems.append(f"backends[{name!r}]: expected an object, received {type(info).__name__}")
            continue
        for key in ("name", "version", "device", "spec"):
            if key not in info:
                problems.append(f"backends[{name!r}]: expected field {key!r}, received none")
    for fid, fp in run.get("fingerprints", {}).items():
        if not isinstance(fp, dict):
            problems.append(f"fingerprints[{fid!r}]: expected an object, received {type(fp).__name__}")
    seen: set[tuple[str, str]] = set()
    for i, rec in enumerate(run["records"]):
        where = f"records[{i}]"
        if not isinstance(rec, dict):
            problems.append(f"{where}: expected an object, received {type(rec).__name__}")
            continue
        missing = [k for k in RECORD_FIELDS if k not in rec]
        if missing:
            problems.append(f"{where}: expected fields {missing}, received none")
            continue
        typed = [p for p in (_type_problem(f"{where}.{k}", rec[k], *_RECORD_TYPES[k]) for k in _RECORD_TYPES
                             if k in rec) if p]
        if typed:
            problems += typed
            continue
        if rec["status"] not in STATUSES:
            problems.append(f"{where}.status: expected one of {STATUSES}, received {rec['status']!r}")
        if rec["status"] == "diverge" and not rec["kind"]:
            problems.append(f"{where}.kind: expected a divergence kind for status 'diverge', received {rec['kind']!r}")
        if rec["backend"] not in backends:
            problems.append(f"{where}.backend: expected a key of 'backends', received {rec['backend']!r}")
        if rec.get("fingerprint") is not None and rec["fingerprint"] not in run.get("fingerprints", {}):
            problems.append(f"{where}.fingerprint: expected a key of 'fingerprints', received {rec['fingerprint']!r}")
        pair = (rec["case_id"], rec["backend"])
        if pair in seen:
            problems.append(f"{where}: expected one record per (case, backend), received {pair} twice")
        seen.add(pair)
        for key in ("backend_s", "oracle_s", "compare_s"):
            if key not in rec["time"]:
                problems.append(f"{where}.time: expected field {key!r}, received none")
    return problems


def write(path: str | os.PathLike, run: dict[str, Any]) -> None:
    """Write results.json atomically and durably (a reader never sees half a file, and the
    run's result stream may be removed once this returns), in the compact encoding of the
    current schema (`results_codec.encode`); `run` itself is not changed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    doc = results_codec.encode(dict(run, schema_version=SCHEMA_VERSION), new_record)
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, separators=(",", ":"), allow_nan=False) + "\n")  # compact: a run is large
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a results.json; ResultsError (one line) names the file when it is unreadable, not
    JSON, of another version or not of the documented shape."""
    path = Path(path)
    try:
        run = json.loads(path.read_bytes().decode("utf-8"))
    except IsADirectoryError:
        raise ResultsError(f"{path}: expected a results.json file, received a directory") from None
    except OSError as exc:
        raise ResultsError(f"{path}: expected a results.json file to read, received an OS error "
                           f"({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: expected a results.json document (UTF-8 JSON), received bytes that are not "
                           f"UTF-8 (at byte {exc.start})") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ResultsError(f"{path}: expected a results.json document, received invalid JSON "
                           f"({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(run, dict) or "schema_version" not in run:
        raise ResultsError(f"{path}: expected a results.json document with 'schema_version', received "
                           f"{'none' if isinstance(run, dict) else 'a JSON ' + type(run).__name__}")
    if run["schema_version"] not in READABLE_VERSIONS:
        raise ResultsError(f"{path}: expected schema_version {' or '.join(map(str, READABLE_VERSIONS))}, "
                           f"received {run['schema_version']!r}")
    if run["schema_version"] >= 3:
        try:
            run = results_codec.decode(run, new_record)
        except results_codec.EncodingError as exc:
            raise ResultsError(f"{path}: {exc}") from None
    problems = validate(run)
    if problems:
        raise ResultsError(f"{path}: {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return run


def compressed(path: Path) -> Path:
    """Where runs before schema 3 kept a completed stream `path` (results.jsonl -> results.jsonl.gz)."""
    return path.with_name(path.name + ".gz")


def stream_path(path: Path) -> Path | None:
    """The stream to read for `path` (results.jsonl): itself while a run goes or after an
    interruption, else the compressed copy an earlier version kept; None when neither exists."""
    return next((p for p in (path, compressed(path)) if p.exists()), None)


def drop_stream(path: Path) -> None:
    """Remove the completed stream `path` (and an earlier version's compressed copy): call
    it only once `write` has returned, when results.json holds every record and what
    --resume needs (`resume_point`)."""
    for p in (path, compressed(path)):
        p.unlink(missing_ok=True)


def resume_point(run: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """(header, records) as `read_jsonl` gives them, from a completed run's results.json
    (`load`); None when it does not say the parameters it ran with (`run.params`: a merge,
    or a file written before schema 3)."""
    if not isinstance(run["run"].get("params"), dict):
        return None
    header = {"type": "header", "schema_version": run["schema_version"], "params": run["run"]["params"],
              "started": run["run"]["started"], "argv": run["run"].get("argv"),
              "fingerprints": dict(run.get("fingerprints") or {}), "minimised": [],
              "sessions": [{"type": "session", "started": run["run"]["finished"],
                            "wall_s": run["run"].get("wall_s") or 0.0}]}
    return header, run["records"]


class JsonlWriter:
    """Appends records to results.jsonl, one flushed line each."""

    def __init__(self, path: str | os.PathLike, header: dict[str, Any] | None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if header is not None:  # a fresh stream
            self._fh = open(self.path, "w", encoding="utf-8")
            self._line({"type": "header", "schema_version": SCHEMA_VERSION, **header})
        else:  # resuming: drop a torn last line before appending
            if not self.path.exists():  # an earlier version's completed stream: append to it uncompressed
                with gzip.open(compressed(self.path), "rb") as src, open(self.path, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                compressed(self.path).unlink()
            _truncate_torn_tail(self.path)
            self._fh = open(self.path, "a", encoding="utf-8")

    @classmethod
    def replay(cls, path: str | os.PathLike, header: dict[str, Any], records: list[dict[str, Any]]) -> JsonlWriter:
        """A fresh stream holding a completed run's state (`resume_point`: its parameters,
        fingerprints, sessions and records), open for the resumed run to append to: a
        resumed run interrupted in turn keeps everything in its stream."""
        writer = cls(path, {k: header.get(k) for k in ("params", "started", "argv")})
        for fid, fp in (header.get("fingerprints") or {}).items():
            writer.state("fingerprint", id=fid, fingerprint=fp)
        for session in header.get("sessions") or []:
            writer.state("session", started=session.get("started"), wall_s=session.get("wall_s"))
        for rec in records:
            writer.record(rec)
        return writer

    def _line(self, obj: dict[str, Any]) -> None:
        self._fh.write(json.dumps(obj, allow_nan=False) + "\n")
        self._fh.flush()

    def record(self, rec: dict[str, Any]) -> None:
        self._line({"type": "record", "record": rec})

    def state(self, kind: str, **fields: Any) -> None:
        """A line of run state that --resume restores: "fingerprint" (id, fingerprint),
        "minimised" (backend, key, case_id, seconds) or "session" (started, wall_s)."""
        self._line({"type": kind, **fields})

    def close(self) -> None:
        self._fh.close()


def _truncate_torn_tail(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def read_jsonl(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, records) of a results.jsonl (or its results.jsonl.gz); a torn or garbled last line is ignored.

    The header gains the stream's state lines: `fingerprints` (id -> fingerprint),
    `minimised` (one per minimisation) and `sessions` (one per finished part of the run)."""
    path = Path(path)
    try:
        data = path.read_bytes()
        lines = (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8").splitlines()
    except (OSError, EOFError, zlib.error) as exc:  # gzip's BadGzipFile is an OSError
        raise ResultsError(f"{path}: cannot read the result stream ({getattr(exc, 'strerror', None) or exc})") from None
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: expected a results.jsonl stream (UTF-8 JSON lines), received bytes that are "
                           f"not UTF-8 (at byte {exc.start})") from None
    header: dict[str, Any] | None = None
    records: list[dict[str, Any]] = []
    for n, line in enumerate(lines):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines) - 1:
                break  # the run was killed while writing this line
            raise ResultsError(f"{path}:{n + 1}: expected a JSON line, received {line[:60]!r}") from None
        if not isinstance(obj, dict):
            raise ResultsError(f"{path}:{n + 1}: expected a JSON object line, received {type(obj).__name__}")
        if obj.get("type") == "header":
            header = dict(obj, fingerprints={}, minimised=[], sessions=[])
        elif obj.get("type") == "record":
            if not isinstance(obj.get("record"), dict):
                raise ResultsError(f"{path}:{n + 1}: expected a record object, received {str(obj.get('record'))[:60]!r}")
            records.append(obj["record"])
        elif header is not None and obj.get("type") == "fingerprint" and isinstance(obj.get("fingerprint"), dict):
            header["fingerprints"][str(obj.get("id"))] = obj["fingerprint"]
        elif header is not None and obj.get("type") == "minimised":
            header["minimised"].append(obj)
        elif header is not None and obj.get("type") == "session":
            header["sessions"].append(obj)
    if header is None:
        raise ResultsError(f"{path}: expected a header line, received none")
    if header.get("schema_version") not in READABLE_VERSIONS:  # the stream's lines are the same in 2 and 3
        raise ResultsError(f"{path}: expected schema_version {' or '.join(map(str, READABLE_VERSIONS))}, "
                           f"received {header.get('schema_version')!r}")
    return header, records


def is_unexpected(rec: dict[str, Any]) -> bool:
    """A record that makes the run fail: a failing status no manifest entry knows."""
    return rec["status"] in FAILING_STATUSES and not rec.get("known")


def counts(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """backend -> status -> count (plus 'known' for known divergences)."""
    out: dict[str, dict[str, int]] = {}
    for rec in records:
        row = out.setdefault(rec["backend"], {s: 0 for s in (*STATUSES, "known")})
        row[rec["status"]] += 1
        if rec.get("known"):
            row["known"] += 1
    return out
