"""Copying entries between caches: :func:`migrate`, behind ``cachehub migrate`` too.

The spec's "Migration from other providers": the application code stays, the
configuration changes, and this copies the warm data over. It never claims what it did
not check:

* The source is read with :meth:`~cachehub.api.BaseCache.peek`: no hit is counted, no
  last access updated, no idle expiry slid.
* Each entry keeps its remaining lifetime, rounded *down* to the second, so a copy never
  outlives its original; an idle entry keeps its *remaining* idle time
  (:meth:`~cachehub.api.BaseCache.restore`).
* The target is read (``peek``) before each batch is written, for keys the checkpoint
  does not list as copied before: an entry it holds in a version *newer* than the
  source's (the application, already switched to the target, wrote it during the
  migration) is kept, counted in ``MigrationReport.kept_newer``; an entry it holds with
  the source's value and deadline (within :data:`EXPIRY_TOLERANCE`) is a copy an
  interrupted or concurrent run wrote without recording it (its modification time, the
  moment it was written, is always the newer): counted unchanged, recorded and verified.
  An entry the target cannot read (another program's item in a shared table) is never
  overwritten and is reported as unwritable. Only the moments between that read and the
  batch's write remain unguarded.
* A checkpoint (``resume_file``) records each copied key with the source's modification
  time, after every batch. A rerun, interrupted or after completion, copies again every
  entry changed at the source since it was copied, and skips only unchanged ones.
* An entry the source cannot decode (corrupt, written by another program, signed with an
  unknown key) is not copied and does not stop the run: it is counted in
  ``MigrationReport.unreadable`` with the first few keys and their errors, and the run
  never reports success while any remain.
* Likewise an entry the *target* refuses (a key or value it cannot represent, e.g. an
  empty or over-long key, or a set, in the Lucee layout): its batch is retried key by
  key, the entry is counted in ``MigrationReport.unwritable`` with its typed error, never
  recorded as copied (a rerun tries it again), and the rest of the batch is copied.
* Source keys that the target stores as one entry (Lucee's layout upper-cases keys:
  ``user`` and ``USER``) are not copied at all - one would silently replace the other -
  and are reported in ``MigrationReport.colliding``, a dry run included.
* Verification streams over every copied key (presence in the target, and values of a
  sample) and keeps the first few differences and the counts, never a list of all. A
  copy the target cannot read back counts as different (with its error), and the run
  still reports.
* A dry run takes each entry through the run's own checks, writing nothing: what would
  expire before it is copied, and what the target would refuse (its key rules and, where
  the layout has one apart from the write, its value encoding), are counted as the run
  counts them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from .api import MAX_TIME_SPAN, BaseCache, Entry
from .errors import (
    CacheValueError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    SerializationError,
)
from .loader import _read_limited

__all__ = [
    "Checkpoint",
    "MigrationReport",
    "Progress",
    "migrate",
    "SHOWN_DIFFERENCES",
    "SAMPLE_SIZE",
    "EXPIRY_TOLERANCE",
    "is_copy",
]

SAMPLE_SIZE: Final = 50
"""How many copied values verification compares with the source's."""

SHOWN_DIFFERENCES: Final = 20
"""How many missing or different keys a report lists (the counts are always complete)."""

CHECKPOINT_VERSION: Final = 2
MAX_CHECKPOINT_BYTES: Final = 512 * 1024 * 1024
"""Largest resume file read (about ten million copied keys)."""

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase ``"copy"`` or ``"verify"``."""


@dataclass
class Checkpoint:
    """The keys already copied from ``source`` to ``target``, with the source's
    modification time of each when it was copied (``--resume-file``)."""

    path: Path | None
    source: str
    target: str
    filter: str | None
    done: dict[str, float | None] = field(default_factory=dict)
    complete: bool = False

    @classmethod
    def load(
        cls,
        path: Path | None,
        source: str,
        target: str,
        flt: str | None,
        *,
        write: bool = True,
    ) -> Checkpoint:
        """Read the checkpoint at ``path`` (a new one when the file does not exist).

        The folder must exist and the file be writable: checked now, before anything is
        copied, by writing the checkpoint once (unless ``write`` is false: a dry run
        writes nothing, not even a new checkpoint).
        """
        fresh = cls(path, source, target, flt)
        if path is None:
            return fresh
        if not path.parent.is_dir():
            raise ConfigError(
                f"the folder of resume file {path} does not exist.",
                hint=f"create it first (mkdir -p {path.parent}), or pass another --resume-file.",
            )
        if path.is_dir():
            raise ConfigError(
                f"resume file {path} is a folder.",
                hint="pass the path of a file, e.g. --resume-file migrate.json.",
            )
        if not path.exists():
            if write:
                fresh.save()
            return fresh
        try:
            # Not read_text(): a FIFO would block and /dev/zero fill the memory.
            raw = _read_limited(path, "resume file", MAX_CHECKPOINT_BYTES)
            doc = json.loads(raw.decode("utf-8"))
            recorded = (doc["source"], doc["target"], doc.get("filter"))
            done = doc["done"]
            complete = doc.get("complete", False)
        except ConfigError:
            raise  # not a regular file, or too large: the message says which
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise ConfigError(
                f"resume file {path} is not a cachehub migrate checkpoint ({type(exc).__name__}).",
                hint="pass another --resume-file, or delete this one to start over.",
            ) from None
        if recorded != (source, target, flt):
            raise ConfigError(
                f"resume file {path} belongs to another migration "
                f"({recorded[0]} -> {recorded[1]}, filter {recorded[2]!r}).",
                hint="use the same SRC, DST and --filter as the interrupted run, "
                "or another --resume-file.",
            )
        fresh.done = _done_of(done, path)
        fresh.complete = complete is True
        if write:
            fresh.save()  # writable now, not after the first batch
        return fresh

    def save(self) -> None:
        """Write atomically (temp file + rename), so a crash never leaves half a file."""
        if self.path is None:
            return
        doc = {
            "version": CHECKPOINT_VERSION,
            "source": self.source,
            "target": self.target,
            "filter": self.filter,
            "complete": self.complete,
            "done": dict(sorted(self.done.items())),
        }
        # A fresh name made exclusively (mkstemp: O_CREAT | O_EXCL, mode 0600), never a
        # fixed "<name>.tmp": in a shared folder another user could plant that name as a
        # symlink, and the write would follow it onto any file this process may write.
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
            )
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps(doc))
            os.replace(tmp, self.path)  # replaces a symlink at path, never its target
            tmp = None
        except OSError as exc:
            raise ConfigError(
                f"cannot write resume file {self.path}: {exc.strerror or type(exc).__name__}.",
                hint="pass a --resume-file in a writable folder with free space.",
            ) from None
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def _done_of(done: Any, path: Path) -> dict[str, float | None]:
    """The ``done`` record: ``{key: modified}``, or a version 1 list (times unknown)."""
    if isinstance(done, list) and all(isinstance(k, str) for k in done):
        return dict.fromkeys(done)  # unknown times: every such entry is copied again
    if isinstance(done, dict) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
        for v in done.values()
    ):
        try:  # a whole number beyond a float's range (10**400) raised OverflowError here
            return {str(k): None if v is None else float(v) for k, v in done.items()}
        except OverflowError:
            pass
    raise ConfigError(
        f"resume file {path} is not a cachehub migrate checkpoint ('done' is malformed).",
        hint="pass another --resume-file, or delete this one to start over.",
    )


@dataclass
class MigrationReport:
    """What a run did, for the summary table and ``--json``."""

    source: str
    target: str
    filter: str | None
    dry_run: bool
    total: int = 0
    unchanged: int = 0
    """Keys copied by an earlier run and not modified at the source since: listed so in
    the checkpoint, or held by the target with the source's value and deadline (a copy an
    interrupted or concurrent run wrote but did not record)."""
    copied: int = 0
    recopied: int = 0
    """Of ``copied``: keys an earlier run copied, copied again because they changed."""
    with_ttl: int = 0
    idle: int = 0
    skipped_expired: int = 0
    batches: int = 0
    complete: bool = False
    verified: bool | None = None
    checked: int = 0
    missing: int = 0
    different: int = 0
    sample: int = 0
    first_missing: list[str] = field(default_factory=list)
    first_different: list[str] = field(default_factory=list)
    first_unreadable_copies: list[dict[str, str]] = field(default_factory=list)
    """Of ``first_different``: copies the target could not read back, as
    ``first_unreadable`` (counted in ``different``)."""
    would_copy: list[dict[str, Any]] = field(default_factory=list)
    would_copy_count: int = 0
    unreadable: int = 0
    """Source entries that could not be decoded: not copied, not verified."""
    first_unreadable: list[dict[str, str]] = field(default_factory=list)
    """The first few of them: ``{"key": ..., "error": ...}`` (the error's class and message)."""
    kept_newer: int = 0
    """Entries the target already held in a version newer than the source's (written
    there during the migration): kept, not copied over."""
    unwritable: int = 0
    """Source entries the target refused (a key or value it cannot hold, or a key under
    which it holds an item it cannot read): not copied."""
    first_unwritable: list[dict[str, str]] = field(default_factory=list)
    """The first few of them, as ``first_unreadable``."""
    colliding: int = 0
    """Source keys the target stores as one entry (Lucee's layout upper-cases keys, so
    ``user`` and ``USER`` collide): none of them is copied, so none silently replaces
    another."""
    first_colliding: list[list[str]] = field(default_factory=list)
    """The first few groups of colliding keys (each at most :data:`SHOWN_COLLIDING` keys)."""

    @property
    def succeeded(self) -> bool:
        """Complete, every readable entry copied and verified, none unreadable or refused."""
        return (
            self.complete
            and self.verified is not False
            and self.unreadable == 0
            and self.unwritable == 0
            and self.colliding == 0
        )


SHOWN_COLLIDING: Final = 5
"""How many keys of one colliding group a report lists."""


def _without_collisions(target: BaseCache, keys: list[str], report: MigrationReport) -> list[str]:
    """``keys`` less those that the target would store as one entry, which are reported.

    Copying them would leave one of each group, the last written, and lose the others
    without a word; the application must rename them (or drop all but one) first.
    """
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(target._entry_key(key), []).append(key)
    if len(groups) == len(keys):
        return keys
    colliding = set()
    for group in groups.values():
        if len(group) > 1:
            colliding.update(group)
            report.colliding += len(group)
            if len(report.first_colliding) < SHOWN_DIFFERENCES:
                report.first_colliding.append(group[:SHOWN_COLLIDING])
    return [key for key in keys if key not in colliding]


def _peek(source: BaseCache, key: str, report: MigrationReport) -> tuple[bool, Entry | None]:
    """``(readable, entry)`` of a source key; an undecodable entry is recorded, not raised.

    One bad entry must not make the rest of the source unreadable (a foreign writer's
    item in a shared table, a value signed with a retired key): it is skipped and
    reported with what the provider's typed error says about it.
    """
    try:
        return True, source.peek(key)
    except CorruptEntryError as exc:
        report.unreadable += 1
        if len(report.first_unreadable) < SHOWN_DIFFERENCES:
            report.first_unreadable.append({"key": key, "error": f"{type(exc).__name__}: {exc}"})
        return False, None


_REFUSED: Final = (InvalidKeyError, CacheValueError, SerializationError)
"""What a target raises for one entry it cannot hold (a key it cannot represent, a value
it cannot store or, for an expiry, a deadline already past): the entry's fault, never
the whole run's."""


def _refused(report: MigrationReport, key: str, exc: Exception) -> None:
    report.unwritable += 1
    if len(report.first_unwritable) < SHOWN_DIFFERENCES:
        report.first_unwritable.append({"key": key, "error": f"{type(exc).__name__}: {exc}"})


_COPY: Final = "copy"
_HELD: Final = "held"
_OURS: Final = "ours"

EXPIRY_TOLERANCE: Final = 2.0
"""Seconds by which a target entry's deadline may differ from its source entry's and the
entry still be taken for this migration's copy: a copy's deadline is rounded down to the
second, Lucee's layout stores whole seconds, and Redis reports a deadline by its clock."""


def _as_copied(entry: Entry, now: float) -> float | None:
    """The deadline a copy of ``entry`` gets: beyond the expiry cap is never (as ``_plan``)."""
    deadline = entry.deadline()
    if deadline is None or deadline - now >= MAX_TIME_SPAN.total_seconds():
        return None
    return deadline


def is_copy(held: Entry, value: Any, deadline: float | None, now: float) -> bool:
    """Whether ``held``, a target's entry, is what copying ``value`` with ``deadline``
    (None: never expires) wrote: an equal value of the same type and, within
    :data:`EXPIRY_TOLERANCE`, the same deadline.

    A copy's modification time is when it was written, always after its original's, so
    without this a rerun (or a concurrent run) takes its own copies for the
    application's newer writes. ``from-lucee`` asks too.
    """
    if not _same(value, held.value):
        return False
    theirs = _as_copied(held, now)
    if deadline is None or theirs is None:
        return deadline is None and theirs is None
    return abs(deadline - theirs) <= EXPIRY_TOLERANCE


def _found(target: BaseCache, key: str, entry: Entry, report: MigrationReport, now: float) -> str:
    """What the target holds under ``key``, for a key the checkpoint does not list:
    :data:`_COPY` (nothing, or an older version: write the copy), :data:`_OURS` (a copy
    of ``entry`` already, by an interrupted or concurrent run) or :data:`_HELD` (a newer
    version, counted as kept; or an item it cannot read, or a key it cannot name, both
    recorded as unwritable: not written).

    A key this migration copied before and that changed at the source since is never
    asked about: it is copied again (the source is still being written, so it is the
    authority), whatever the two hosts' clocks say."""
    try:
        held = target.peek(key)
    except (CorruptEntryError, *_REFUSED) as exc:
        _refused(report, key, exc)  # another program's item: not ours to overwrite
        return _HELD
    if held is None:
        return _COPY
    # Before the times: a copy's modification time is when it was written, always after
    # the source's, so a copy of ours would otherwise pass for the application's write
    # and never be recorded nor verified.
    if is_copy(held, entry.value, _as_copied(entry, now), now):
        return _OURS
    if held.modified > entry.modified:
        report.kept_newer += 1  # written to the target after the source's version
        return _HELD
    return _COPY


def _batches(keys: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


@dataclass
class _Planned:
    """Entries of one batch grouped by how they are written."""

    forever: dict[str, Any] = field(default_factory=dict)
    by_deadline: dict[int, dict[str, Any]] = field(default_factory=dict)
    idle: dict[str, Entry] = field(default_factory=dict)
    modified: dict[str, float] = field(default_factory=dict)


def _plan(entries: dict[str, Entry], now: float) -> tuple[_Planned, int]:
    """Group live entries for writing; returns the plan and how many are too close to dying."""
    plan = _Planned()
    dying = 0
    for key, entry in entries.items():
        if entry.idle is not None:
            # Counted from the last access rounded down: the copy dies no later. A last
            # access beyond any date (a foreign stamp such as 1e100) counts from now: a
            # float that large cannot add the idle time, so the copy was written dead.
            accessed = entry.accessed
            if accessed - now > MAX_TIME_SPAN.total_seconds():
                accessed = now
            floored = Entry(
                entry.value,
                entry.created,
                entry.modified,
                math.floor(accessed),
                0,
                None if entry.expires_at is None else math.floor(entry.expires_at),
                min(entry.idle, MAX_TIME_SPAN.total_seconds()),
            )
            deadline = floored.deadline()
            if deadline is not None and deadline <= now + 1:
                dying += 1
                continue
            plan.idle[key] = floored
        elif entry.expires_at is None or entry.expires_at - now >= MAX_TIME_SPAN.total_seconds():
            # Beyond the expiry cap (written before it existed): "never" in practice.
            plan.forever[key] = entry.value
        else:
            deadline = math.floor(entry.expires_at)
            if deadline <= now + 1:
                dying += 1  # less than a second left: not worth copying
                continue
            plan.by_deadline.setdefault(deadline, {})[key] = entry.value
        plan.modified[key] = entry.modified
    return plan, dying


def _put_group(
    target: BaseCache,
    items: dict[str, Any],
    deadline: int | None,
    late: set[str],
    report: MigrationReport,
) -> set[str]:
    """``put_many`` of entries with one deadline; returns the keys the target refused.

    When the batch is refused, the keys are written one by one, so that one entry the
    target cannot hold costs only itself: each refusal is late (its deadline has passed
    meanwhile) or recorded in the report as unwritable.
    """
    until = None if deadline is None else datetime.fromtimestamp(deadline, UTC)
    try:
        target.put_many(items, until=until)
        return set()
    except _REFUSED:
        pass
    refused: set[str] = set()
    for key, value in items.items():
        try:
            target.put(key, value, until=until)
        except _REFUSED as exc:
            if deadline is not None and deadline <= datetime.now(UTC).timestamp():
                late.add(key)  # the deadline passed while we were copying
            else:
                refused.add(key)
                _refused(report, key, exc)
    return refused


def _write(target: BaseCache, plan: _Planned, report: MigrationReport) -> tuple[set[str], set[str]]:
    """Write a planned batch; returns the keys that died before they could be written,
    and those the target refused (recorded in ``report``)."""
    late: set[str] = set()
    refused: set[str] = set()
    if plan.forever:
        refused |= _put_group(target, plan.forever, None, late, report)
    for deadline, items in sorted(plan.by_deadline.items()):
        refused |= _put_group(target, items, deadline, late, report)
    for key, entry in plan.idle.items():
        try:
            if not target.restore(key, entry):
                late.add(key)
        except _REFUSED as exc:
            refused.add(key)
            _refused(report, key, exc)
    return late, refused


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (1 and 1.0, or True and 1, are different), a NaN
    the same as a NaN: a copied value holding one never compared equal to its original,
    so verification failed and a rerun took the copy for the application's write."""
    if type(a) is not type(b):
        return False
    if a is b:
        return True
    kind = type(a)
    if kind is float or kind is Decimal:
        try:
            return bool(a == b) or (a != a and b != b)  # only a NaN differs from itself
        except ArithmeticError:  # a signalling Decimal NaN refuses to be compared
            return str(a) == str(b)
    if kind is list or kind is tuple:
        return len(a) == len(b) and all(map(_same, a, b))
    if kind is dict:
        return a.keys() == b.keys() and all(_same(value, b[key]) for key, value in a.items())
    try:
        return bool(a == b)
    except Exception:  # a value whose == raises is no proof of equality
        return False


def migrate(
    source: BaseCache,
    target: BaseCache,
    *,
    filter: str | None = None,
    batch: int = 100,
    resume_file: str | os.PathLike[str] | None = None,
    max_batches: int | None = None,
    dry_run: bool = False,
    verify: bool = True,
    progress: Progress | None = None,
) -> MigrationReport:
    """Copy the entries of ``source`` matching ``filter`` to ``target``; verify the copy.

    In-process, so it also migrates from a memory cache (the CLI, another process, sees
    only its own empty memory cache and refuses it). Values and remaining lifetimes are
    kept and the source is not touched (see the module docstring). ``resume_file`` makes
    the run resumable (and a rerun after completion copy only what changed); an
    interruption (``KeyboardInterrupt``) propagates after the last finished batch was
    recorded. ``max_batches`` stops early (``report.complete`` is then False).
    Verification runs only after a complete run; ``report.verified`` says whether every
    copied entry that is still alive at the source is in the target, and a sample of
    values equals the source's. Raises :class:`~cachehub.errors.ConfigError` for a bad
    call or resume file, and the caches' own errors.
    """
    if source is target:
        raise ConfigError(
            "migrate: source and target are the same cache.", hint="pass two different caches."
        )
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ConfigError(
            f"migrate: batch must be a positive int, got {batch!r:.40}.", hint="e.g. batch=100."
        )
    if target.read_only and not dry_run:
        raise ConfigError(
            f"cache '{target.name}' is read-only; migrate cannot write to it.",
            hint="set readOnly to false on the target cache.",
        )
    path = None if resume_file is None else Path(resume_file)
    checkpoint = Checkpoint.load(path, source.name, target.name, filter, write=not dry_run)
    keys = sorted(source.keys(filter))
    report = MigrationReport(source.name, target.name, filter, dry_run, total=len(keys))
    keys = _without_collisions(target, keys, report)
    tick = progress or (lambda _phase, _done, _total: None)
    if dry_run:
        _dry_run(source, target, keys, checkpoint, report)
        return report
    checkpoint.complete = False  # a run that stops midway leaves it incomplete
    copied_now: list[str] = []
    done_count = 0
    tick("copy", 0, len(keys))
    for chunk in _batches(keys, batch):
        if max_batches is not None and report.batches >= max_batches:
            break
        entries: dict[str, Entry] = {}
        for key in chunk:
            readable, entry = _peek(source, key, report)
            if not readable:
                checkpoint.done.pop(key, None)
            elif entry is None:
                report.skipped_expired += 1
                checkpoint.done.pop(key, None)
            elif key in checkpoint.done and checkpoint.done[key] == entry.modified:
                report.unchanged += 1
            elif key in checkpoint.done:
                report.recopied += 1
                entries[key] = entry
            else:
                found = _found(target, key, entry, report, datetime.now(UTC).timestamp())
                if found == _OURS:  # copied by a run that could not record it: recorded now
                    report.unchanged += 1
                    checkpoint.done[key] = entry.modified
                elif found == _COPY:
                    entries[key] = entry
        plan, dying = _plan(entries, datetime.now(UTC).timestamp())
        late, refused = _write(target, plan, report)
        report.skipped_expired += dying + len(late)
        for key, modified in plan.modified.items():
            if key in refused:
                checkpoint.done.pop(key, None)  # a rerun tries it again
            elif key not in late:
                checkpoint.done[key] = modified
                copied_now.append(key)
        report.copied = len(copied_now)
        report.with_ttl += sum(len(g.keys() - late - refused) for g in plan.by_deadline.values())
        report.idle += len(plan.idle.keys() - late - refused)
        report.batches += 1
        checkpoint.save()
        done_count += len(chunk)
        tick("copy", done_count, len(keys))
    report.complete = done_count == len(keys)
    if report.complete:
        checkpoint.complete = True
        checkpoint.save()
        if verify:
            _verify(source, target, [k for k in keys if k in checkpoint.done], report, tick)
    return report


def _dry_run(
    source: BaseCache,
    target: BaseCache,
    keys: list[str],
    checkpoint: Checkpoint,
    report: MigrationReport,
) -> None:
    """Count what a run would do, entry by entry as it does, writing nothing."""
    for key in keys:
        readable, entry = _peek(source, key, report)
        if not readable:
            continue
        if entry is None:
            report.skipped_expired += 1
            continue
        if checkpoint.done.get(key, -1.0) == entry.modified:
            report.unchanged += 1
            continue
        now = datetime.now(UTC).timestamp()
        if key not in checkpoint.done:
            found = _found(target, key, entry, report, now)
            if found == _OURS:
                report.unchanged += 1
            if found != _COPY:
                continue
        plan, dying = _plan({key: entry}, now)
        if dying:
            report.skipped_expired += 1
            continue
        refusal = _refusal(target, key, entry.value, plan.idle.get(key), now)
        if refusal is not None:
            _refused(report, key, refusal)
            continue
        report.would_copy_count += 1
        if key in plan.idle:
            report.idle += 1
            deadline = plan.idle[key].deadline()
        elif plan.by_deadline:
            report.with_ttl += 1
            [deadline] = plan.by_deadline
        else:
            deadline = None  # no expiry, or one beyond the cap: copied as never expiring
        if len(report.would_copy) < SHOWN_DIFFERENCES:
            ttl = None if deadline is None else round(max(0.0, deadline - now), 3)
            report.would_copy.append({"key": key, "ttl": ttl, "idle": key in plan.idle})


def _refusal(
    target: BaseCache, key: str, value: Any, idle: Entry | None, now: float
) -> Exception | None:
    """What writing ``value`` under ``key`` would raise for the entry itself (its key or
    value refused, ``restore``'s checks of an idle entry ``idle``), found without writing;
    None when the target takes it. A dry run must not promise what the run refuses.

    The key and the expiry are checked by the base class's write plans, the value by the
    provider's own encoding step (:meth:`~cachehub.api.BaseCache._storable`)."""
    try:
        storage_key = target._sk(key)
        if idle is not None and not target.read_only:
            target._restore_plan(key, idle)
        target._storable(storage_key, value, now)
    except _REFUSED as exc:
        return exc
    return None


def _verify(
    source: BaseCache,
    target: BaseCache,
    keys: list[str],
    report: MigrationReport,
    tick: Progress,
) -> None:
    """Every key alive in the source is in the target; a sample of values is equal.

    Streams in batches: one ``exists`` per key in the target (counts no hit and slides
    nothing), the source asked only about the keys the target lacks.
    """
    sample = set(random.sample(keys, min(SAMPLE_SIZE, len(keys))))
    report.sample = len(sample)
    tick("verify", 0, len(keys))
    for position, key in enumerate(keys, 1):
        report.checked += 1
        try:
            if key in sample:
                copy, there = target.peek(key), True
            else:
                copy, there = None, target.exists(key)
        except (CorruptEntryError, *_REFUSED) as exc:
            # A copy the target cannot read back (bytes its layout takes for its own
            # encoding) is that key's verdict, not the end of the run and its report.
            _different(report, key)
            if len(report.first_unreadable_copies) < SHOWN_DIFFERENCES:
                error = f"{type(exc).__name__}: {exc}"
                report.first_unreadable_copies.append({"key": key, "error": error})
        else:
            if key in sample:
                readable, original = _peek(source, key, report)
                if readable and original is not None:
                    if copy is None:
                        _missing(report, key)
                    elif not _same(original.value, copy.value):
                        _different(report, key)
            elif not there and source.exists(key):
                _missing(report, key)
        if position % 100 == 0 or position == len(keys):
            tick("verify", position, len(keys))
    report.verified = report.missing == 0 and report.different == 0


def _different(report: MigrationReport, key: str) -> None:
    report.different += 1
    if len(report.first_different) < SHOWN_DIFFERENCES:
        report.first_different.append(key)


def _missing(report: MigrationReport, key: str) -> None:
    report.missing += 1
    if len(report.first_missing) < SHOWN_DIFFERENCES:
        report.first_missing.append(key)
