"""Pauses of the cycle collector. A full collection walks every object the collector
tracks, on whichever thread triggers it, holding the interpreter lock: with a 100k-contact
book in memory (its snapshot, its composition, what the composer keeps for the next one)
that is ~0.6 s on the 2-core benchmark machine, during which no request is answered.

What a big composition leaves behind lives until the next one, and refcounting frees it
then (none of it is cyclic): after each, everything alive is moved out of the
collector's sight (`gc.freeze`), so collections walk only what came since. Cyclic
garbage frozen with it (a request under way at that moment) would stay: once an hour the
frozen objects are handed back (`thaw`), and the next full collection walks them once.
"""

from __future__ import annotations

import gc


def freeze_survivors() -> None:
    """Everything alive now is out of the collector's sight until `thaw`."""
    gc.freeze()


def thaw() -> None:
    """Hand the frozen objects back to the collector (its next full collection walks
    them, and frees cycles among them that became garbage)."""
    gc.unfreeze()
