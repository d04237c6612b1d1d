"""README.md and docs/*.md say what the code on this branch does.

Checked against the code itself, never against a copy of it:
- every `conformance ...` command line in a fenced shell block parses with the real parser
  (`conformance.cli.build_parser`): its subcommand and every option exist, and required
  arguments are given; an inline code span may name a subcommand and options in prose, and
  they have to exist; every option of a `pytest --conformance ...` line is one the pytest
  plugin registers;
- every stated count has the form "`conformance cases ...` prints N cases" and equals what
  the case-set selection API (`conformance.cases.sets.select`) gives for that command line;
  "`... --coverage` covers every feasible pair and triple" and "`... --coverage` prints
  `TEXT`" (a size-class line) are checked the same way; a bare "N cases" outside the
  dated measurement documents is refused;
- every relative link points at an existing file, and its anchor at an existing heading;
  every repository path and every `conformance.x.y` name in a code span exists;
- the backend tables (README, docs/backends.md) list every built-in of the registry with
  its extra, its parameters and its default-run membership;
- docs/adapters.md's Case attributes exist on a Case; docs/reports.md's diagnosis table
  lists `conformance.diagnose.NAMES` in the order tried; docs/architecture.md's module map
  lists every module there is;
- the README fits a screen and a map: at most 15 KB, the two quick-start commands as
  written, every framework named, every document linked.
The checkers are tested on planted mistakes, so a check that cannot fail fails here.
"""

from __future__ import annotations

import fnmatch
import importlib
import re
import shlex
from pathlib import Path

import pytest

from conformance.adapters import registry
from conformance.cases import sets
from conformance.cases.sizes import describe_sizes
from conformance.cases.sweep import coverage
from conformance.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
ALL_DOCS = [README, *DOCS]
#: Dated measurement records: their counts are what a run counted then, not today's sets.
MEASUREMENTS = ("performance.md", "findings.md")
README_LIMIT = 15_000
QUICK_START = (
    "python3 -m venv .venv && .venv/bin/pip install -e '.[all]' && .venv/bin/conformance run",
    "python3 -m venv .venv && .venv/bin/pip install -e '.[all,test]' && .venv/bin/python -m pytest -n 2 -q",
)

FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
SHELL_FENCES = ("", "sh", "bash", "shell", "console")
SPAN = re.compile(r"`([^`]+)`")
COUNT = re.compile(r"`(conformance cases [^`]*)`\s+prints\s+([\d,]+)\s+cases\b")
COVERS = re.compile(r"`(conformance cases [^`]*)`\s+covers every feasible pair and triple")
PRINTS = re.compile(r"`(conformance cases [^`]*)`\s+prints\s+`([^`]+)`")
BARE_COUNT = re.compile(r"\b\d[\d,]*\s+(?:cases|backends|layers)\b")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
DOTTED = re.compile(r"(?<![\w./])(conformance(?:\.[A-Za-z_]\w*)+)")
REPO_PATH = re.compile(r"^(?:conformance|adapters|cases|tests|benchmarks|examples|docs|\.ci)/[\w./-]*$")


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The text without fenced and indented code blocks (inline spans stay; list items
    continue with two spaces, so four mean code)."""
    return re.sub(r"^    .*$", "", FENCE.sub("", text), flags=re.M)


def _words(text: str) -> str:
    return " ".join(text.split())


# ---- command lines --------------------------------------------------------------------

def command_lines(text: str) -> list[tuple[list[str], bool]]:
    """(argv after `conformance`, whole) for every conformance command in the text. The lines
    of shell fences are whole command lines (continuations joined, comments dropped, `a && b`
    split); an inline span may name a subcommand and its options in prose
    (`conformance run --expected`), so only they have to exist."""
    found = []
    for lang, body in FENCE.findall(text):
        if lang not in SHELL_FENCES:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|\|\||\||;", line):
                argv = shlex.split(part.strip().removeprefix("$ "), comments=True)
                if argv and Path(argv[0]).name == "conformance":
                    found.append((argv[1:], True))
    for span in SPAN.findall(_prose(text)):
        if span.split()[:1] == ["conformance"] and len(span.split()) > 1:
            found.append((shlex.split(" ".join(span.split()))[1:], False))
    return found


def _options(subcommand: str) -> set[str]:
    parser = build_parser([subcommand])
    sub = next(a for a in parser._actions if a.dest == "command").choices[subcommand]
    return {o for action in sub._actions for o in action.option_strings}


def command_problems(text: str) -> list[str]:
    problems = []
    subcommands = set(next(a for a in build_parser()._actions if a.dest == "command").choices)
    for argv, whole in command_lines(text):
        if argv[0].startswith("-"):  # an option of `conformance` itself (--version, --help)
            top = {o for a in build_parser()._actions for o in a.option_strings}
            problems += [f"conformance {' '.join(argv)}: no option {a}" for a in argv[:1] if a not in top]
            continue
        if argv[0] not in subcommands:
            problems.append(f"conformance {argv[0]}: expected a subcommand ({', '.join(sorted(subcommands))})")
            continue
        if whole:
            try:
                build_parser(argv).parse_args(argv)
            except (Exception, SystemExit) as exc:  # the parser's one-line usage error
                problems.append(f"conformance {' '.join(argv)}: {exc}")
        # Spelled out in full: argparse would also accept an abbreviation (`--back`).
        unknown = [a.split("=")[0] for a in argv if a.startswith("--") and a.split("=")[0] not in _options(argv[0])]
        problems += [f"conformance {' '.join(argv)}: no option {u}" for u in unknown]
    return problems


def plugin_options() -> set[str]:
    """The options the pytest plugin registers (it only wires options and hooks)."""
    from conformance import pytest_plugin

    names: set[str] = set()

    class Group:
        def addoption(self, *opts, **_):
            names.update(opts)

    class Parser:
        def getgroup(self, *_a, **_k):
            return Group()

    pytest_plugin.pytest_addoption(Parser())
    return names


def plugin_problems(text: str) -> list[str]:
    """Options of `pytest --conformance ...` lines and spans that the plugin does not register."""
    lines = [part for lang, body in FENCE.findall(text) if lang in SHELL_FENCES
             for part in body.replace("\\\n", " ").splitlines()]
    lines += [" ".join(span.split()) for span in SPAN.findall(_prose(text))]
    known = plugin_options()
    problems = []
    for line in lines:
        argv = shlex.split(line, comments=True) if line.lstrip().startswith("pytest --conformance") else []
        problems += [f"{line.strip()}: the pytest plugin has no option {a}" for a in argv
                     if a.startswith(("--conformance", "--backend", "--adapter")) and a.split("=")[0] not in known]
    return problems


# ---- counts ---------------------------------------------------------------------------

def _selection(command: str):
    argv = shlex.split(command)[1:]
    args = build_parser(argv).parse_args(argv)
    assert args.shard is None, f"{command}: a count claim takes no --shard"
    dtypes = [d for v in args.dtype for d in v.split(",")] if args.dtype else None
    return sets.select(args.selector, seed=args.seed, budget=args.budget, dtypes=dtypes)


def count_problems(text: str, measurements: bool = False) -> list[str]:
    problems = []
    for command, stated in COUNT.findall(text):
        actual = len(_selection(command))
        if actual != int(stated.replace(",", "")):
            problems.append(f"`{command}` prints {actual} cases, the doc says {stated}")
    for command in COVERS.findall(text):
        cov = coverage(_selection(command))
        for strength in ("t2", "t3"):
            if cov[strength]["covered"] != cov[strength]["total"]:
                problems.append(f"`{command}` covers {cov[strength]['covered']} of {cov[strength]['total']} "
                                f"{strength} combinations, the doc says every one")
    for command, printed in PRINTS.findall(text):
        if _words(printed) not in _words(describe_sizes(_selection(command))):
            problems.append(f"`{command}` does not print `{_words(printed)}`")
    if not measurements:
        rest = SPAN.sub("", COVERS.sub("", COUNT.sub("", _prose(text))))
        problems += [f"a count with no command that produces it: {m!r}" for m in BARE_COUNT.findall(rest)]
    return problems


# ---- links and names ------------------------------------------------------------------

def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", _prose(text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def link_problems(text: str, where: Path) -> list[str]:
    problems = []
    for target in LINK.findall(_prose(text)):
        if re.match(r"^[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (where.parent / path).resolve() if path else where
        if not file.exists():
            problems.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(_text(file)):
            problems.append(f"{target}: no heading #{anchor} in {file.name}")
    return problems


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            return False
        return True
    return False


def name_problems(text: str) -> list[str]:
    problems = []
    for span in SPAN.findall(_prose(text)):
        span = span.strip()
        problems += [f"`{span}`: {name} does not resolve" for name in DOTTED.findall(span) if not _resolves(name)]
        if REPO_PATH.match(span) and not any(c in span for c in "*<{") and not (ROOT / span).exists():
            problems.append(f"`{span}`: no such path in the repository")
    return problems


# ---- every document -------------------------------------------------------------------

@pytest.mark.parametrize("doc", ALL_DOCS, ids=_id)
def test_every_conformance_command_parses(doc):
    assert not command_problems(_text(doc))


@pytest.mark.parametrize("doc", ALL_DOCS, ids=_id)
def test_every_pytest_plugin_option_exists(doc):
    assert not plugin_problems(_text(doc))


@pytest.mark.parametrize("doc", ALL_DOCS, ids=_id)
def test_every_count_is_what_its_command_yields(doc):
    assert not count_problems(_text(doc), measurements=doc.name in MEASUREMENTS)


@pytest.mark.parametrize("doc", ALL_DOCS, ids=_id)
def test_every_relative_link_resolves(doc):
    assert not link_problems(_text(doc), doc)


@pytest.mark.parametrize("doc", ALL_DOCS, ids=_id)
def test_every_module_name_and_path_exists(doc):
    assert not name_problems(_text(doc))


@pytest.mark.parametrize("doc", DOCS, ids=_id)
def test_every_doc_opens_with_what_it_is_for(doc):
    blocks = [b.strip() for b in _text(doc).split("\n\n") if b.strip()]
    assert blocks[0].startswith("# ") and blocks[1].startswith("This document"), blocks[:2]


def test_the_counts_are_stated_and_checked():
    # At least the set sizes are stated where cases are documented, so a change of the
    # default set (or of any set) shows up here rather than in a reader's surprise.
    stated = COUNT.findall(_text(ROOT / "docs" / "cases.md"))
    assert {shlex.split(c)[2] for c, _ in stated} >= {"smoke", "default", "full", "models"}


# ---- the checkers catch planted mistakes ----------------------------------------------

def test_a_wrong_count_is_caught():
    actual = len(sets.select("smoke"))
    assert count_problems(f"`conformance cases smoke` prints {actual} cases.") == []
    assert count_problems(f"`conformance cases smoke` prints {actual + 1} cases.")


def test_a_count_without_its_command_is_caught():
    assert count_problems("The smoke set has 26 cases.")
    assert not count_problems("The smoke set has 26 cases.", measurements=True)


def test_a_wrong_size_line_is_caught():
    assert count_problems("`conformance cases smoke --coverage` prints `batch >= 8: 1000`")


@pytest.mark.parametrize("planted", [
    "```sh\nconformance run --no-such-option\n```",
    "```sh\nconformance frobnicate --cases smoke\n```",
    "```sh\nconformance repro CASE --out x.py   # --backend is required\n```",
    "Run `conformance run --cases smoke --backend-typo torch` first.",
    "Then `conformance frobnicate` it.",
    "```bash\npython3 -m venv .venv && .venv/bin/conformance run --precision loose\n```",
    "```sh\nconformance run --back torch\n```",
], ids=["unknown-option", "unknown-subcommand", "missing-required", "inline-option", "inline-subcommand",
        "after-and-and", "abbreviated-option"])
def test_a_wrong_command_is_caught(planted):
    assert command_problems(planted)


def test_a_wrong_pytest_plugin_option_is_caught():
    assert plugin_problems("```sh\npytest --conformance --backend torch --conformance-case smoke\n```")
    assert plugin_problems("```sh\npytest --conformance --backend torch --conformance-cases smoke\n```") == []


def test_a_right_command_passes():
    assert command_problems("```sh\nconformance run --backend torch \\\n  --cases smoke  # quick\n```\n"
                            "and `conformance repro CASE --backend B --out r.py`, `conformance merge`.") == []


@pytest.mark.parametrize("planted", ["[x](no-such-file.md)", "[x](running.md#no-such-heading)", "[x](#nowhere)"])
def test_a_dead_link_is_caught(planted):
    assert link_problems(planted, ROOT / "docs" / "index.md")


def test_a_live_link_and_anchor_pass():
    assert link_problems("[x](running.md#exit-codes) [y](../README.md#quick-start)", ROOT / "docs" / "x.md") == []


@pytest.mark.parametrize("planted", ["`conformance.oracle.no_such_function`", "`conformance.no_such_module`",
                                     "`python -m conformance.no_such_module`", "`conformance/no_such_module.py`"])
def test_a_dead_name_or_path_is_caught(planted):
    assert name_problems(planted)


# ---- README ---------------------------------------------------------------------------

def test_readme_fits_in_15_kb():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md: expected at most {README_LIMIT} bytes, received {size}"


def test_readme_quick_start_is_the_two_commands_as_written():
    block = FENCE.search(_text(README)[_text(README).index("## Quick start"):]).group(2)
    assert [line for line in block.splitlines() if line and not line.startswith("#")] == list(QUICK_START)


def test_readme_names_every_framework_first():
    intro = _text(README).split("\n## ", 1)[0]
    frameworks = {re.sub(r"\s+\d+$", "", registry.BUILTINS[c.base_name].doc.split(":")[0])
                  for c in registry.adapter_classes() if c.extra}
    assert {f for f in frameworks if f not in intro} == set()


def test_readme_links_every_doc():
    assert {d.name for d in DOCS if f"(docs/{d.name})" not in _text(README)} == set()


# ---- backends -------------------------------------------------------------------------

def table(text: str, heading: str) -> dict[str, list[str]]:
    """The first table under `heading`: first-column name (unquoted) -> cells."""
    section = text[text.index(heading):]
    start = section.index("\n|")
    rows = {}
    for line in section[start + 1:].split("\n\n", 1)[0].splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    return rows


@pytest.mark.parametrize("doc, heading", [(README, "## Backends"), (ROOT / "docs" / "backends.md", "## The CPU backends")],
                         ids=["README", "docs/backends.md"])
def test_the_backend_table_is_the_registry(doc, heading):
    rows = table(_text(doc), heading)
    cpu = [n for n, b in registry.BUILTINS.items() if b.device == "cpu"]
    assert sorted(rows) == sorted(cpu)
    for name, cells in rows.items():
        extra = registry.BUILTINS[name].extra
        assert (f"`{extra}`" in cells[1]) if extra else cells[1] in ("-", "(none)"), (name, cells[1])
        assert cells[2].startswith("no") == (registry.BUILTINS[name].excluded is not None), (name, cells[2])


def test_the_parameter_table_is_each_adapters_declaration():
    rows = table(_text(ROOT / "docs" / "backends.md"), "## Parameters and variants")
    declared = {c.base_name: c for c in registry.adapter_classes() if c.parameters}
    assert sorted(rows) == sorted(declared)
    for name, cls in declared.items():
        for param, values in cls.parameters.items():
            assert f"`{param}` ({', '.join(map(str, values))})" in rows[name][1], (name, param)
        assert [v.strip("` ") for v in rows[name][2].split(",")] == list(cls.variants), name


def test_every_accelerator_backend_is_named():
    text = _text(ROOT / "docs" / "backends.md")
    assert [n for n, b in registry.BUILTINS.items() if b.device != "cpu" and f"`{n}`" not in text] == []


# ---- the adapter contract, diagnosis and modules ---------------------------------------

def test_every_case_attribute_the_adapter_doc_lists_exists():
    from conformance.spec import Case

    text = _text(ROOT / "docs" / "adapters.md")
    rows = table(text[text.index("Case attributes an adapter may read"):], "Case attributes")
    listed = [re.sub(r"\(.*", "", n.strip("` ")) for cells in rows.values() for n in cells[0].split(",")]
    case = Case(op="conv2d", batch=1, height=3, width=3, in_channels=1, kernel=(1, 1), out_channels=1)
    assert len(listed) > 20 and [n for n in listed if not hasattr(case, n)] == []


def test_the_diagnosis_table_lists_every_hypothesis_in_the_order_tried():
    from conformance.diagnose import NAMES

    rows = table(_text(ROOT / "docs" / "reports.md"), "## Diagnosis")
    listed = [n.strip("` ") for cells in rows.values() for n in cells[0].split(",")]
    assert listed == list(NAMES)


def test_the_module_map_lists_every_module():
    rows = table(_text(ROOT / "docs" / "architecture.md"), "## Modules")
    patterns = [p.strip("` ").replace("<framework>", "*") for cells in rows.values() for p in cells[0].split(",")]
    modules = sorted(str(p.relative_to(ROOT)) for d in ("conformance", "adapters", "cases")
                     for p in (ROOT / d).rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert [m for m in modules if not any(fnmatch.fnmatch(m, p) for p in patterns)] == []
    assert [p for p in patterns if not any(fnmatch.fnmatch(m, p) for m in modules)] == []
