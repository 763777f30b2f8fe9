"""The one secret scrubber: every message, repr, CLI output and log record goes through it.

What it masks (with :data:`SECRET_MASK`):

* **URL userinfo**: everything between ``scheme://`` and the last ``@`` of the URL, whatever
  it contains (``#``, ``?``, ``@``, spaces, ``%``-escapes), so a password that breaks URL
  parsing is still hidden as a whole;
* **query and header tokens**: ``?token=...``, ``&sig=...``, ``X-Amz-Signature=...``,
  ``password=...``, ``key=...``; ``Authorization``/``X-Amz-Security-Token``/``Cookie``
  header values; AWS access key ids (``AKIA...``, ``ASIA...``);
* **settings whose names look secret** (:func:`looks_secret`: ``password``, ``pwd``,
  ``auth``, ``requirepass``, ``apiKey``, ``sessionTokn``... misspellings included), in
  :func:`redact`;
* **known secret values**: every secret setting of every cache built in this process is
  registered (:func:`register_secret`) and replaced wherever it appears, in its plain,
  URL-encoded, ``repr``-escaped and JSON-escaped forms. Values shorter than
  :data:`MIN_SECRET_LENGTH` are not replaced in free text (they would mask ordinary
  words); they are still masked structurally (URL userinfo, secret-named settings).

:class:`SecretFilter` applies :func:`scrub` to log records; :func:`install_log_filter`
makes every record of the botocore, boto3, urllib3, redis and cachehub loggers pass
through it (at record creation, so no handler or formatter can see the raw text).

This module imports nothing from cachehub: errors, config and the CLI all build on it.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import logging
import re
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final
from urllib.parse import quote, quote_plus, unquote

__all__ = [
    "SECRET_MASK",
    "MIN_SECRET_LENGTH",
    "SCRUBBED_LOGGERS",
    "SecretFilter",
    "install_log_filter",
    "looks_secret",
    "redact",
    "register_secret",
    "register_settings",
    "scrub",
    "shown_value",
    "unmask",
    "url_secrets",
]

SECRET_MASK: Final = "*****"  # noqa: S105 - the mask shown in place of a secret
MIN_SECRET_LENGTH: Final = 4
"""Registered values shorter than this are not replaced in free text (see module doc)."""
MAX_REGISTERED: Final = 4096
"""Known secret values kept per process (the oldest are dropped beyond this)."""
SCRUBBED_LOGGERS: Final = (
    "botocore",
    "boto3",
    "s3transfer",
    "urllib3",
    "aiobotocore",  # the async DynamoDB client logs its signed requests at DEBUG too
    "aiohttp",
    "redis",
    "cachehub",
)
"""Logger hierarchies whose records are scrubbed once :func:`install_log_filter` ran."""

_SCHEME_BEFORE: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,31}\Z")
# Where a URL's userinfo can no longer extend: a line break, a quote or angle bracket.
_URL_STOP: Final = re.compile(r"[\r\n'\"<>`]|://")
_USERINFO_LIMIT: Final = 4096
_QUERY_PARAM: Final = re.compile(r"(?<=[?&;])([A-Za-z0-9_.\-]{1,64})=([^&#\s'\"<>]*)")
_HEADER: Final = re.compile(
    r"(?i)(?P<name>\b(?:proxy-)?authorization|x-amz-security-token|x-amz-signature|"
    r"x-amz-credential|x-api-key|set-cookie|cookie)(?P<sep>['\"]?\s*[:=]\s*)"
    r"(?:(?P<q>b?['\"])(?P<quoted>[^'\"\r\n]*)['\"]|(?P<bare>[^\r\n,;&]*))"
)
_HEADER_WORDS: Final = ("authorization", "x-amz-", "x-api-key", "cookie")
_AWS_KEY_ID: Final = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{12,28}\b")
_SIGNATURE: Final = re.compile(r"(?i)\b(signature|credential)=([A-Za-z0-9/+=_.\-]{8,})")

# Secret-sounding name parts. Strong words are masked wherever they occur in a name
# (``dbPassword``, ``SESSIONTOKEN``); weak words only as a whole word of it (``pwd``,
# ``auth``: so ``authority`` and ``bypassCache`` are no secrets).
_STRONG_WORDS: Final = (
    "secret",
    "password",
    "passwd",
    "passphrase",
    "token",
    "credential",
    "signingkey",
    "privatekey",
    "accesskey",
    "apikey",
    "requirepass",
    "masterauth",
)
_WEAK_WORDS: Final = frozenset(
    {"pwd", "pw", "pass", "auth", "creds", "private", "sig", "signature", "cookie", "bearer"}
)
_FUZZY_WORDS: Final = (*_STRONG_WORDS, "secretkey", "sessiontoken", "credentials")
_SECRET_PARAMS: Final = frozenset({"key", "sig", "code", "x-amz-signature", "x-amz-credential"})
_WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def looks_secret(name: str) -> bool:
    """Whether a setting (or query parameter) called ``name`` probably holds a secret.

    Matches the words of :data:`_STRONG_WORDS` anywhere, the weak words as whole words
    of a camelCase/snake_case/kebab-case name, and misspellings of both (``passwrd``,
    ``sessionTokn``, ``secretky``). ``authority``, ``author``, ``primaryKey`` and
    ``keyPrefix`` are not secret.
    """
    # A setting name longer than this is no word anyone typed; the cut also bounds what
    # the memo below keeps.
    return bool(name) and _looks_secret(name[:128])


@functools.lru_cache(maxsize=2048)
def _looks_secret(name: str) -> bool:
    # Memoised: the fuzzy match costs ~100 us, and a config of thousands of caches asks
    # about the same few setting names over and over (32,000 caches took 11 s of CPU).
    joined = re.sub(r"[^a-z0-9]", "", name.lower())
    if any(word in joined for word in _STRONG_WORDS):
        return True
    words = [w.lower() for w in _WORD.findall(name)]
    if any(w in _WEAK_WORDS for w in words):
        return True
    candidates = [joined, *words, *("".join(p) for p in itertools.pairwise(words))]
    return any(
        len(c) >= 5 and difflib.get_close_matches(c, _FUZZY_WORDS, 1, 0.8) for c in candidates
    )


# ---------------------------------------------------------------------- known values


class _Known:
    """The registered secret values and one compiled pattern matching all their forms."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, None] = {}  # insertion-ordered set
        self.pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        with self.lock:
            before = len(self.values)
            for value in values:
                if value not in self.values:
                    self.values[value] = None
            if len(self.values) == before:
                return
            while len(self.values) > MAX_REGISTERED:
                del self.values[next(iter(self.values))]
            # Longest first, so a secret containing another one is masked as a whole.
            ordered = sorted(self.values, key=len, reverse=True)
            self.pattern = re.compile("|".join(re.escape(v) for v in ordered))


_KNOWN = _Known()


def _forms(value: str) -> Iterator[str]:
    """The ways ``value`` can appear in text: plain, URL-encoded, repr- and JSON-escaped."""
    yield value
    yield quote(value, safe="")
    yield quote(value)
    yield quote_plus(value)
    yield unquote(value)
    yield repr(value)[1:-1]
    yield json.dumps(value)[1:-1]
    yield repr(value.encode("utf-8", "backslashreplace"))[2:-1]


def register_secret(value: Any) -> None:
    """Mask ``value`` (and its encoded forms) in every later :func:`scrub`."""
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    _KNOWN.add(f for f in _forms(value[:_USERINFO_LIMIT]) if len(f) >= MIN_SECRET_LENGTH)


_URL_DELIMITERS: Final = re.compile(r"[#?/@\s:;&=]+")


def url_secrets(text: str) -> list[str]:
    """The secret parts of the URLs in ``text``: passwords (or tokens) and query tokens.

    A password is registered whole and also cut at the characters that end a URL part
    (``#``, ``?``, ``/``, ``@``, spaces): a parser that stopped there (``'port' is
    'secret'``) would otherwise show its first piece.
    """
    found: list[str] = []
    for start, end in _userinfo_spans(text):
        userinfo = text[start:end]
        _, colon, password = userinfo.partition(":")
        secret = password if colon else userinfo
        found.append(secret)
        found.extend(_URL_DELIMITERS.split(unquote(secret)))
        found.extend(_URL_DELIMITERS.split(secret))
    for match in _QUERY_PARAM.finditer(text):
        if _secret_param(match.group(1)) and match.group(2):
            found.append(match.group(2))
    return found


def register_settings(settings: Mapping[str, Any], secret_names: Iterable[str] = ()) -> None:
    """Register the secrets of one cache's settings: secret options, URL passwords, tokens.

    Values of options in ``secret_names`` and of settings whose names :func:`looks_secret`
    are registered whole; every other string contributes the secret parts of its URLs.
    """
    names = set(secret_names)
    for name, value in _walk(settings):
        if not isinstance(value, str) or not value:
            continue
        if name in names or looks_secret(name):
            register_secret(value)
        for part in url_secrets(value):
            register_secret(part)


def _walk(value: Mapping[str, Any], depth: int = 0) -> Iterator[tuple[str, Any]]:
    for name, item in value.items():
        if isinstance(item, Mapping) and depth < 8:
            yield from _walk(item, depth + 1)
        elif isinstance(item, (list, tuple)):
            for element in item[:256]:
                yield str(name), element
        else:
            yield str(name), item


# ---------------------------------------------------------------------- scrubbing


def _userinfo_spans(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of the userinfo of every ``scheme://userinfo@host`` in ``text``.

    The userinfo runs to the *last* ``@`` before the URL can no longer continue (a line
    break, a quote, the next ``://``), so ``@``, ``#``, ``?`` and spaces inside a password
    are covered. Linear in ``len(text)``: the scheme is looked up backwards from each
    ``://`` over at most 32 characters.
    """
    pos = text.find("://")
    while pos != -1:
        start = pos + 3
        stop = _URL_STOP.search(text, start, min(len(text), start + _USERINFO_LIMIT))
        end = stop.start() if stop else min(len(text), start + _USERINFO_LIMIT)
        at = text.rfind("@", start, end)
        if at > start and _SCHEME_BEFORE.search(text, max(0, pos - 32), pos):
            yield start, at
        pos = text.find("://", start)


_AUTHORITY_END: Final = re.compile(r"[/?#\s'\"<>`]|\Z")
_PORT: Final = re.compile(r":[0-9]*\Z")
_URL_START: Final = re.compile(r"(?:\A|[\s'\"<>`])\Z")
"""The end of text a URL may start after: nothing, or a character no URL runs across."""


def _host_after(text: str, at: int) -> str:
    """The ``@host`` after the userinfo ending at ``at``, its ``:port`` left out."""
    end = _AUTHORITY_END.search(text, at)
    authority = text[at : end.start() if end else len(text)]
    port = _PORT.search(authority)
    return authority[: port.start()] if port else authority


def unmask(edited: str, original: str) -> str | None:
    """``edited``, a person's change to ``scrub(original)``, with the URL userinfo each mask
    stands for put back; ``None`` when a mask cannot be given back safely.

    A form that shows ``redis://*****@cache:6379/0`` and comes back as
    ``redis://*****@cache:6380/0`` means "the same credentials, another port". The masks
    are matched in order, and only when every mask of ``scrub(original)`` is a URL's
    userinfo and ``edited`` keeps each one behind the same scheme and before the same
    ``@host`` (the port, path and query may change), the URL starting at the start of
    the text or after a space or quote (never inside another URL's query): credentials
    are never handed to a host they were not written for.
    """
    if SECRET_MASK not in edited:
        return edited
    spans = list(_userinfo_spans(original))
    if (
        not spans
        or scrub(original).count(SECRET_MASK) != len(spans)
        or edited.count(SECRET_MASK) != len(spans)
    ):
        return None
    pieces = edited.split(SECRET_MASK)
    restored = [pieces[0]]
    since = 0  # where the original text before this mask's URL starts
    for (start, at), after in zip(spans, pieces[1:], strict=True):
        scheme = _SCHEME_BEFORE.search(original, max(0, start - 3 - 32), start - 3)
        if scheme is None or not restored[-1].endswith(scheme.group() + "://"):
            return None
        # The URL must start there, not inside another one: 'http://evil/?u=redis://' or
        # '...?client_name=redis://' would send the credentials to evil in a query, and
        # 'xredis://' is another scheme. Text left as it was is fine.
        head = restored[-1][: -len(scheme.group()) - 3]
        if head != original[since : scheme.start()] and (
            "://" in head or not _URL_START.search(head)
        ):
            return None
        if _host_after(after, 0) != _host_after(original, at):
            return None  # another host, or more host: '@cache.evil.example'
        restored += [original[start:at], after]
        since = at
    return "".join(restored)


def _secret_param(name: str) -> bool:
    return name.lower() in _SECRET_PARAMS or looks_secret(name)


def _mask_query(match: re.Match[str]) -> str:
    if match.group(2) and _secret_param(match.group(1)):
        return f"{match.group(1)}={SECRET_MASK}"
    return match.group(0)


def _mask_header(match: re.Match[str]) -> str:
    head = match.group("name") + match.group("sep")
    if match.group("q") is not None:
        quote_char = match.group("q")[-1]
        return f"{head}{match.group('q')}{SECRET_MASK}{quote_char}"
    return f"{head}{SECRET_MASK}" if match.group("bare").strip() else match.group(0)


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret masked (see the module doc); ``extra``: more values."""
    known = _KNOWN.pattern
    if known is not None:
        text = known.sub(SECRET_MASK, text)
    for value in extra:
        if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
            for form in set(_forms(value)):
                if len(form) >= MIN_SECRET_LENGTH:
                    text = text.replace(form, SECRET_MASK)
    if "://" in text:
        spans = list(_userinfo_spans(text))
        for start, end in reversed(spans):
            text = text[:start] + SECRET_MASK + text[end:]
    if "=" in text:
        text = _QUERY_PARAM.sub(_mask_query, text)
        text = _SIGNATURE.sub(lambda m: f"{m.group(1)}={SECRET_MASK}", text)
    lowered = text.lower()
    if any(word in lowered for word in _HEADER_WORDS):  # a substring test is far cheaper
        text = _HEADER.sub(_mask_header, text)
    return _AWS_KEY_ID.sub(SECRET_MASK, text)


def redact(value: Any, secret_names: Iterable[str] = ()) -> Any:
    """A copy of ``value`` safe to show: secret-named entries masked, strings scrubbed.

    Mappings are walked (nested ``custom`` blocks included); an entry is masked when its
    name is in ``secret_names`` or :func:`looks_secret`, unless it is empty.
    """
    return _redact(value, frozenset(secret_names), 0)


def _redact(value: Any, names: frozenset[str], depth: int) -> Any:
    if depth > 32:
        return SECRET_MASK  # no real configuration nests this deep; show nothing
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            if (str(key) in names or looks_secret(str(key))) and item not in (None, ""):
                out[key] = SECRET_MASK
            else:
                out[key] = _redact(item, names, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return type(value)(_redact(v, names, depth + 1) for v in value)
    if isinstance(value, str):
        return scrub(value)
    return value


_PLAIN: Final = re.compile(r"[A-Za-z ._-]{0,16}|[0-9 .,:_+-]{0,24}")


def shown_value(value: Any, limit: int = 60) -> str:
    """How an error message may quote a setting's value without risking a secret.

    A URL is shown scrubbed (its host helps; its password and tokens are masked) and cut
    to ``limit``; a short word or number is quoted as it is; anything else - which could
    be a misplaced password - only by its type and length.
    """
    if isinstance(value, str):
        if "://" in value:
            text = scrub(value)
            return repr(text if len(text) <= limit else text[: limit - 1] + "…")
        if _PLAIN.fullmatch(value) and scrub(value) == value:
            return repr(value)
        return f"({len(value)} characters, not shown)"
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return "(not shown)"


# ---------------------------------------------------------------------- logging


class SecretFilter(logging.Filter):
    """Rewrites a log record so that its message, traceback and stack hold no secret.

    The message is formatted once (``msg % args``), scrubbed and stored back with no
    args; an exception is formatted and scrubbed into ``exc_text``, which formatters use
    instead of formatting ``exc_info`` again. Never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place; always True."""
        if getattr(record, "_cachehub_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep its parts, scrubbed
            message = f"{record.msg} {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record._cachehub_scrubbed = True
        return True


_FILTER: Final = SecretFilter()
_install_lock = threading.Lock()
_installed = threading.Event()


def install_log_filter() -> None:
    """Scrub every record of :data:`SCRUBBED_LOGGERS` (and their children) from now on.

    A logger's filters do not apply to its children's records (``botocore.endpoint``), so
    the filter runs in the log record factory, for records of those hierarchies only,
    when the record is created - before any handler, formatter or capture sees it. The
    factory in place is wrapped, not replaced. Idempotent and cheap; caches call it when
    they are created.
    """
    if _installed.is_set():
        return
    with _install_lock:
        if _installed.is_set():
            return
        previous = logging.getLogRecordFactory()
        prefixes = tuple(f"{name}." for name in SCRUBBED_LOGGERS)

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            name = record.name
            if name in SCRUBBED_LOGGERS or name.startswith(prefixes):
                _FILTER.filter(record)
            return record

        logging.setLogRecordFactory(factory)
        for name in SCRUBBED_LOGGERS:  # records created before, or by another factory
            logging.getLogger(name).addFilter(_FILTER)
        _installed.set()
