"""The web UI's pure pieces: SVG charts, secret masking, CSRF and origin checks, forms, header metadata."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from dagd.errors import ConfigError, InvalidArgument
from dagd.instance.config import is_loopback_host, load_instance_config
from dagd.webserver import charts, security
from dagd.webserver.display import age, duration, status_class
from dagd.webserver.forms import parse_form, parse_launch, parse_priority, parse_tag_filter, parse_tags
from dagd.webserver.gateway import submission_metadata
from dagd.webserver.masking import MASK, mask_secrets

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def ts(minutes_ago: float | None) -> str | None:
    if minutes_ago is None:
        return None
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def run(
    run_id: str,
    created: float,
    started: float | None = None,
    ended: float | None = None,
    status: str = "SUCCESS",
    job: str = "job",
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "job_name": job,
        "status": status,
        "created_at": ts(created),
        "started_at": ts(started),
        "ended_at": ts(ended),
    }


def parse_svg(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # well-formed XML, or this raises


# -- charts ----------------------------------------------------------------------------------------


def test_queue_series_counts_waiting_and_running_per_minute() -> None:
    spans = charts.spans(
        [
            run("a", created=30, started=29.5, ended=20),  # waited in minute -30, ran -30 .. -20
            run("b", created=10, status="QUEUED"),  # still waiting: -10 .. now
            run("c", created=5, started=4.5, status="STARTED"),  # still running
            run("old", created=120, started=119, ended=90),  # before the window
        ]
    )
    series = charts.queue_series(spans, NOW)
    assert len(series) == 60
    by_minute = {round((NOW - b.start).total_seconds() / 60): b for b in series}
    assert (by_minute[30].queued, by_minute[30].in_progress) == (1, 1)
    assert (by_minute[25].queued, by_minute[25].in_progress) == (0, 1)
    assert (by_minute[15].queued, by_minute[15].in_progress) == (0, 0)
    assert by_minute[1].queued == 1 and by_minute[1].in_progress == 1
    assert sum(b.queued + b.in_progress for b in series if b.start < NOW - timedelta(minutes=31)) == 0


def test_queue_series_counts_an_instant_run_in_its_minute() -> None:
    spans = charts.spans([run("fast", created=7.2, started=7.2, ended=7.2)])
    series = charts.queue_series(spans, NOW)
    assert sum(b.in_progress for b in series) == 1
    assert sum(b.queued for b in series) == 1


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (1, 1), (3, 5), (7, 10), (12, 20), (48, 50), (101, 200)]
)
def test_nice_ceiling(value: int, ceiling: int) -> None:
    assert charts.nice_ceiling(value) == ceiling


def legend(svg: ET.Element) -> dict[str, str]:
    """The legend's texts by line (``queued``, ``in-progress``), in the order they are drawn."""
    (group,) = [g for g in svg.iter() if g.get("class") == "legend"]
    texts = [t.text or "" for t in group if t.tag.endswith("text")]
    return dict(zip(["queued", "in-progress"], texts, strict=True))


def test_queue_chart_is_well_formed_svg_with_scale_and_peaks() -> None:
    spans = charts.spans([run(f"r{i}", created=3, status="QUEUED") for i in range(7)])
    svg = parse_svg(charts.queue_chart(charts.queue_series(spans, NOW)))
    texts = [t.text for t in svg.iter() if t.tag.endswith("text")]
    assert "10" in texts
    assert legend(svg) == {
        "queued": "waiting during the minute (peak 7)",
        "in-progress": "in progress during the minute (peak 0)",
    }
    assert len([p for p in svg.iter() if p.tag.endswith("path")]) == 2


def test_queue_chart_legend_does_not_contradict_the_tiles() -> None:
    """Issue #18.4: the legend said "in progress (now 1)" for a run that ended seconds ago, under a
    tile saying 0. The last minute still counts that run; the legend now says what it counts."""
    spans = charts.spans(
        [
            run("done", created=3, started=2, ended=0.2, status="SUCCESS"),  # ended 12 s ago
            run("launched", created=0.5, started=0.4, ended=0.3, status="SUCCESS"),
        ]
    )
    series = charts.queue_series(spans, NOW)
    assert series[-1].in_progress == 2  # the last minute: both ran in it, neither runs now
    svg = parse_svg(charts.queue_chart(series))
    words = " ".join(legend(svg).values())
    assert "now" not in words
    assert legend(svg)["in-progress"] == "in progress during the minute (peak 2)"


def test_empty_queue_chart_still_draws() -> None:
    svg = parse_svg(charts.queue_chart(charts.queue_series([], NOW)))
    assert legend(svg)["queued"] == "waiting during the minute (peak 0)"


def test_gantt_rows_are_links_oldest_first_with_bars_by_status() -> None:
    items = charts.spans(
        [
            run("11111111-new", created=2, started=1.9, status="STARTED", job="etl"),
            run("22222222-old", created=20, started=19, ended=10, status="FAILURE", job="report"),
            run("33333333-queued", created=5, status="QUEUED", job="etl"),
        ]
    )
    svg = parse_svg(charts.gantt_chart(items, NOW))
    links = [a.get("href") for a in svg.iter() if a.tag == "a"]
    assert links == ["/runs/22222222-old", "/runs/33333333-queued", "/runs/11111111-new"]
    bars = [r.get("class") for r in svg.iter() if r.tag == "rect"]
    assert bars == ["bar wait", "bar st-failure", "bar wait", "bar wait", "bar st-started"]


def test_gantt_escapes_names_and_ids() -> None:
    evil = '<script>alert(1)</script>"'
    svg_text = str(charts.gantt_chart(charts.spans([run('x"><script>', created=1, job=evil)]), NOW))
    assert "<script>" not in svg_text
    svg = parse_svg(svg_text)
    assert [a.get("href") for a in svg.iter() if a.tag == "a"] == ["/runs/x%22%3E%3Cscript%3E"]
    titles = [t.text or "" for t in svg.iter() if t.tag == "title"]
    assert titles and evil in titles[0]


def test_gantt_without_runs_says_so() -> None:
    svg = parse_svg(charts.gantt_chart([], NOW))
    assert [t.text for t in svg.iter() if t.tag == "text"] == ["No runs yet."]


# -- masking ---------------------------------------------------------------------------------------


def test_mask_secrets_by_key_name_and_by_url_shape() -> None:
    config = {
        "storage": {"postgres": {"url": "postgresql+psycopg://dagd:hunter2@db/dagd"}},
        "run_launcher": {
            "config": {
                "aws_secret_access_key": "AKIA-secret",
                "slack_webhook_token": "xoxb-secret",
                "DB_PASSWORD": "pw-secret",
                "token_file": "secrets/web-token",
                "broker": "redis://:redis-secret@cache:6379/0",
                "tags": [{"key": "database", "value": "redshift", "limit": 4}],
                "unset_token": None,
            }
        },
    }
    masked = mask_secrets(config)
    text = repr(masked)
    for secret in ("hunter2", "AKIA-secret", "xoxb-secret", "pw-secret", "redis-secret"):
        assert secret not in text
    launcher = masked["run_launcher"]["config"]
    assert launcher["aws_secret_access_key"] == MASK
    assert launcher["token_file"] == "secrets/web-token"  # a path, not a secret
    assert launcher["tags"] == [{"key": "database", "value": "redshift", "limit": 4}]
    assert launcher["unset_token"] is None
    assert masked["storage"]["postgres"]["url"] == "postgresql+psycopg://dagd:***@db/dagd"
    assert config["run_launcher"]["config"]["DB_PASSWORD"] == "pw-secret", "the input must not change"


# -- CSRF, origin, sign-in -------------------------------------------------------------------------

KEY = b"k" * 32


def test_csrf_token_round_trip() -> None:
    token = security.new_csrf_token(KEY)
    assert security.csrf_cookie_valid(KEY, token)
    assert security.csrf_ok(KEY, token, token)
    assert token != security.new_csrf_token(KEY)


@pytest.mark.parametrize(
    ("cookie", "submitted"),
    [
        (None, None),
        ("COOKIE", None),  # the cookie rides along with a forged request; no token
        (None, "COOKIE"),
        ("COOKIE", "COOKIE-other"),
        ("forged.pair", "forged.pair"),  # a pair the attacker made up: not signed by us
        ("OTHER_KEY", "OTHER_KEY"),  # signed by another process's key
        ("", ""),
    ],
)
def test_csrf_refusals(cookie: str | None, submitted: str | None) -> None:
    valid = security.new_csrf_token(KEY)
    other = security.new_csrf_token(b"o" * 32)

    def resolve(value: str | None) -> str | None:
        if value is None:
            return None
        return value.replace("COOKIE", valid).replace("OTHER_KEY", other)

    assert not security.csrf_ok(KEY, resolve(cookie), resolve(submitted))


@pytest.mark.parametrize(
    ("origin", "referer", "fetch_site", "ok"),
    [
        ("http://127.0.0.1:3000", None, "same-origin", True),
        (None, "http://127.0.0.1:3000/launchpad", None, True),
        (None, None, None, True),  # nothing said: the token decides
        ("http://evil.example", None, None, False),
        ("null", None, None, False),
        (None, "http://evil.example/x", None, False),
        (None, None, "cross-site", False),
        (None, None, "same-site", False),
        ("http://127.0.0.1:3001", None, None, False),
        ("https://127.0.0.1:3000", None, "same-origin", True),  # TLS ended at a proxy
        ("file://127.0.0.1:3000", None, None, False),
    ],
)
def test_same_origin(origin: str | None, referer: str | None, fetch_site: str | None, ok: bool) -> None:
    assert (
        security.same_origin(origin=origin, referer=referer, fetch_site=fetch_site, host="127.0.0.1:3000")
        is ok
    )


def test_session_cookie_is_signed_by_the_token_and_does_not_contain_it() -> None:
    cookie = security.new_session_cookie("the-token")
    assert "the-token" not in cookie
    assert security.session_ok("the-token", cookie)
    assert not security.session_ok("another-token", cookie)
    assert not security.session_ok("the-token", "made.up")
    assert security.bearer_ok("the-token", "Bearer the-token")
    assert not security.bearer_ok("the-token", "Bearer the-toke")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/runs?tab=queued", "/runs?tab=queued"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("runs", "/"),
        (None, "/"),
        ("/x\r\nSet-Cookie: a=b", "/"),
    ],
)
def test_safe_next(target: str | None, expected: str) -> None:
    assert security.safe_next(target) == expected


# -- forms -----------------------------------------------------------------------------------------


def test_parse_launch_form() -> None:
    form = parse_form(b"job=etl&tags=team%3Ddata%0D%0Anote%3Da%3Db%0D%0A%0D%0A&priority=-3&run_config=%7B%7D")
    launch = parse_launch(form)
    assert launch.job_name == "etl"
    assert launch.tags == {"team": "data", "note": "a=b"}
    assert launch.priority == -3
    assert launch.run_config_json == "{}"


@pytest.mark.parametrize(
    ("text", "message"),
    [("novalue", "line 1: expected key=value"), ("a=1\n=2", "line 2"), ("a=1\na=2", "given twice")],
)
def test_parse_tags_refusals(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_tags(text)


def test_parse_priority() -> None:
    assert parse_priority("  ") is None
    assert parse_priority(" 7 ") == 7
    with pytest.raises(InvalidArgument, match="integer"):
        parse_priority("high")
    with pytest.raises(InvalidArgument, match="between"):
        parse_priority(str(2**40))


def test_parse_form_refuses_bad_utf8_and_launch_needs_a_job() -> None:
    with pytest.raises(InvalidArgument, match="UTF-8"):
        parse_form(b"job=%ff%fe\xff")
    with pytest.raises(InvalidArgument, match="pick a job"):
        parse_launch({"job": " "})


def test_parse_tag_filter() -> None:
    assert parse_tag_filter(["team=data", "", "env = prod"]) == {"team": "data", "env": "prod"}
    with pytest.raises(InvalidArgument, match="expected key=value"):
        parse_tag_filter(["team"])


# -- headers to gRPC metadata ---------------------------------------------------------------------


def test_submission_metadata_forwards_headers_but_no_credentials() -> None:
    metadata = submission_metadata(
        [
            ("Host", "127.0.0.1:3000"),
            ("X-Dagd-User", "alice"),
            ("Cookie", "dagd_csrf=secret; dagd_session=secret"),
            ("Authorization", "Bearer secret"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("User-Agent", "Mozilla/5.0"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("Accept-Language", "en"),
            ("X-Dagd-Client", "spoofed"),
            ("X-Name", "Jos\u00e9"),  # not ASCII: gRPC would refuse the whole call
            ("Grpc-Timeout", "1S"),
            ("Trace-Bin", "abc"),
            ("Bad Key", "x"),
        ]
    )
    assert metadata == [
        ("x-dagd-user", "alice"),
        ("x-forwarded-for", "10.0.0.1"),
        ("accept-language", "en"),
        ("x-dagd-client", "webserver"),
    ]
    assert "secret" not in repr(metadata)


def test_submission_metadata_stays_within_grpc_limits() -> None:
    metadata = submission_metadata([(f"x-h{i}", "v" * 1000) for i in range(20)] + [("x-long", "v" * 5000)])
    assert sum(len(k) + len(v) for k, v in metadata) < 8192
    assert metadata[-1] == ("x-dagd-client", "webserver")
    assert ("x-long", "v" * 5000) not in metadata


# -- display ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "250ms"),
        (4.26, "4.3s"),
        (42, "42s"),
        (187, "3m 07s"),
        (7500, "2h 05m"),
        (3 * 86400 + 7200, "3d 2h"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_age_and_status_class() -> None:
    assert age(ts(2), NOW) == "2m 00s ago"
    assert age(ts(-1), NOW) == "in 1m 00s"
    assert age(None, NOW) == "-"
    assert status_class("SUCCESS") == "st-success"
    assert status_class('x" onclick="y') == "st-other"


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        ("webserver: {host: 0.0.0.0}", "webserver.host: '0.0.0.0' is not a loopback address"),
        ("webserver: {token: a, token_file: b}", "webserver.token_file: give token or token_file"),
        ("webserver: {refresh_interval_seconds: 0.1}", "webserver.refresh_interval_seconds: must be >= 0.5"),
    ],
)
def test_webserver_config_refusals(tmp_path: Path, yaml: str, message: str) -> None:
    (tmp_path / "dagd.yaml").write_text(yaml)
    with pytest.raises(ConfigError, match=message):
        load_instance_config(tmp_path / "dagd.yaml")


def test_webserver_config_public_host_with_token(tmp_path: Path) -> None:
    (tmp_path / "dagd.yaml").write_text("webserver: {host: 0.0.0.0, token_file: web-token}")
    config = load_instance_config(tmp_path / "dagd.yaml")
    assert config.webserver.token_file == "web-token"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("ui.example", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


# -- import boundary ---------------------------------------------------------------------------------


def test_dagctl_and_the_supervisor_do_not_import_the_web_stack() -> None:
    code = (
        "import sys, dagd.client.cli, dagd.supervisor.app, dagd.webserver.child; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'jinja2')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


# -- jobs page, launchpad pre-fill, log times ----------------------------------------------------


def test_log_times_keep_milliseconds() -> None:
    from dagd.webserver.display import clock_ms

    assert clock_ms("2026-05-01T12:00:03.007Z") == "2026-05-01 12:00:03.007Z"
    assert clock_ms("2026-05-01T12:00:03Z") == "2026-05-01 12:00:03.000Z"
    assert clock_ms(None) == "-"


def test_job_views_pair_each_job_with_the_instigators_of_its_own_location() -> None:
    from dagd.webserver.pages.jobs import job_views

    info = {
        "code_locations": [
            {
                "name": "a",
                "jobs": ["etl"],
                "job_details": [{"name": "etl", "description": "Loads.", "tags": {"t": "1"}}],
            },
            {"name": "b", "jobs": ["etl", "other"], "job_details": []},
        ]
    }
    schedules = [
        {"name": "nightly", "job_name": "etl", "code_location": "a"},
        {"name": "hourly", "job_name": "etl", "code_location": "b"},
    ]
    sensors = [
        {"name": "files", "job_name": "other", "code_location": "b"},
        {"name": "x", "job_name": None, "code_location": "b"},
    ]
    views = job_views(info, schedules, sensors)
    assert [(v.location, v.name) for v in views] == [("a", "etl"), ("b", "etl"), ("b", "other")]
    assert (views[0].description, views[0].tags) == ("Loads.", {"t": "1"})
    assert [s["name"] for s in views[0].schedules] == ["nightly"]
    assert [s["name"] for s in views[1].schedules] == ["hourly"]
    assert [s["name"] for s in views[2].sensors] == ["files"]
    assert views[1].description is None and views[1].tags == {}


def test_launchpad_tags_text_and_job_tags() -> None:
    from dagd.webserver.pages.launchpad import job_tags, tags_text

    assert tags_text({"team": "web", "dagd/priority": "3"}) == "dagd/priority=3\nteam=web"
    assert tags_text({}) == ""
    locations = [{"name": "a", "jobs": ["j"], "job_details": [{"name": "j", "tags": {"k": "v"}}]}]
    assert job_tags(locations) == {"j": "k=v"}
