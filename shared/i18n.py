"""Translations of the words reports show, from gettext catalogs read at run time.

Catalogs live in `shared/locale/<lang>/LC_MESSAGES/<domain>.po`; English is the source language
(the msgids), so it needs none. A .po file is compiled in memory on first use and cached per
(language, domain): there is no build step and no .mo file to forget. A language or domain without
a catalog falls back to English, never to an error: a report is better in English than not at all.

A new message goes into `shared/locale/<domain>.pot` and every language's .po (a unit test checks
they agree and that placeholders survive). To find msgids in code:
`pybabel extract --no-default-keywords -k gettext:2 -k ngettext:2,3 -k _`; to merge them:
`pybabel update -D <domain> -i shared/locale/<domain>.pot -d shared/locale`.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

SUPPORTED_LANGUAGES = ("en", "de", "fr", "es")
SOURCE_LANGUAGE = "en"
LOCALE_DIR = Path(__file__).parent / "locale"

log = logging.getLogger(__name__)


def language(locale: str) -> str:
    """'de-DE' (or 'de_DE', 'DE') -> 'de'."""
    return locale.strip().replace("_", "-").split("-")[0].lower()


@lru_cache(maxsize=64)
def _load(lang: str, domain: str) -> NullTranslations:
    path = LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po"
    if lang == SOURCE_LANGUAGE or lang not in SUPPORTED_LANGUAGES or not path.is_file():
        return NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=lang, domain=domain)
    compiled = BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries stay out, as msgfmt would leave them
    compiled.seek(0)
    return Translations(compiled, domain=domain)


def translations(locale: str, domain: str = "reports") -> NullTranslations:
    """The catalog for the locale's language; NullTranslations (English) when there is none."""
    return _load(language(locale), domain)


def _fill(translated: str, source: str, params: dict) -> str:
    if not params:
        return translated
    try:
        return translated % params
    except (KeyError, ValueError, TypeError):
        # A broken translation must not break a delivery: fall back to the English text.
        log.warning("translation %r does not fit its parameters; using English", translated)
        return source % params


def gettext(locale: str, message: str, domain: str = "reports", **params) -> str:
    """`message` in the locale's language, with %(name)s placeholders filled from params."""
    return _fill(translations(locale, domain).gettext(message), message, params)


def ngettext(locale: str, singular: str, plural: str, n: int, domain: str = "reports", **params) -> str:
    """The singular or plural form for n, by the language's plural rule; `n` is also offered as %(count)s."""
    params.setdefault("count", n)
    source = singular if n == 1 else plural
    return _fill(translations(locale, domain).ngettext(singular, plural, n), source, params)
