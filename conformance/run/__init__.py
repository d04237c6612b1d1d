"""The parts of `conformance run`, each named after its one job; `conformance.runner` is the
loop that uses them, and the worker processes it drives live in `conformance.process`."""
