"""The organisation's look in report emails: name, accent colour and logo (BIAPP_ORG_NAME,
BIAPP_BRAND_COLOR, BIAPP_BRAND_LOGO), with text colours that stay readable on any accent.

Whatever colour an organisation picks, text on it is black or white, whichever contrasts more
(WCAG 2 relative luminance: one of the two always reaches 4.58:1, above AA's 4.5). Links on white
use the accent only when it reaches 4.5:1 there; otherwise they keep the default blue.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ACCENT = "#1f4e79"
LINK_MIN_CONTRAST = 4.5  # WCAG AA, normal-size text
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _luminance(color: str) -> float:
    def channel(hex_pair: str) -> float:
        value = int(hex_pair, 16) / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = (channel(color[i : i + 2]) for i in (1, 3, 5))
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(first: str, second: str) -> float:
    """The WCAG contrast ratio of two #rrggbb colours, from 1 to 21."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def text_on(background: str) -> str:
    return "#ffffff" if contrast(background, "#ffffff") >= contrast(background, "#000000") else "#000000"


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) in pixels of a PNG or baseline/progressive JPEG; None when unreadable."""
    if data.startswith(PNG_SIGNATURE) and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if not data.startswith(b"\xff\xd8"):
        return None
    index = 2
    while index + 9 <= len(data):
        if data[index] != 0xFF:
            index += 1
            continue
        marker = data[index + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill bytes and markers without a length
            index += 1 if marker == 0xFF else 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start-of-frame segment
            height, width = data[index + 5 : index + 7], data[index + 7 : index + 9]
            return int.from_bytes(width, "big"), int.from_bytes(height, "big")
        index += 2 + int.from_bytes(data[index + 2 : index + 4], "big")
    return None


@dataclass(frozen=True)
class Logo:
    data: bytes
    subtype: str  # png | jpeg
    width: int  # as shown, in CSS pixels
    height: int


@dataclass(frozen=True)
class Branding:
    name: str | None = None
    color: str = DEFAULT_ACCENT
    logo: Logo | None = None

    @property
    def text_color(self) -> str:
        """Text on the accent (header band, buttons)."""
        return text_on(self.color)

    @property
    def link_color(self) -> str:
        """Links on white: the accent if it is readable there, else the default."""
        return self.color if contrast(self.color, "#ffffff") >= LINK_MIN_CONTRAST else DEFAULT_ACCENT

    @property
    def has_header(self) -> bool:
        return bool(self.name or self.logo)

    @classmethod
    def from_settings(cls, settings, *, logo_height: int = 40, logo_max_width: int = 240) -> Branding:
        data = getattr(settings, "brand_logo", None)
        logo = None
        size = image_size(data) if data else None
        if data and size and all(size):
            scale = min(logo_height / size[1], logo_max_width / size[0], 1.0)
            subtype = "png" if data.startswith(PNG_SIGNATURE) else "jpeg"
            logo = Logo(data, subtype, max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        name = " ".join((getattr(settings, "org_name", None) or "").split()) or None
        return cls(name=name, color=getattr(settings, "brand_color", None) or DEFAULT_ACCENT, logo=logo)
