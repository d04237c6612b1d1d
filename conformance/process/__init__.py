"""The processes a run drives, each a fresh interpreter that the run can lose: a backend's
worker (`worker`, and `backend`, the handle on one backend), the referee that computes
the oracle and records each reply (`referee`), the parent's handle on any of them
(`handle`) and what every child does (`child`)."""
