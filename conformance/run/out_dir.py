"""The run's output directory (--out): its lock, and what an earlier run left there.

Invariants
- OUT is locked (`OutLock`) for the whole run: a second run into it is a UsageError
  naming the first one's pid.
- A fresh run replaces an earlier run's generated files (pages, repro scripts, junit,
  results, logs), so that its index links everything there is and nothing else; a
  non-empty directory that does not hold a run is refused without --force, and
  placeholder files (`PLACEHOLDERS`) are left alone.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import results
from ..usage import UsageError


class OutLock:
    """An exclusive lock on OUT/.conformance.lock for the whole run; the file holds the pid."""

    def __init__(self, out: Path):
        self.path = out / ".conformance.lock"
        self.fh = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock (documented)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            pid = fh.read().strip() or "unknown"
            fh.close()
            raise UsageError(f"--out {self.path.parent}: another conformance run (pid {pid}) is writing there; "
                             f"wait for it to finish or choose another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self.fh = fh

    def release(self) -> None:
        if self.fh is not None:
            self.fh.close()  # closing drops the lock; the file stays (removing it would race)
            self.fh = None


#: Files that keep an empty directory in version control: a directory holding only these is
#: empty to `--out` (the checkout's own reports/ has a .gitkeep), and they are left alone.
PLACEHOLDERS = (".gitkeep", ".keep", ".gitignore")


def previous_run(out: Path, force: bool) -> list[Path]:
    """What an earlier run generated in `out` (pages, repro scripts, junit, results, logs),
    which the new run replaces, so that its index links everything there is and nothing
    else. Only a directory that holds a results.json/jsonl is treated as a run's; a
    non-empty directory that does not look like one is refused without `force`."""
    if not out.is_dir():
        return []
    entries = [p for p in out.iterdir() if p.name != ".conformance.lock" and p.name not in PLACEHOLDERS]
    if not entries:
        return []

    def generated(p: Path) -> bool:
        return (p.suffix == ".html" or p.name in ("results.json", "results.jsonl", "results.jsonl.gz", "junit.xml",
                                                   "results.json.tmp", "results.jsonl.gz.tmp")
                or (p.is_dir() and p.name in ("repro", "logs")))

    looks_like_run = ((out / "results.json").exists() or results.stream_path(out / "results.jsonl") is not None
                      or all(generated(p) for p in entries))
    if not looks_like_run and not force:
        raise UsageError(f"--out {out}: expected an empty directory or an earlier run's, received a directory with "
                         f"{len(entries)} other entries (e.g. {sorted(p.name for p in entries if not generated(p))[0]!r}); pass --force "
                         f"to write there anyway")
    return [p for p in sorted(entries) if generated(p)]


def remove_paths(paths: list[Path]) -> list[str]:
    """Remove files and directories; their names (directories with a slash)."""
    removed = []
    for p in paths:
        if not p.exists():
            continue
        if p.is_dir():
            shutil.rmtree(p)
            removed.append(p.name + "/")
        else:
            p.unlink()
            removed.append(p.name)
    return removed
