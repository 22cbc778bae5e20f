"""The UI's two languages: catalogs complete and shipped, language negotiation, locale formats, doc twins.

The catalog checks are what CI relies on to keep the Japanese UI whole: a string added to a template
or the code without a Japanese translation fails here (``scripts/i18n update`` then translate).
"""

from __future__ import annotations

import gettext
import io
import pathlib
import posixpath
import re
import shutil
import subprocess
import sys
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
from babel.messages.mofile import read_mo

from dagd.webserver import catalog, charts, i18n
from dagd.webserver.display import age, clock, duration
from dagd.webserver.render import make_environment

REPO = pathlib.Path(__file__).resolve().parents[2]
NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)

# English pages with no Japanese twin, on purpose: notes for the people who work on dagd itself
# (the code's map, measurements, test and chaos methods), not for its users. What users need from
# architecture.md is in docs/ja/daemons.md and docs/ja/run-queue.md.
ENGLISH_ONLY = {
    "docs/architecture.md",
    "docs/performance.md",
    "docs/soak.md",
    "docs/testing.md",
    "docs/chaos.md",
}


# -- the catalogs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> catalog.Catalog:
    return catalog.extract()


def test_every_ui_string_has_a_japanese_translation(template: catalog.Catalog) -> None:
    assert len(template) > 100  # the extraction found the templates and the code
    missing = catalog.untranslated(template, catalog.read(catalog.po_path("ja")))
    assert missing == [], f"no Japanese for {missing}: run scripts/i18n update and translate"


def test_compiled_japanese_catalog_is_what_the_po_compiles_to() -> None:
    assert not catalog.stale_mo(catalog.po_path("ja")), "messages.mo is stale: run scripts/i18n update"


def test_a_new_string_without_translation_fails_the_check(tmp_path: pathlib.Path) -> None:
    source = tmp_path / "webserver"
    shutil.copytree(catalog.PACKAGE, source, ignore=shutil.ignore_patterns("__pycache__", "locale"))
    (source / "templates" / "brand_new.html").write_text(
        '{% extends "base.html" %}{% block content %}<p>{{ _("A page nobody translated yet") }}</p>'
        "{% trans n=3 %}Just added, {{ n }} times{% endtrans %}{% endblock %}\n"
    )
    (source / "pages" / "brand_new.py").write_text(
        "from dagd.webserver.i18n import gettext\n\nMESSAGE = gettext('Said by new code')\n"
    )
    po = catalog.read(catalog.po_path("ja"))
    missing = catalog.untranslated(catalog.extract(source), po)
    assert sorted(missing) == ["A page nobody translated yet", "Just added, %(n)s times", "Said by new code"]

    # A fuzzy (machine-merged, unreviewed) or empty translation counts as missing too.
    po.get("Overview").flags.add("fuzzy")
    po.get("Runs").string = ""
    assert {"Overview", "Runs"} <= set(catalog.untranslated(catalog.extract(source), po))


def test_scripts_i18n_check_passes_on_the_committed_catalogs() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "i18n"), "check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_wheel_ships_the_compiled_catalogs(tmp_path: pathlib.Path) -> None:
    """A fresh install (no scripts/i18n run) still speaks Japanese: the .mo is package data."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "dagd", src / "dagd", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(tmp_path), str(src)],
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("dagd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        mo = archive.read("dagd/webserver/locale/ja/LC_MESSAGES/messages.mo")
        assert "dagd/webserver/locale/ja/LC_MESSAGES/messages.po" in archive.namelist()
    assert read_mo(io.BytesIO(mo)).get("Daemons").string == "デーモン"


# -- which language --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "cookie", "expected"),
    [
        ("ja,en-US;q=0.9,en;q=0.8", None, "ja"),
        ("ja-JP", None, "ja"),
        ("en-US,en;q=0.9,ja;q=0.8", None, "en"),
        ("fr-FR,ja;q=0.5", None, "ja"),  # French is not offered: the next one that is
        ("en;q=0.2, ja;q=0.9", None, "ja"),  # by quality, not by order
        ("ja;q=0", None, "en"),  # q=0 means "not this one"
        ("de", None, "en"),
        ("", None, "en"),
        (None, None, "en"),
        ("*", None, "en"),
        ("ja", "en", "en"),  # the switch wins over the browser
        ("en", "ja", "ja"),
        ("ja", "xx", "ja"),  # an unknown cookie value is ignored
        ("ja;q=abc, en;q=0.5", None, "en"),  # a malformed quality counts as 0
    ],
)
def test_negotiate(header: str | None, cookie: str | None, expected: str) -> None:
    assert i18n.negotiate(header, cookie) == expected


# -- formats ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "en", "ja"),
    [
        (0.85, "850ms", "850ミリ秒"),
        (4.5, "4.5s", "4.5秒"),
        (42, "42s", "42秒"),
        (187, "3m 07s", "3分07秒"),
        (2 * 3600 + 5 * 60, "2h 05m", "2時間05分"),
        (3 * 86400 + 4 * 3600, "3d 4h", "3日4時間"),
    ],
)
def test_durations_in_both_languages(seconds: float, en: str, ja: str) -> None:
    assert duration(seconds) == en  # English is the default, unchanged
    with i18n.using("ja"):
        assert duration(seconds) == ja


def test_ages_clock_and_numbers_follow_the_language() -> None:
    past = (NOW - timedelta(seconds=12)).isoformat().replace("+00:00", "Z")
    future = (NOW + timedelta(minutes=3)).isoformat().replace("+00:00", "Z")
    assert (age(past, NOW), age(future, NOW), clock(past)) == ("12s ago", "in 3m 00s", "2026-05-01 11:59:48Z")
    assert i18n.number(12345) == "12345"
    with i18n.using("ja"):
        assert (age(past, NOW), age(future, NOW)) == ("12秒前", "3分00秒後")
        assert clock(past) == "2026/05/01 11:59:48 UTC"
        assert i18n.number(12345) == "12,345"


def test_templates_render_in_the_language_of_the_context() -> None:
    env = make_environment()
    page = env.from_string(
        '{{ _("Daemons") }}: {{ _("%(healthy)s of %(total)s daemons healthy.", healthy=3, total=4) }}'
    )
    assert page.render() == "Daemons: 3 of 4 daemons healthy."
    with i18n.using("ja"):
        assert page.render() == "デーモン: デーモン 4 個中 3 個が正常です。"
    assert page.render() == "Daemons: 3 of 4 daemons healthy."  # nothing leaks out of `using`


def test_translated_text_escapes_its_values() -> None:
    env = make_environment()
    page = env.from_string('{{ _("held by %(reason)s", reason=reason) }}')
    with i18n.using("ja"):
        assert page.render(reason="<b>x</b>") == "&lt;b&gt;x&lt;/b&gt; により保留"


def test_every_translation_keeps_the_placeholders_of_its_source() -> None:
    po = catalog.read(catalog.po_path("ja"))
    placeholder = re.compile(r"%\([a-z_]+\)s")
    for message in po:
        if message.id and message.string:
            assert sorted(placeholder.findall(str(message.id))) == sorted(
                placeholder.findall(str(message.string))
            ), message.id


def test_queue_chart_speaks_japanese() -> None:
    with i18n.using("ja"):
        svg = str(charts.queue_chart(charts.queue_series([], NOW)))
    assert "その 1 分間に待機していた実行(最大 0 件)" in svg and ">現在<" in svg and "-60分" in svg


def test_translations_are_cached_per_language() -> None:
    assert isinstance(i18n.translations("en"), gettext.NullTranslations)
    assert i18n.translations("ja") is i18n.translations("ja")
    assert i18n.translations("ja").gettext("Daemons") == "デーモン"


# -- documentation twins ---------------------------------------------------------------------------


def english_pages() -> list[str]:
    return ["README.md", *sorted(f"docs/{p.name}" for p in (REPO / "docs").glob("*.md"))]


def twin(page: str) -> str:
    return "README.ja.md" if page == "README.md" else page.replace("docs/", "docs/ja/", 1)


def link_from(page: str, target: str) -> str:
    """The relative link from ``page`` to ``target`` (both repository paths)."""
    return posixpath.relpath(target, posixpath.dirname(page) or ".")


@pytest.mark.parametrize("page", english_pages())
def test_every_english_page_has_a_japanese_twin_and_they_link_each_other(page: str) -> None:
    if page in ENGLISH_ONLY:
        assert not (REPO / twin(page)).exists(), f"{page} is listed as English-only but has a twin"
        return
    japanese = REPO / twin(page)
    assert japanese.exists(), (
        f"{page} has no Japanese twin {twin(page)} (write it, or list it in ENGLISH_ONLY)"
    )
    to_japanese = link_from(page, twin(page))
    to_english = link_from(twin(page), page)
    assert f"]({to_japanese})" in (REPO / page).read_text(), f"{page} does not link to {to_japanese}"
    assert f"]({to_english})" in japanese.read_text(), f"{twin(page)} does not link back to {to_english}"


# Japanese pages on topics the English docs cover inside other pages (architecture.md, SPEC §9):
# each names the English pages it draws on.
JAPANESE_TOPICS = {
    "docs/ja/index.md",
    "docs/ja/run-queue.md",
    "docs/ja/daemons.md",
    "docs/ja/troubleshooting.md",
    "docs/ja/cluster.md",
    "docs/ja/high-availability.md",
}


def test_every_japanese_page_has_an_english_original_or_names_its_sources() -> None:
    originals = {twin(p) for p in english_pages()}
    japanese = {"README.ja.md", *(f"docs/ja/{p.name}" for p in (REPO / "docs" / "ja").glob("*.md"))}
    assert not japanese - originals - JAPANESE_TOPICS, "Japanese pages with no English original"
    for page in sorted(JAPANESE_TOPICS):
        text = (REPO / page).read_text()
        assert re.search(r"\]\(\.\./(\.\./)?[a-zA-Z]+(\.ja)?\.md", text), f"{page} names no English page"


@pytest.mark.parametrize("page", sorted(JAPANESE_TOPICS | {"README.ja.md"}))
def test_links_between_japanese_pages_resolve(page: str) -> None:
    text = (REPO / page).read_text()
    for target in re.findall(r"\]\(([^)#]+\.md)(?:#[^)]*)?\)", text):
        assert (REPO / posixpath.dirname(page) / target).resolve().exists(), f"{page}: broken link {target}"


def test_a_stale_compiled_catalog_is_detected(tmp_path: pathlib.Path) -> None:
    po = tmp_path / "messages.po"
    shutil.copy(catalog.po_path("ja"), po)
    assert catalog.stale_mo(po)  # no .mo yet
    catalog.compile_catalog(po)
    assert not catalog.stale_mo(po)
    po.write_text(po.read_text().replace('msgstr "デーモン"', 'msgstr "常駐プロセス"', 1))
    assert catalog.stale_mo(po)
