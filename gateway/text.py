"""Text every phone format can carry: what XML 1.0 allows (§2.2 Char), the strictest of them.

One card with a control character upstream must not make a document unrenderable, nor look
like an edit when the phone sends the cleaned text back.
"""

from __future__ import annotations

import re
import unicodedata

#: C0 controls but tab, LF and CR; lone surrogates; U+FFFE and U+FFFF.
_NOT_CARRIABLE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def carriable(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry."""
    return _NOT_CARRIABLE.sub("", text) if _NOT_CARRIABLE.search(text) else text


#: Letters and digits: an underscore separates words (IT_Support is "it" and "support").
_WORD = re.compile(r"[^\W_]+")


def fold(text: str) -> str:
    """Lower case without accents, for matching: "Müller" and "muller" are one."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words_of(text: str) -> list[str]:
    """The folded words of `text`, as search matches them."""
    return _WORD.findall(fold(text))
