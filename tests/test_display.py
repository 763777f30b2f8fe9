"""Text other programs wrote, shown so that nothing hides (cachehub.display): the CLI and
the console escape what would not show as itself."""

from __future__ import annotations

import pytest

from cachehub.display import visible, visible_prefix

LOOKALIKES = [
    # On main (str.isprintable() only) each of these looked exactly like "adm".
    "adm\u034f",  # combining grapheme joiner
    "adm\ufe0f",  # variation selector
    "adm\u17b4",  # Khmer vowel inherent
    "adm\u3164",  # Hangul filler
    "adm ",
    " adm",
]


@pytest.mark.parametrize("key", LOOKALIKES)
def test_keys_that_look_like_another_are_shown_apart(key: str) -> None:
    assert visible(key) != "adm"
    assert visible(key).replace("\\", "") != "adm"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("x  y", "x\\x20\\x20y"),
        ("x y", "x y"),
        ("a\u00a0b", "a\\xa0b"),
        ("a\u3000b", "a\\u3000b"),
        ("cafe\u0301", "cafe\\u0301"),  # decomposed: a lookalike of the composed one
        ("caf\u00e9", "caf\u00e9"),
        ("\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35", "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35"),  # Thai
        ("report\u202egpj.exe", "report\\u202egpj.exe"),
        ("job\x1b[2J", "job\\x1b[2J"),
        ("a\nb", "a\\nb"),
        ("adm\\u034f", "adm\\\\u034f"),  # a backslash is doubled: no key spells another
        ("k\U000e0100", "k\\U000e0100"),
    ],
)
def test_what_is_escaped(text: str, shown: str) -> None:
    assert visible(text) == shown


def test_distinct_texts_are_shown_distinct() -> None:
    texts = ["adm", *LOOKALIKES, "adm\\u034f", "adm\\x20", "x  y", "x\\x20\\x20y", "x \u00a0y"]
    assert len({visible(t) for t in texts}) == len(texts)


def test_a_long_text_is_escaped_only_as_far_as_it_is_shown() -> None:
    shown, cut = visible_prefix("\x00" * 100_000, 40)
    assert cut
    assert shown == "\\x00" * 10
    assert visible_prefix("short", 40) == ("short", False)
