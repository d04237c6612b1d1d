"""What the parts of one run share while it goes: its config, the manifest, the result
stream, the progress, the records so far, the referee, the fingerprints seen, and what
it keeps per backend (`BackendState`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .. import fingerprint as fingerprint_mod
from .. import results
from ..process.backend import Backend
from ..process.referee import Referee
from .config import RunConfig
from .progress import Progress


@dataclass
class BackendState:
    """What the run keeps per backend besides its worker (`process.backend.Backend`)."""

    #: Ids of the cases sent to its worker and not answered yet, in order (`runner._top_up`).
    queued: list[str] = field(default_factory=list)
    #: When the worker answered the case before the first of `queued` (its time limit's start).
    head_since: float = 0.0


@dataclass
class RunContext:
    cfg: RunConfig
    entries: list
    writer: results.JsonlWriter
    progress: Progress
    records: list
    referee: Referee
    fingerprints: dict[str, dict[str, Any]]
    #: Per backend (by identity): its BackendState.
    states: dict[Backend, BackendState]

    def note_fingerprint(self, b: Backend) -> None:
        """Keep the backend's current fingerprint (once per id, in results.jsonl too, for --resume)."""
        fid = b.info.get("fingerprint")
        if fid and fid not in self.fingerprints and b.fingerprint:
            self.fingerprints[fid] = b.fingerprint
            self.writer.state("fingerprint", id=fid, fingerprint=b.fingerprint)

    def facts(self, rec: dict[str, Any]) -> dict[str, Any]:
        return fingerprint_mod.facts(self.fingerprints.get(rec.get("fingerprint") or ""))
