"""What one `conformance run` is asked to do (`RunConfig`), from the command line or a caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import repeats as repeats_mod
from .. import tolerance
from ..process.backend import DEFAULT_TIMEOUT_S


#: Findings: seconds of experiments per finding by default (`--confirm-budget`).
FINDING_BUDGET_S = 10.0
#: The parameters (RunConfig.params) that must match for --resume to continue a stream.
RESUME_KEYS = ("selector", "seed", "budget", "dtypes", "shard", "backends", "precision", "repeats")


@dataclass
class RunConfig:
    specs: list[str]
    selector: str = "default"
    seed: int = 0
    budget: int | None = None
    dtypes: list[str] | None = None
    out: Path = Path("reports")
    timeout: float = DEFAULT_TIMEOUT_S
    expected: str | None = None
    baseline: str | None = None
    shard: tuple[int, int] | None = None
    resume: bool = False
    report: bool = True
    #: Findings: shrink each divergence to a minimal case before the experiments.
    minimise: bool = True
    strict_expected: bool = False
    quiet: bool = False
    #: Findings: seconds of experiments (characterisation and confirmation) per finding;
    #: None: no experiments (each backend's divergences are one uncharacterised finding).
    confirm_budget_s: float | None = FINDING_BUDGET_S
    argv: list[str] = field(default_factory=list)
    #: The user named `specs` (--backend/--adapter): one that cannot be loaded stops the run
    #: (LoadError) instead of giving an error record per case.
    named: bool = False
    #: The precision contract every verdict is judged under (tolerance.PRECISIONS).
    precision: str = tolerance.DEFAULT_PRECISION
    #: Cases whose oracle and comparison are estimated to need more bytes are `unsupported`
    #: (None: no limit). The CLI's default is a fraction of the available memory.
    max_memory: int | None = None
    #: Write into a non-empty --out that does not hold an earlier run.
    force: bool = False
    #: Which cases each backend runs again with the same inputs (`repeats.Policy`; bounded
    #: per case by `timeout`).
    repeats: repeats_mod.Policy = repeats_mod.DEFAULT

    def params(self) -> dict[str, Any]:
        """What must match for --resume to continue a stream."""
        return {"selector": self.selector, "seed": self.seed, "budget": self.budget,
                "dtypes": sorted(self.dtypes) if self.dtypes else None,
                "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None, "backends": list(self.specs),
                "precision": self.precision, "repeats": self.repeats.to_dict()}
