"""Small text helpers shared by the renderer and the mailer."""

from __future__ import annotations

import re
import unicodedata

# Unicode bidirectional controls: embeddings and overrides (U+202A-U+202E), isolates
# (U+2066-U+2069) and the invisible direction marks (LRM, RLM, ALM). In a subject or a
# file name they only serve to disguise text ("invoice\u202efdp.exe" shows as "invoiceexe.pdf").
BIDI_CONTROLS = frozenset(
    [chr(c) for c in range(0x202A, 0x202F)] + [chr(c) for c in range(0x2066, 0x206A)] + ["\u200e", "\u200f", "\u061c"]
)
_BIDI_TABLE = dict.fromkeys(map(ord, BIDI_CONTROLS))


def strip_bidi_controls(text: str) -> str:
    """`text` without bidi overrides, embeddings, isolates or direction marks (letters of any script stay)."""
    return text.translate(_BIDI_TABLE)


def slugify(text: str, max_length: int = 60) -> str:
    """ASCII, lowercase, dashes: safe in a file name on every system."""
    ascii_text = unicodedata.normalize("NFKD", strip_bidi_controls(text)).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-zA-Z0-9]+", "-", ascii_text).strip("-").lower()
    return slug[:max_length].strip("-")
