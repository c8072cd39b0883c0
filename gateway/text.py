"""Text every phone format can carry: what XML 1.0 allows (§2.2 Char), the strictest of them.

One card with a control character upstream must not make a document unrenderable, nor look
like an edit when the phone sends the cleaned text back.
"""

from __future__ import annotations

import re

#: C0 controls but tab, LF and CR; lone surrogates; U+FFFE and U+FFFF.
_NOT_CARRIABLE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def carriable(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry."""
    return _NOT_CARRIABLE.sub("", text) if _NOT_CARRIABLE.search(text) else text
