"""Text that other programs wrote (keys, values, names), shown so that nothing hides.

Anyone who can write to a backend chooses its keys. Printed as they are, control
characters drive the terminal that lists them (``ESC [ 2 J`` clears it, ``ESC ] 52``
sets the clipboard) and a right-to-left override shows ``report<U+202E>gpj.exe`` as
``reportexe.jpg``; invisible characters make two keys look alike (``adm`` and
``adm<U+034F>``, ``x y`` and ``x  y``, ``café`` composed and decomposed). The CLI and the
console show such characters as Python escapes (``adm\\u034f``, a hidden space as
``\\x20``, and so a backslash as two); ``--json``, links and form fields keep the real
text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from typing import Final

__all__ = ["visible", "visible_prefix"]

_INVISIBLE: Final = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u3164\uffa0"
    + "".join(map(chr, range(0xFE00, 0xFE10)))  # variation selectors
)
"""Printable to Python, yet shown as nothing: default-ignorable marks and fillers."""


def _escape(char: str) -> str:
    escaped = repr(char)[1:-1]  # \n, \x1b, \u202e: what Python writes, where it escapes
    if escaped != char:
        return escaped
    code = ord(char)  # printable to Python (U+034F, U+3000...): written the same way
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _hidden(char: str, marks: bool) -> bool:
    """Whether ``char`` shows as nothing, or as another character, on its own."""
    if not char.isprintable() or char in _INVISIBLE or "\U000e0100" <= char <= "\U000e01ef":
        return True
    category = unicodedata.category(char)
    if category == "Zs":
        return True  # U+00A0, U+2009, U+3000... look like a space (a plain one: see below)
    return marks and category in ("Mn", "Me")


def _pieces(text: str) -> Iterator[str]:
    """Each character of ``text``, or its escape; lazily (see :func:`visible_prefix`)."""
    # Combining marks are text in most scripts (Thai, Hindi): escaped only in a text that
    # is not in NFC, where they spell a lookalike of a composed character.
    marks = not unicodedata.is_normalized("NFC", text)
    last = len(text) - 1
    for index, char in enumerate(text):
        if char == " ":
            # A single space between two other characters shows; leading, trailing or
            # doubled ones vanish in most displays.
            alone = 0 < index < last and text[index - 1] != " " and text[index + 1] != " "
            yield " " if alone else "\\x20"
        elif char == "\\":
            yield "\\\\"  # else a key spelling "\\u034f" would look like one holding U+034F
        elif not _hidden(char, marks):
            yield char
        else:
            yield _escape(char)


def visible(text: str) -> str:
    """``text`` with every character that would not show as itself written as its
    Python escape (see the module docstring)."""
    if (
        text.isascii()
        and text.isprintable()
        and "\\" not in text
        and "  " not in text
        and text.strip(" ") == text
    ):
        return text  # the common case, in C-level passes
    return "".join(_pieces(text))


def visible_prefix(text: str, limit: int) -> tuple[str, bool]:
    """:func:`visible` of ``text``, cut after about ``limit`` characters (never inside
    an escape); and whether it was cut. Only what is shown is escaped: a key of 16,384
    characters costs what its first ``limit`` do."""
    shown: list[str] = []
    size = 0
    for piece in _pieces(text):
        if size + len(piece) > limit and shown:
            return "".join(shown), True
        shown.append(piece)
        size += len(piece)
    return "".join(shown), False
