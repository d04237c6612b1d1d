"""A backend spec given on the command line (`--backend torch[channels_last]`): checked and,
when it is misspelled, the spec that was probably meant.

Invariants
- Every subcommand that takes a backend reports a bad one here, in one way: an unknown
  name says what was expected (`--backend: expected ..., received 'torchh'`); a spec the
  registry refuses names the option and the spec (`--backend torch[chanels_last]: ...`,
  as `conformance run` words a worker's refusal); both end with a did-you-mean hint when
  a built-in name, variant, parameter, value or device is close to what was written.
- Suggestions come from the registry's own declarations (`adapter_classes`,
  `known_names`), never from a list kept here.
"""

from __future__ import annotations

from typing import Any

from ..usage import UsageError, closest, did_you_mean


def _spelled(value: Any) -> str:
    """A parameter value as a spec writes it (`true`, not `True`)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def suggestion(spec: str) -> str:
    """" (did you mean 'torch[channels_last]'?)" for a spec with a misspelled built-in name,
    variant, parameter, parameter value or device; "" when nothing close is known."""
    from conformance.adapters import registry

    known = registry.known_names()
    if spec in known:
        return ""
    base, options, suffix = registry.parse_spec(spec)
    classes = {cls.base_name: cls for cls in registry.adapter_classes()}
    if not options and suffix is None:
        return did_you_mean(spec, known)
    changed = False
    if base not in classes:
        if base in known or ":" in base:  # an entry point or module:Class takes options of its own
            return ""
        base, changed = closest(base, classes) or base, True
        if base not in classes:
            return ""
    cls = classes[base]
    items = []
    for key, value in options.items():
        names = list(cls.variants) if value is None else list(cls.parameters)
        fixed_key = key if key in names else closest(key, names) or key
        if value is not None and fixed_key in cls.parameters:
            allowed = [_spelled(v) for v in cls.parameters[fixed_key]]
            value = value if value in allowed else closest(value, allowed) or value
        item = fixed_key if value is None else f"{fixed_key}={value}"
        changed |= item != (key if options[key] is None else f"{key}={options[key]}")
        items.append(item)
    if suffix is not None and suffix not in cls.devices:
        fixed_suffix = closest(suffix, cls.devices) or suffix
        changed |= fixed_suffix != suffix
        suffix = fixed_suffix
    if not changed:
        return ""
    meant = base + (f"[{','.join(items)}]" if items else "") + (f":{suffix}" if suffix is not None else "")
    return f" (did you mean {meant!r}?)" if meant != spec else ""


def check_name(spec: str, option: str = "--backend", *, targets: bool) -> None:
    """UsageError unless `spec` is a known name, a built-in with parameters, or (`targets`)
    a module:Class or file.py:Class that loading will judge."""
    from conformance.adapters import registry

    known = registry.known_names()
    if spec in known or registry.is_parameterised_builtin(spec) or (targets and ":" in spec):
        return
    also = (", 'module:Class' or 'path/to/file.py:Class'" if targets
            else " (--adapter takes module:Class or file.py:Class)")
    raise UsageError(f"{option}: expected a backend name ({', '.join(known)}) or a built-in with parameters such as "
                     f"'keras[backend=jax]'{also}, received {spec!r}{suggestion(spec)}")


def refused(option: str, spec: str, reason: str) -> UsageError:
    """The usage error of a spec the registry (here or in a worker) would not load."""
    return UsageError(f"{option} {spec}: {reason}{suggestion(spec)}")
