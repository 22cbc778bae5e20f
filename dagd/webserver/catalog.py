"""The UI's message catalogs as files: extract the strings, update each ``.po``, compile the ``.mo``.

Only ``scripts/i18n`` and the tests use this (the webserver only reads the compiled ``.mo``).

- :func:`extract` reads every template (Jinja's i18n extension, whitespace trimmed as the
  templates render it) and every module of the webserver (``gettext``/``ngettext``/``N_`` calls)
  into one Babel catalog of English source strings.
- :func:`update` merges it into ``locale/<lang>/LC_MESSAGES/messages.po``: new strings arrive
  untranslated, changed ones fuzzy, gone ones are dropped.
- :func:`untranslated` lists what a catalog still lacks (what CI refuses), :func:`compile_catalog`
  writes the ``.mo`` and :func:`stale_mo` says whether a committed ``.mo`` differs from its ``.po``.
"""

from __future__ import annotations

import io
import pathlib
from collections.abc import Iterable

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po, write_po

from dagd.webserver.i18n import DEFAULT, DOMAIN, LANGUAGES, LOCALE_DIR

PACKAGE = pathlib.Path(__file__).parent
METHOD_MAP = [("templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
OPTIONS_MAP = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def translated_languages() -> list[str]:
    return [lang for lang in LANGUAGES if lang != DEFAULT]


def po_path(lang: str, locale_dir: pathlib.Path = LOCALE_DIR) -> pathlib.Path:
    return locale_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def extract(source: pathlib.Path = PACKAGE) -> Catalog:
    """Every UI string under ``source`` (the webserver package, or a copy of it in a test)."""
    catalog = Catalog(project="dagd web UI", locale=None, header_comment="# The dagd web UI's strings.")
    found = extract_from_dir(
        str(source),
        method_map=METHOD_MAP,
        options_map=OPTIONS_MAP,
        keywords=KEYWORDS,
        comment_tags=("Translators:",),
        directory_filter=lambda path: "locale" not in pathlib.Path(path).parts,
    )
    for filename, lineno, message, comments, context in found:
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


def read(path: pathlib.Path) -> Catalog:
    with path.open("rb") as fh:
        return read_po(fh)


def update(template: Catalog, path: pathlib.Path, lang: str) -> Catalog:
    """Merge ``template`` into the ``.po`` at ``path`` (created when missing) and write it back."""
    if path.exists():
        catalog = read(path)
        template.creation_date = catalog.creation_date  # no header churn when nothing changed
    else:
        catalog = Catalog(locale=lang, project="dagd web UI")
    catalog.update(template, no_fuzzy_matching=True, update_creation_date=False)
    catalog.obsolete.clear()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        write_po(fh, catalog, width=100, include_lineno=False)
    return catalog


def untranslated(template: Catalog, catalog: Catalog) -> list[str]:
    """The strings of ``template`` that ``catalog`` does not translate (missing, empty or fuzzy)."""
    out = []
    for message in template:
        if not message.id:
            continue
        entry = catalog.get(message.id, context=message.context)
        if entry is None or entry.fuzzy or not _complete(entry.string):
            out.append(message.id if isinstance(message.id, str) else message.id[0])
    return out


def _complete(string: str | Iterable[str] | None) -> bool:
    if isinstance(string, str):
        return bool(string)
    return bool(string) and all(string)  # type: ignore[arg-type]


def mo_bytes(catalog: Catalog) -> bytes:
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    return buffer.getvalue()


def compile_catalog(path: pathlib.Path) -> pathlib.Path:
    """Write the ``.mo`` next to the ``.po`` at ``path``; returns its path."""
    target = path.with_suffix(".mo")
    target.write_bytes(mo_bytes(read(path)))
    return target


def stale_mo(path: pathlib.Path) -> bool:
    """Whether the ``.mo`` next to the ``.po`` at ``path`` is missing or translates differently.

    Compared message by message, not byte by byte: the header Babel writes names its own version,
    which may differ between the machine that compiled and the one that checks.
    """
    target = path.with_suffix(".mo")
    if not target.exists():
        return True
    with target.open("rb") as fh:
        compiled = read_mo(fh)
    return _translations(compiled) != _translations(read(path))


def _translations(catalog: Catalog) -> dict[object, object]:
    return {
        (message.context, message.id): message.string
        for message in catalog
        if message.id and message.string and not message.fuzzy
    }
