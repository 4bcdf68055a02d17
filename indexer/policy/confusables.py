"""Letters of any script that look like Latin ones, folded to ASCII (Unicode TR39 confusables).

The data is Unicode's ``confusables.txt`` as shipped by the ``confusable-homoglyphs`` package;
it is read on the first non-ASCII letter the detector meets (ASCII text never loads it).
Cherokee, Armenian, Coptic, Lisu, mathematical and other look-alikes become the ASCII letter
they imitate. Cyrillic and Greek letters are left to the word-by-word rules of
:mod:`pixsearch.indexer.policy.text` (a Russian word must stay Russian).

>>> latin_lookalike("\\u13a5"), latin_lookalike("\\u0585"), latin_lookalike("\\u2c9f")  # Ꭵ օ ⲟ
('i', 'o', 'o')
>>> latin_lookalike("\\u2c95"), latin_lookalike("я")  # Coptic kapa (via kra), a Russian letter
('k', None)
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

__all__ = ["INVISIBLE_LETTERS", "latin_lookalike", "latin_table"]

#: Default-ignorable code points that are letters (so not dropped by their category) and
#: render as nothing: the Hangul fillers and the Khmer inherent vowels.
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u17b4\u17b5")

# Latin letters outside ASCII that the data maps only to other non-ASCII Latin letters.
_EXTRA = {"ĸ": "k", "ı": "i", "ȷ": "j"}


@cache
def latin_table() -> dict[str, str]:
    """Every non-ASCII character whose TR39 look-alikes include an ASCII letter -> that letter.

    Lower case is preferred when a character imitates both cases.
    """
    text = resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8")
    data: dict[str, list[dict[str, str]]] = json.loads(text)
    table: dict[str, str] = dict(_EXTRA)
    for char, glyphs in data.items():
        if len(char) != 1 or char.isascii():
            continue
        letters = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii()]
        letters = [c for c in letters if c.isalpha()]
        if letters:
            table[char] = min(letters, key=lambda c: (not c.islower(), c))
        else:  # one step through another Latin letter: Coptic kapa -> kra -> k
            via = [_EXTRA[g["c"]] for g in glyphs if g["c"] in _EXTRA]
            if via:
                table[char] = via[0]
    return table


def latin_lookalike(char: str) -> str | None:
    """The ASCII letter ``char`` imitates (its lower-case form first), or ``None``."""
    table = latin_table()
    lower = char.lower()
    if lower != char and len(lower) == 1 and lower in table:
        return table[lower].lower()
    found = table.get(char)
    return found.lower() if found is not None else None
