"""The UI's languages: which one a request gets, its message catalog, and its dates and numbers.

English is the source language (the strings in the templates and the code); Japanese comes from
``locale/ja/LC_MESSAGES/messages.po``, compiled to ``messages.mo`` next to it (both committed and
shipped in the wheel; ``scripts/i18n`` extracts, updates and compiles them, and
``tests/unit/test_i18n_catalog.py`` fails when a string has no translation or the ``.mo`` is stale).

A request's language: the ``dagd_lang`` cookie (set by the switch on every page), else the best
match of ``Accept-Language``, else English. :class:`LocaleMiddleware` decides it once per request
and sets it for everything that request renders (a context variable, so concurrent requests in
other languages never mix); :func:`gettext` and the formatters below read it.

Strings defined at import time (navigation labels, notices) are marked with :func:`N_` and
translated where they are shown.
"""

from __future__ import annotations

import contextvars
import gettext as _gettext
import pathlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cache

from babel import Locale, dates, numbers
from babel.support import Translations
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

LOCALE_DIR = pathlib.Path(__file__).parent / "locale"
DOMAIN = "messages"
DEFAULT = "en"
# The languages of the switch, in its order, each named in itself.
LANGUAGES: dict[str, str] = {"en": "English", "ja": "日本語"}
COOKIE = "dagd_lang"
COOKIE_MAX_AGE = 365 * 24 * 3600

_current: contextvars.ContextVar[str] = contextvars.ContextVar("dagd_ui_locale", default=DEFAULT)


def N_(message: str) -> str:
    """Mark ``message`` for extraction; it is translated later, where it is shown."""
    return message


@cache
def translations(locale: str) -> _gettext.NullTranslations:
    """The compiled catalog of ``locale``; English (the source language) needs none."""
    if locale == DEFAULT:
        return _gettext.NullTranslations()
    return Translations.load(str(LOCALE_DIR), [locale], DOMAIN)


def current() -> str:
    return _current.get()


@contextmanager
def using(locale: str) -> Iterator[None]:
    """Everything rendered inside speaks ``locale`` (tests and the middleware)."""
    token = _current.set(locale if locale in LANGUAGES else DEFAULT)
    try:
        yield
    finally:
        _current.reset(token)


def gettext(message: str) -> str:
    return translations(current()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current()).ngettext(singular, plural, n)


# -- which language ------------------------------------------------------------------------------


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an ``Accept-Language`` header, best first (q=0 and malformed parts dropped)."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or len(tag) > 35:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(accept_language: str | None, cookie: str | None) -> str:
    """The request's language: the remembered choice, else the browser's best supported one."""
    if cookie in LANGUAGES:
        return str(cookie)
    preferred = [tag.replace("_", "-") for tag in parse_accept_language(accept_language)]
    for tag in preferred:
        if tag == "*":
            return DEFAULT
        primary = tag.split("-", 1)[0].lower()
        if primary in LANGUAGES:
            return primary
    return DEFAULT


class LocaleMiddleware:
    """Decide each request's language and set it for the whole request (handlers, errors, pages)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        locale = negotiate(request.headers.get("accept-language"), request.cookies.get(COOKIE))
        scope.setdefault("state", {})["locale"] = locale
        with using(locale):
            await self.app(scope, receive, send)


# -- dates, numbers and durations ----------------------------------------------------------------


@dataclass(frozen=True)
class Units:
    """How a duration is written: unit words and how a number meets its unit."""

    ms: str
    s: str
    m: str
    h: str
    d: str
    sep: str  # between the two parts of "3m 07s"


_UNITS = {
    "en": Units(ms="ms", s="s", m="m", h="h", d="d", sep=" "),
    "ja": Units(ms="ミリ秒", s="秒", m="分", h="時間", d="日", sep=""),
}


def units() -> Units:
    return _UNITS.get(current(), _UNITS[DEFAULT])


def number(value: object) -> str:
    """A count as the locale writes it; English keeps plain digits (its UI has always shown them)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if current() == DEFAULT:
        return str(value)
    return numbers.format_decimal(value, locale=_babel_locale(current()))


def datetime_text(when: datetime) -> str:
    """A UTC time for tables: ``2026-05-01 12:00:03Z`` in English, the locale's medium form otherwise."""
    when = when.astimezone(timezone.utc)
    if current() == DEFAULT:
        return when.strftime("%Y-%m-%d %H:%M:%SZ")
    text = dates.format_datetime(when, format="medium", tzinfo=timezone.utc, locale=_babel_locale(current()))
    return f"{text} UTC"


@cache
def _babel_locale(locale: str) -> Locale:
    return Locale.parse(locale)
