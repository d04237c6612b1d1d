"""Hypothesis settings profiles for the property tests and `conformance explore`.

Profiles (register with `register()`; pick one with pytest's own `--hypothesis-profile NAME`
or the environment variable `CONFORMANCE_HYPOTHESIS_PROFILE=NAME`):

- `ci`: derandomized (the same examples on every run, so a red CI job is reproducible and
  a green one stays green), no deadline (the first call into a framework is slow), 50
  examples, and the failing example printed as a reproduction blob.
- `dev`: hypothesis's defaults (random, 100 examples) without the deadline.
- `nightly`: 2000 examples, no deadline: the long search a nightly job can afford.

Invariants
- Importing this module registers nothing and loads nothing; `register()` is idempotent
  and only registers; `load_from_env()` loads only when the variable is set, so an explicit
  `--hypothesis-profile` (which hypothesis's plugin applies) is never overridden.
- Health checks about slow data generation are suppressed in every profile: running a
  backend is the slow part, not drawing cases, and a "too slow" failure would hide the
  verdict the test exists for.
"""

from __future__ import annotations

import os

ENV_VAR = "CONFORMANCE_HYPOTHESIS_PROFILE"

#: name -> keyword arguments of `hypothesis.settings`.
PROFILES: dict[str, dict] = {
    "ci": {"derandomize": True, "deadline": None, "max_examples": 50, "print_blob": True},
    # derandomize is explicit: with CI set in the environment hypothesis's own default
    # profile derandomizes, and these profiles must search randomly wherever they run.
    "dev": {"derandomize": False, "deadline": None, "max_examples": 100},
    "nightly": {"derandomize": False, "deadline": None, "max_examples": 2000},
}


def register() -> None:
    """Register the `ci`, `dev` and `nightly` profiles with hypothesis (idempotent)."""
    from hypothesis import HealthCheck, settings

    quiet = [HealthCheck.too_slow, HealthCheck.data_too_large]
    for name, kwargs in PROFILES.items():
        settings.register_profile(name, suppress_health_check=quiet, **kwargs)


def load_from_env() -> str | None:
    """Load the profile named by $CONFORMANCE_HYPOTHESIS_PROFILE; return its name or None.

    Raises ValueError naming the variable for an unknown profile.
    """
    name = os.environ.get(ENV_VAR, "").strip()
    if not name:
        return None
    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    register()
    try:
        settings.load_profile(name)
    except InvalidArgument:
        raise ValueError(f"{ENV_VAR}: expected one of {', '.join(PROFILES)} (or a profile registered "
                         f"elsewhere), received {name!r}") from None
    return name
