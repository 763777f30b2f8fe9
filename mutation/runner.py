"""Apply each checked-in semantic mutant to a temporary copy of the tree and run its suite.

A mutant is an exact snippet of a source file and its replacement (``mutation/mutants/*.toml``,
one file per target). The runner copies the tracked tree once into a temporary directory,
then for each mutant writes the mutated file there, runs ONLY the conformance tests of the
mutant's target (``pytest -x`` with a per-mutant deadline) against that copy, and restores the
file. The working tree is never written: a crashed or interrupted run leaves nothing mutated.

Outcomes: ``killed`` (a test failed), ``timeout`` (the suite did not finish: counted as
detected), ``survived`` (the suite passed), ``stale`` (the snippet is no longer in the file,
or not exactly once: the mutant needs refreshing, it is neither killed nor survived).
Mutants marked ``equivalent = "<reason>"`` are run too but leave the score's denominator.
A mutant may name its own ``tests`` (pytest paths) instead of its target's: for code that
only runs outside the target's class (a Redis cache without ``clock=``, where the server's
clock decides expiry; a request record replayed after a lost reply).

The score table is written into docs/conformance.md between the markers
``<!-- mutation-score:start -->`` and ``<!-- mutation-score:end -->``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Final

from .stages import SOCKET_VARIABLE

__all__ = [
    "CosmicModule",
    "Mutant",
    "Result",
    "Target",
    "load",
    "load_cosmic",
    "main",
    "render",
    "render_cosmic",
    "run",
]

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = Path(__file__).resolve().parent / "mutants"
DOC = ROOT / "docs" / "conformance.md"
START, END = "<!-- mutation-score:start -->", "<!-- mutation-score:end -->"
# Import roots of the copy, ahead of the editable installs of the working tree.
IMPORT_ROOTS = (".", "providers/memory", "providers/redis", "providers/dynamodb")


class MutantFileError(ValueError):
    """A mutants file is malformed: the message names the file and the entry."""


@dataclass(frozen=True)
class Target:
    """What one mutants file is measured against: a provider's conformance tests."""

    name: str
    tests: tuple[str, ...]
    timeout: float
    select: str | None = None


@dataclass(frozen=True)
class Mutant:
    """One semantic change: ``original`` (exact, once in ``file``) becomes ``replacement``."""

    id: str
    target: Target
    file: str
    original: str
    replacement: str
    theme: str
    select: str | None = None
    equivalent: str | None = None
    tests: tuple[str, ...] | None = None
    """Pytest paths run instead of the target's (None: the target's)."""


@dataclass
class Result:
    """What running one mutant gave."""

    mutant: Mutant
    outcome: str  # killed | survived | timeout | stale | error
    seconds: float = 0.0
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _text(entry: dict[str, Any], key: str, where: str, *, optional: bool = False) -> Any:
    value = entry.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not value and not optional):
        raise MutantFileError(f"{where}: '{key}' must be a non-empty string.")
    return value


def load(paths: Iterable[Path]) -> list[Mutant]:
    """Read mutants files; every id is unique and every entry complete."""
    mutants: list[Mutant] = []
    seen: set[str] = set()
    for path in paths:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        where = path.name
        spec = data.get("target")
        if not isinstance(spec, dict):
            raise MutantFileError(f"{where}: a [target] table (name, tests, timeout) is needed.")
        tests = spec.get("tests")
        if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
            raise MutantFileError(f"{where}: target.tests must be a list of pytest paths.")
        target = Target(
            _text(spec, "name", where),
            tuple(tests),
            float(spec.get("timeout", 300)),
            _text(spec, "select", where, optional=True),
        )
        for index, entry in enumerate(data.get("mutant", [])):
            at = f"{where} mutant #{index + 1}"
            own = entry.get("tests")
            if own is not None and (
                not isinstance(own, list) or not own or not all(isinstance(t, str) for t in own)
            ):
                raise MutantFileError(f"{at}: 'tests' must be a non-empty list of pytest paths.")
            mutant = Mutant(
                id=_text(entry, "id", at),
                target=target,
                file=_text(entry, "file", at),
                original=_text(entry, "original", at),
                replacement=_text(entry, "replacement", at, optional=True) or "",
                theme=_text(entry, "theme", at),
                select=_text(entry, "select", at, optional=True),
                equivalent=_text(entry, "equivalent", at, optional=True),
                tests=None if own is None else tuple(own),
            )
            if mutant.id in seen:
                raise MutantFileError(f"{at}: duplicate id {mutant.id!r}.")
            if mutant.original == mutant.replacement:
                raise MutantFileError(f"{at}: replacement equals original.")
            seen.add(mutant.id)
            mutants.append(mutant)
    return mutants


def copy_tree(dest: Path) -> None:
    """Copy the tracked and new (not ignored) files of the checkout into ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],  # noqa: S607
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        rel = raw.decode()
        source = ROOT / rel
        if not source.is_file():
            continue  # deleted in the working tree but still tracked
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _env(tree: Path) -> dict[str, str]:
    env = dict(os.environ)
    roots = [str(tree / root) for root in IMPORT_ROOTS]
    env["PYTHONPATH"] = os.pathsep.join([*roots, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutated file's .pyc must not outlive it
    return env


@contextlib.contextmanager
def warm_pytest(tree: Path, log: Any = sys.stderr) -> Iterator[dict[str, str]]:
    """A :mod:`mutation.forkserver` for ``tree`` while the block runs; yields the
    environment that routes :mod:`mutation.stages`' pytest runs through it.

    Without a server (it failed to start), the environment runs them as subprocesses.
    """
    env = _env(tree)
    with tempfile.TemporaryDirectory(prefix="cachehub-forkserver-") as tmp:
        path = str(Path(tmp) / "socket")
        server = subprocess.Popen(  # noqa: S603 - this interpreter, a module of the repo
            [sys.executable, "-m", "mutation.forkserver", path],
            cwd=tree,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            ready = server.stdout.readline().strip() if server.stdout else ""
            if ready == "ready":
                env = {**env, SOCKET_VARIABLE: path}
            else:
                print("[mutation] no fork server: every run starts cold", file=log)
            yield env
        finally:
            server.terminate()  # it kills the run it is serving, if any, then exits
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
            if server.stdout:
                server.stdout.close()


def _pytest(
    tree: Path, target: Target, select: str | None, tests: tuple[str, ...] | None = None
) -> list[str]:
    args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:xdist"]
    args += ["--timeout", str(int(target.timeout)), *(tests or target.tests)]
    expr = " and ".join(f"({e})" for e in (target.select, select) if e)
    if expr:
        args += ["-k", expr]
    return args


def run_stages(
    tree: Path, stages: Sequence[Sequence[str]], timeout: float, env: dict[str, str] | None = None
) -> tuple[int | None, float, str]:
    """Run ``stages`` in turn through :mod:`mutation.stages` in ``tree``, within ``timeout``.

    Returns (exit status, or None when the timeout was reached; seconds; output). The
    stages run in a session of their own, killed as a whole at the timeout (with the
    servers their tests started).
    """
    command = [sys.executable, "-m", "mutation.stages", json.dumps([list(s) for s in stages])]
    start = time.monotonic()
    proc = subprocess.Popen(  # noqa: S603 - this interpreter, arguments from the repo
        command,
        cwd=tree,
        env=_env(tree) if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None, time.monotonic() - start, ""
    return proc.returncode, time.monotonic() - start, output


def _execute(
    tree: Path,
    target: Target,
    select: str | None,
    tests: tuple[str, ...] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[str, float, str]:
    status, seconds, output = run_stages(
        tree, [_pytest(tree, target, select, tests)], target.timeout, env
    )
    if status is None:
        return "timeout", seconds, ""
    tail = output.strip().splitlines()[-1:] or [""]
    if status == 0:
        return "survived", seconds, tail[0]
    if status == 1:
        failed = [line for line in output.splitlines() if line.startswith("FAILED")]
        return "killed", seconds, (failed or tail)[0]
    # 2-5: interrupted, internal error, usage error, nothing collected: a runner problem.
    return "error", seconds, f"pytest exit {status}: {tail[0]}"


def check_imports(tree: Path) -> None:
    """Fail early unless the copy's modules are the ones a child pytest imports."""
    probe = (
        "import cachehub, cachehub_memory, cachehub_redis, cachehub_dynamodb;"
        "print('\\n'.join(m.__file__ for m in "
        "(cachehub, cachehub_memory, cachehub_redis, cachehub_dynamodb)))"
    )
    out = subprocess.run(  # noqa: S603 - this interpreter, a fixed probe
        [sys.executable, "-c", probe],
        cwd=tree,
        env=_env(tree),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    outside = [path for path in out if not Path(path).resolve().is_relative_to(tree.resolve())]
    if outside:
        raise SystemExit(f"mutation: modules imported from outside the copy: {outside}")


def save_json(results: Sequence[Result], path: Path) -> None:
    """Every result as JSON (``--report`` reads it back)."""
    rows = [
        {
            "id": r.mutant.id,
            "target": r.mutant.target.name,
            "theme": r.mutant.theme,
            "outcome": r.outcome,
            "seconds": round(r.seconds, 1),
            "detail": r.detail,
        }
        for r in results
    ]
    path.write_text(json.dumps(rows, indent=1), encoding="utf-8")


def run(
    mutants: Sequence[Mutant],
    tree: Path,
    log: Any = sys.stderr,
    save: Path | None = None,
    env: dict[str, str] | None = None,
) -> list[Result]:
    """Run every mutant against ``tree`` (a copy), baseline first for each target.

    With ``save``, the results so far are written there after every mutant, so an
    interrupted run keeps what it measured. ``env`` (default: the copy's import paths)
    is the environment of the test runs, e.g. one from :func:`warm_pytest`.
    """
    results: list[Result] = []
    # The unmutated tree must pass exactly the tests a mutant runs: one baseline per
    # (target, selection), so a narrowly selected target never runs its whole suite.
    baseline: dict[tuple[str, str | None, tuple[str, ...] | None], str] = {}
    for index, mutant in enumerate(mutants, 1):
        target = mutant.target
        group = (target.name, mutant.select, mutant.tests)
        if group not in baseline:
            outcome, seconds, detail = _execute(tree, target, mutant.select, mutant.tests, env)
            baseline[group] = outcome
            where = target.name + (f" {' '.join(mutant.tests)}" if mutant.tests else "")
            where += f" -k {mutant.select!r}" if mutant.select else ""
            print(f"[baseline {where}] {outcome} in {seconds:.0f}s {detail}", file=log)
        if baseline[group] != "survived":
            results.append(Result(mutant, "error", detail="the unmutated suite does not pass"))
            continue
        path = tree / mutant.file
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            results.append(Result(mutant, "stale", detail=f"{mutant.file} does not exist"))
            continue
        found = source.count(mutant.original)
        if found != 1:
            results.append(Result(mutant, "stale", detail=f"snippet found {found} times"))
            print(f"[{index}/{len(mutants)}] {mutant.id}: stale ({found} matches)", file=log)
            continue
        path.write_text(source.replace(mutant.original, mutant.replacement), encoding="utf-8")
        try:
            outcome, seconds, detail = _execute(tree, target, mutant.select, mutant.tests, env)
        finally:
            path.write_text(source, encoding="utf-8")
        results.append(Result(mutant, outcome, seconds, detail))
        print(f"[{index}/{len(mutants)}] {mutant.id}: {outcome} {seconds:.1f}s", file=log)
        if save is not None:
            save_json(results, save)
    return results


def _detected(outcome: str) -> bool:
    return outcome in ("killed", "timeout")


def score_rows(results: Sequence[Result], key: str) -> list[tuple[str, int, int, int, int]]:
    """(group, detected, counted, equivalent, stale) per target or theme."""
    groups: dict[str, Counter[str]] = {}
    for result in results:
        group = result.mutant.target.name if key == "target" else result.mutant.theme
        counter = groups.setdefault(group, Counter())
        if result.outcome in ("stale", "error"):
            counter["stale"] += 1
        elif result.mutant.equivalent is not None and not _detected(result.outcome):
            counter["equivalent"] += 1
        else:
            counter["counted"] += 1
            counter["detected"] += _detected(result.outcome)
    return [
        (name, c["detected"], c["counted"], c["equivalent"], c["stale"])
        for name, c in sorted(groups.items())
    ]


def _pct(detected: int, counted: int) -> str:
    return f"{100 * detected / counted:.0f}%" if counted else "-"


def render(results: Sequence[Result], minutes: float, how: str = "") -> str:
    """The markdown block written between the markers of docs/conformance.md."""
    lines = [
        START,
        "",
        f"Last measured by `nox -s mutation` ({len(results)} mutants, {minutes:.0f} min"
        f"{how}). Score = detected / non-equivalent mutants.",
        "",
    ]
    for key, title in (("target", "provider"), ("theme", "theme")):
        lines += [
            f"| {title} | detected | non-equivalent | score | equivalent | stale |",
            "|---|---|---|---|---|---|",
        ]
        rows = score_rows(results, key)
        for name, detected, counted, equivalent, stale in rows:
            score = _pct(detected, counted)
            lines.append(f"| {name} | {detected} | {counted} | {score} | {equivalent} | {stale} |")
        if key == "target":
            det = sum(r[1] for r in rows)
            cnt = sum(r[2] for r in rows)
            eq = sum(r[3] for r in rows)
            st = sum(r[4] for r in rows)
            lines.append(f"| **all** | {det} | {cnt} | {_pct(det, cnt)} | {eq} | {st} |")
        lines.append("")
    leftover = [r for r in results if not _detected(r.outcome)]
    if leftover:
        lines += ["Mutants the suite does not detect, and why that is allowed:", ""]
        lines += ["| mutant | provider | theme | outcome | reason |", "|---|---|---|---|---|"]
        for r in leftover:
            reason = r.mutant.equivalent or (
                r.detail if r.outcome in ("stale", "error") else "not yet pinned by the suite"
            )
            reason = reason.replace("|", "\\|").replace("\n", " ")
            m = r.mutant
            lines.append(f"| `{m.id}` | {m.target.name} | {m.theme} | {r.outcome} | {reason} |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_doc(block: str, doc: Path = DOC, markers: tuple[str, str] = (START, END)) -> None:
    """Replace the text between the ``markers`` of ``doc`` (and the markers) with ``block``."""
    text = doc.read_text(encoding="utf-8")
    head, start, rest = text.partition(markers[0])
    _, end, tail = rest.partition(markers[1])
    if not start or not end:
        raise SystemExit(f"mutation: {doc} lacks the {markers[0]} ... {markers[1]} markers")
    doc.write_text(head + block + tail, encoding="utf-8")


def from_json(mutants: Sequence[Mutant], paths: Iterable[Path]) -> list[Result]:
    """Results saved by ``--json``, for the mutants that still exist (later files win)."""
    by_id = {m.id: m for m in mutants}
    found: dict[str, Result] = {}
    for path in paths:
        for row in json.loads(path.read_text(encoding="utf-8")):
            mutant = by_id.get(row["id"])
            if mutant is not None:
                found[mutant.id] = Result(mutant, row["outcome"], row["seconds"], row["detail"])
    missing = [m.id for m in mutants if m.id not in found]
    if missing:
        raise SystemExit(f"mutation: no saved result for {len(missing)} mutants: {missing}")
    return [found[m.id] for m in mutants]


CR_START, CR_END = "<!-- cosmic-ray:start -->", "<!-- cosmic-ray:end -->"
COSMIC = Path(__file__).resolve().parent / "cosmic-ray.toml"
"""Which modules cosmic-ray measures (target, selection, budget) and the triage of survivors."""
COSMIC_RESULTS = Path(__file__).resolve().parent / "cosmic-ray"
"""One JSON file of outcomes per module, as the last run left them (checked in)."""


@dataclass(frozen=True)
class CosmicModule:
    """One module cosmic-ray mutates, and the reasons its equivalent survivors may survive."""

    path: str
    target: str
    select: str | None
    budget: float | None
    tests: tuple[str, ...] | None
    """Pytest paths run instead of the target's, in this order (-x), narrowed by ``select``."""
    equivalent: dict[str, str]
    """Mutant key (see :func:`cosmic_key`) -> why the mutant cannot be told apart."""
    unit: tuple[str, ...] = ()
    """The module's own fast tests, run first in a process of their own (no ``-k``): a
    mutant they kill never starts the ``tests`` stage, its servers and its collection."""
    timeout: float | None = None
    """Seconds one mutant's tests may take (None: the target's); beyond it, killed."""
    functions: tuple[str, ...] = ()
    """Only the mutants inside these top-level functions or classes (a documented subset
    of a module too large for the budget); empty: every mutant of the module."""


def load_cosmic(path: Path = COSMIC) -> dict[str, CosmicModule]:
    """Read ``mutation/cosmic-ray.toml``: every key is triaged once, every field typed."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    modules: dict[str, CosmicModule] = {}
    for index, entry in enumerate(data.get("module", [])):
        at = f"{path.name} module #{index + 1}"
        equivalent: dict[str, str] = {}
        for group in entry.get("equivalent", []):
            reason = _text(group, "reason", at)
            keys = group.get("mutants")
            if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
                raise MutantFileError(f"{at}: equivalent.mutants must list mutant keys.")
            for key in keys:
                if key in equivalent:
                    raise MutantFileError(f"{at}: {key!r} is triaged twice.")
                equivalent[key] = reason
        budget = entry.get("budget")
        timeout = entry.get("timeout")
        for name, number in (("budget", budget), ("timeout", timeout)):
            if number is not None and (
                isinstance(number, bool) or not isinstance(number, int | float) or number <= 0
            ):
                raise MutantFileError(f"{at}: '{name}' must be a positive number of seconds.")
        lists: dict[str, tuple[str, ...] | None] = {}
        for name in ("tests", "unit", "functions"):
            value = entry.get(name)
            if value is not None and not (
                isinstance(value, list) and value and all(isinstance(v, str) for v in value)
            ):
                raise MutantFileError(f"{at}: '{name}' must be a non-empty list of strings.")
            lists[name] = None if value is None else tuple(value)
        module = CosmicModule(
            _text(entry, "path", at),
            _text(entry, "target", at),
            _text(entry, "select", at, optional=True),
            None if budget is None else float(budget),
            lists["tests"],
            equivalent,
            lists["unit"] or (),
            None if timeout is None else float(timeout),
            lists["functions"] or (),
        )
        modules[module.path] = module
    return modules


def cosmic_key(operator: str, line_text: str, seen: Counter[str]) -> str:
    """A survivor's name that outlives edits elsewhere in the module.

    cosmic-ray numbers mutants by occurrence, which shifts whenever code is added above;
    the operator and the text of the mutated line do not (``#n`` tells apart the n-th
    mutant of one operator on identical lines, counted in file order).
    """
    base = f"{operator.removeprefix('core/')} @ {line_text.strip()}"
    seen[base] += 1
    return base if seen[base] == 1 else f"{base} #{seen[base]}"


def _results_path(module: str) -> Path:
    return COSMIC_RESULTS / (module.replace("/", ".") + ".json")


def _specs(session: Path) -> list[tuple[str, str, int, int, int, int, int]]:
    """(job, operator, occurrence, row, col, end row, end col) of every work item."""
    with sqlite3.connect(session) as db:
        return db.execute(
            "SELECT job_id, operator_name, occurrence, start_pos_row, start_pos_col, "
            "end_pos_row, end_pos_col FROM mutation_specs"
        ).fetchall()


def _keys_by_job(session: Path, source: str) -> dict[str, str]:
    """Every work item's key, numbered over the module's whole set of mutants.

    Read from a fresh session (right after ``init``), so a partial re-run names its
    mutants exactly as the full run did.
    """
    specs = _specs(session)
    lines = source.splitlines()
    seen: Counter[str] = Counter()
    return {
        job: cosmic_key(operator, lines[row - 1] if 0 < row <= len(lines) else "", seen)
        for job, operator, _occ, row, *_ in sorted(specs, key=lambda s: (s[3], s[4], s[1], s[2]))
    }


def function_lines(source: str, names: Iterable[str], where: str = "") -> set[int]:
    """The line numbers of the named top-level functions and classes (decorators included).

    Raises :class:`MutantFileError` for a name the module does not define at top level, so
    a renamed function cannot silently shrink the subset to nothing.
    """
    wanted = set(names)
    lines: set[int] = set()
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if node.name in wanted:
            wanted.discard(node.name)
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            lines.update(range(first, (node.end_lineno or node.lineno) + 1))
    if wanted:
        raise MutantFileError(f"{where}: no top-level function or class {sorted(wanted)}.")
    return lines


ANNOTATION: Final = "annotation"
"""The outcome of a mutant inside an annotation of a module with ``from __future__ import
annotations``: equivalent by construction (the annotation is never evaluated), so it is
classified without running its tests."""


def annotation_spans(source: str) -> list[tuple[int, int, int, int]]:
    """(row, col, end row, end col) of every annotation, if the module never evaluates them.

    Empty unless the module has ``from __future__ import annotations``; positions in
    characters, as cosmic-ray (parso) gives them.
    """
    tree = ast.parse(source)
    future = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    if not future:
        return []
    lines = source.splitlines()

    def char(row: int, col: int) -> int:  # ast counts UTF-8 bytes
        return len(lines[row - 1].encode()[:col].decode(errors="ignore"))

    found: list[ast.expr] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            found.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            found.append(node.returns)
    spans = []
    for a in found:
        end = a.end_lineno or a.lineno
        spans.append(
            (a.lineno, char(a.lineno, a.col_offset), end, char(end, a.end_col_offset or 0))
        )
    return spans


def _inside_annotation(
    spans: Sequence[tuple[int, int, int, int]], start: tuple[int, int], end: tuple[int, int]
) -> bool:
    return any((r, c) <= start and end <= (er, ec) for r, c, er, ec in spans)


def _cosmic_rows(dumped: str, keys: dict[str, str]) -> list[dict[str, Any]]:
    """Each dumped work item as {key, line, operator, outcome, change}, in file order.

    A mutant killed because its tests ran past the module's timeout (cosmic-ray kills the
    test command's whole process group and reports ``killed`` with the output "timeout")
    also carries ``"timeout": true``.
    """
    rows = []
    for raw in dumped.splitlines():
        item, result = json.loads(raw)
        (spec,) = item["mutations"]
        outcome = (result or {}).get("test_outcome") or (result or {}).get("worker_outcome")
        change = [
            d[1:].strip()
            for d in ((result or {}).get("diff") or "").splitlines()
            if d[:1] in "+-" and d[:3] not in ("+++", "---")
        ]
        row: dict[str, Any] = {
            "key": keys[item["job_id"]],
            "line": spec["start_pos"][0],
            "operator": spec["operator_name"],
            "outcome": str(outcome or "pending"),
            "change": " => ".join(change),
        }
        if row["outcome"] == "killed" and (result or {}).get("output") == "timeout":
            row["timeout"] = True
        rows.append((spec["start_pos"], spec["operator_name"], spec["occurrence"], row))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    return [r[3] for r in rows]


def _keep_only(session: Path, drop: Iterable[str]) -> None:
    """Drop the work items ``drop`` (job ids) from a fresh cosmic-ray session.

    The session's own schema (cosmic-ray 8's ``work_items``/``mutation_specs``) is edited
    because ``exec`` has no filter.
    """
    rows = [(job,) for job in drop]
    with sqlite3.connect(session) as db:
        db.executemany("DELETE FROM mutation_specs WHERE job_id = ?", rows)
        db.executemany("DELETE FROM work_items WHERE job_id = ?", rows)


def stage_commands(
    tree: Path, module: CosmicModule, target: Target, select: str | None
) -> list[list[str]]:
    """The pytest runs of one mutant, cheapest first: ``unit`` (if any), then ``tests -k``."""
    stages = []
    if module.unit:
        stages.append(_pytest(tree, Target(target.name, module.unit, target.timeout), None))
    stages.append(_pytest(tree, target, select))
    return stages


@dataclass
class CosmicRun:
    """What one cosmic-ray run measured, besides the outcomes."""

    rows: list[dict[str, Any]]
    baseline: float
    """Seconds the unmutated copy took to pass every stage."""
    ran: int = 0
    """Mutants whose tests finished within the budget."""
    seconds: float = 0.0
    """Seconds ``exec`` ran."""


def cosmic_ray(
    tree: Path,
    module: str,
    stages: Sequence[Sequence[str]],
    timeout: float,
    log: Any,
    budget: float | None = None,
    only: set[str] | None = None,
    lines: set[int] | None = None,
    env: dict[str, str] | None = None,
) -> CosmicRun:
    """Run cosmic-ray's default operators on ``module`` inside the copy ``tree``.

    cosmic-ray mutates the file it tests in place, which is why it only ever sees the
    temporary copy. Its test command runs ``stages`` (pytest runs with ``-x``) in turn
    through :mod:`mutation.stages`, first against the unmutated copy (the baseline must
    pass, or every mutant would count as killed); a mutant whose tests take longer than
    ``timeout`` seconds is killed. ``budget`` (seconds) stops ``exec`` early: the mutants
    it did not reach are reported as pending. ``only`` (mutant keys) runs just those,
    e.g. the last run's survivors; ``lines`` just the mutants starting on those lines.
    ``env`` is the environment of the test runs (default: the copy's import paths).
    """
    command = [sys.executable, "-m", "mutation.stages", json.dumps([list(s) for s in stages])]
    env = _env(tree) if env is None else env
    status, baseline, output = run_stages(tree, stages, timeout, env)
    if status is None:
        raise SystemExit(
            f"mutation: the unmutated tests of {module} take over the timeout of {timeout:.0f}s"
        )
    if status != 0:
        tail = output.strip().splitlines()[-5:]
        raise SystemExit(f"mutation: the unmutated tests of {module} fail: " + " | ".join(tail))
    print(f"[cosmic-ray] baseline passed in {baseline:.1f}s", file=log)
    config = tree / "cosmic-ray.toml"
    config.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        f"timeout = {float(timeout)}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(' '.join(shlex.quote(arg) for arg in command))}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n',
        encoding="utf-8",
    )
    session = tree / "cosmic-ray.sqlite"
    source = (tree / module).read_text(encoding="utf-8")
    tool = [sys.executable, "-m", "cosmic_ray.cli"]
    keys: dict[str, str] = {}
    specs: dict[str, tuple[str, str, int, int, int, int, int]] = {}
    static: list[str] = []
    run = CosmicRun([], baseline)
    for step in (["init", str(config), str(session)], ["exec", str(config), str(session)]):
        print(f"[cosmic-ray] {step[0]} {module}", file=log)
        if step[0] == "exec":
            keys = _keys_by_job(session, source)
            specs = {spec[0]: spec for spec in _specs(session)}
            drop = {
                job
                for job, key in keys.items()
                if (only is not None and key not in only)
                or (lines is not None and specs[job][3] not in lines)
            }
            spans = annotation_spans(source)
            for job, _op, _occ, row, col, end_row, end_col in specs.values():
                if job not in drop and _inside_annotation(spans, (row, col), (end_row, end_col)):
                    drop.add(job)
                    static.append(job)
            _keep_only(session, drop)
            print(
                f"[cosmic-ray] running {len(keys) - len(drop)} of {len(keys)} mutants "
                f"({len(static)} in annotations: equivalent without a run)",
                file=log,
            )
        started = time.monotonic()
        try:
            subprocess.run(  # noqa: S603 - this interpreter's cosmic-ray, arguments from the repo
                [*tool, "--verbosity", "ERROR", *step],
                cwd=tree,
                env=env,
                check=True,
                timeout=budget if step[0] == "exec" else None,
            )
        except subprocess.TimeoutExpired:
            print(f"[cosmic-ray] budget of {budget}s spent: reporting so far", file=log)
        if step[0] == "exec":
            run.seconds = time.monotonic() - started
    dumped = subprocess.run(  # noqa: S603 - same
        [*tool, "dump", str(session)], cwd=tree, env=_env(tree), check=True, capture_output=True
    ).stdout.decode()
    run.rows = _cosmic_rows(dumped, keys)
    run.ran = sum(row["outcome"] != "pending" for row in run.rows)
    for job in static:
        _job, operator, _occ, row, _col, _er, _ec = specs[job]
        run.rows.append(
            {
                "key": keys[job],
                "line": row,
                "operator": operator,
                "outcome": ANNOTATION,
                "change": "",
            }
        )
    run.rows.sort(key=lambda r: int(r["line"]))  # stable: the dumped order within a line
    rate = run.ran / (run.seconds / 60) if run.seconds else 0.0
    print(f"[cosmic-ray] {run.ran} mutants in {run.seconds:.0f}s: {rate:.1f}/min", file=log)
    return run


def merge_cosmic(
    old: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows of a partial re-run replace the same keys of the last full run."""
    fresh = {row["key"]: row for row in new if row["outcome"] != "pending"}
    return [fresh.get(row["key"], row) for row in old] if old else list(new)


def render_cosmic(modules: dict[str, CosmicModule], results: Path = COSMIC_RESULTS) -> str:
    """The cosmic-ray block of docs/conformance.md, from the saved outcomes and the triage.

    Per module: killed (and how many of them by the timeout), survivors triaged as
    equivalent (grouped by reason), survivors still to kill, mutants not reached (budget)
    and triage entries that match no survivor (stale: the code changed under them, or a
    test now kills them).
    """
    lines = [CR_START, ""]
    table = [
        "| module | target | mutants | killed | equivalent | remaining | not run | stale triage |",
        "|---|---|---|---|---|---|---|---|",
    ]
    details: list[str] = []
    for path, module in modules.items():
        saved = _results_path(path)
        if not saved.exists():
            table.append(f"| `{path}` | {module.target} | not measured yet | | | | | |")
            continue
        data = json.loads(saved.read_text(encoding="utf-8"))
        rows: list[dict[str, Any]] = data["rows"]
        outcomes = Counter(row["outcome"] for row in rows)
        survivors = [row for row in rows if row["outcome"] == "survived"]
        equivalent = [row for row in survivors if row["key"] in module.equivalent]
        remaining = [row for row in survivors if row["key"] not in module.equivalent]
        alive = {row["key"] for row in survivors}
        stale = sorted(key for key in module.equivalent if key not in alive)
        static = [row for row in rows if row["outcome"] == ANNOTATION]
        not_run = len(rows) - outcomes["killed"] - len(survivors) - len(static)
        timeouts = sum(bool(row.get("timeout")) for row in rows)
        subset = " (subset)" if module.functions else ""
        table.append(
            f"| `{path}`{subset} | {module.target} | {len(rows)} | {outcomes['killed']} | "
            f"{len(equivalent) + len(static)} | {len(remaining)} | {not_run} | {len(stale)} |"
        )
        stages = [*(["`" + "`, `".join(module.unit) + "`"] if module.unit else [])]
        stages.append(
            ", ".join(f"`{t}`" for t in data.get("tests", []))
            + (f" `-k {module.select!r}`" if module.select else "")
        )
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
        if timeouts:
            counts += f" ({timeouts} of the killed by the timeout)"
        details += [
            f"**`{path}`** ({data['note']}; tests " + ", then ".join(stages) + "): " + counts,
            "",
        ]
        if module.functions:
            details += [
                "Subset: only the mutants inside "
                + ", ".join(f"`{name}`" for name in module.functions)
                + ".",
                "",
            ]
        by_reason: dict[str, list[dict[str, Any]]] = {}
        for row in equivalent:
            by_reason.setdefault(module.equivalent[row["key"]], []).append(row)
        if static:
            at = ", ".join(sorted({str(row["line"]) for row in static}, key=int))
            details.append(
                f"- equivalent without a run ({len(static)}; lines {at}): inside an "
                "annotation, which `from __future__ import annotations` never evaluates"
            )
        for reason, group in by_reason.items():
            at = ", ".join(str(row["line"]) for row in group)
            details.append(f"- equivalent ({len(group)}; lines {at}): {reason}")
        for row in remaining:
            details.append(f"- **remaining**: `{row['key']}` (line {row['line']}: {row['change']})")
        for key in stale:
            details.append(f"- stale triage entry: `{key}`")
        details.append("")
    lines += [*table, "", *details, CR_END]
    return "\n".join(lines)


def main_cosmic(args: argparse.Namespace, targets: dict[str, Target]) -> int:
    """``--cosmic-ray MODULE`` (run, save, re-render) or ``--cosmic-ray-report`` (re-render)."""
    modules = load_cosmic()
    if args.cosmic_ray:
        module = modules.get(args.cosmic_ray)
        if module is None:
            raise SystemExit(f"mutation: add {args.cosmic_ray} to {COSMIC} first")
        target = targets[args.target[0] if args.target else module.target]
        timeout = module.timeout if module.timeout is not None else target.timeout
        target = Target(target.name, module.tests or target.tests, timeout, target.select)
        saved = _results_path(module.path)
        previous = json.loads(saved.read_text(encoding="utf-8")) if saved.exists() else {}
        old: list[dict[str, Any]] = previous.get("rows", [])
        saved_note = str(previous.get("note", "no full run saved"))
        only = None
        if args.survivors:
            only = {
                row["key"]
                for row in old
                if row["outcome"] == "survived" and row["key"] not in module.equivalent
            }
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="cachehub-cosmic-ray-") as tmp:
            tree = Path(tmp)
            copy_tree(tree)
            check_imports(tree)
            budget = args.budget if args.budget is not None else module.budget
            lines = None
            if module.functions:
                source = (tree / module.path).read_text(encoding="utf-8")
                lines = function_lines(source, module.functions, f"{COSMIC.name} {module.path}")
            stages = stage_commands(tree, module, target, args.select or module.select)
            with warm_pytest(tree) as env:
                run = cosmic_ray(
                    tree, module.path, stages, timeout, sys.stderr, budget, only, lines, env
                )
        minutes = (time.monotonic() - started) / 60
        rows = merge_cosmic(old, run.rows) if only is not None else run.rows
        today = date.today().isoformat()
        rate = run.ran / (run.seconds / 60) if run.seconds else 0.0
        speed = (
            f"{run.ran} mutants at {rate:.1f}/min, baseline {run.baseline:.0f}s, "
            f"timeout {timeout:.0f}s"
        )
        if only is None:
            note = f"full run {minutes:.0f} min (budget {budget}s; {speed}), {today}"
        else:  # the full run's note stays: it says how much of the module was reached
            note = f"{saved_note}; {len(only)} survivors re-run {minutes:.0f} min, {today}"
        COSMIC_RESULTS.mkdir(exist_ok=True)
        record = {"note": note, "tests": list(target.tests), "rows": rows}
        saved.write_text(json.dumps(record, indent=1) + "\n", "utf-8")
    block = render_cosmic(modules)
    print(block)
    if not args.no_doc:
        write_doc(block, DOC, (CR_START, CR_END))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mutation [--target NAME] [--id ID] [--no-doc] [--json PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m mutation", description=__doc__)
    parser.add_argument("--target", action="append", help="only this target (repeatable)")
    parser.add_argument("--id", action="append", help="only this mutant id (repeatable)")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite the docs table")
    parser.add_argument("--json", type=Path, help="also write every result as JSON here")
    parser.add_argument(
        "--report",
        type=Path,
        nargs="+",
        help="run nothing: write the docs table from --json files of earlier (partial) runs",
    )
    parser.add_argument(
        "--cosmic-ray",
        metavar="MODULE",
        help="instead: cosmic-ray's default operators on MODULE (a path listed in "
        "mutation/cosmic-ray.toml, which names its target and tests); saves the outcomes "
        "in mutation/cosmic-ray/ and rewrites the cosmic-ray block of the docs",
    )
    parser.add_argument("--select", help="with --cosmic-ray: another pytest -k expression")
    parser.add_argument(
        "--budget", type=float, help="with --cosmic-ray: stop after this many seconds"
    )
    parser.add_argument(
        "--survivors",
        action="store_true",
        help="with --cosmic-ray: re-run only last time's survivors not triaged as "
        "equivalent (what new tests were written to kill); the others keep their saved outcome",
    )
    parser.add_argument(
        "--cosmic-ray-report",
        action="store_true",
        help="run nothing: rewrite the cosmic-ray block from the saved outcomes and triage",
    )
    args = parser.parse_args(argv)
    mutants = load(sorted(MUTANTS.glob("*.toml")))
    if args.cosmic_ray or args.cosmic_ray_report:
        targets = {m.target.name: m.target for m in mutants}
        if args.target and (len(args.target) != 1 or args.target[0] not in targets):
            parser.error(f"--cosmic-ray takes at most one --target of {sorted(targets)}")
        return main_cosmic(args, targets)
    if args.report:
        saved = from_json(mutants, args.report)
        block = render(
            saved,
            sum(r.seconds for r in saved) / 60,
            " of mutant runs, without baselines; merged from per-target runs",
        )
        print(block)
        if not args.no_doc:
            write_doc(block)
        return 0
    if args.target:
        mutants = [m for m in mutants if m.target.name in args.target]
    if args.id:
        mutants = [m for m in mutants if m.id in args.id]
    if not mutants:
        print("mutation: no mutant selected", file=sys.stderr)
        return 2
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cachehub-mutation-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        check_imports(tree)
        with warm_pytest(tree) as env:
            results = run(mutants, tree, save=args.json, env=env)
    minutes = (time.monotonic() - started) / 60
    # The machine's load says how far the wall time is from an idle machine's.
    how = (
        f" wall time, baselines included, on {os.cpu_count()} CPUs; 1-minute load average "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    block = render(results, minutes, how)
    print(block)
    if args.json:
        save_json(results, args.json)
    full = not args.target and not args.id
    if full and not args.no_doc:
        write_doc(block)
    return 0
