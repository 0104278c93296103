"""Pages rendered from hostile views: every record field stays text."""

from __future__ import annotations

import re

from streamlake.console import pages

EVIL = '"><script id="evil">alert(1)</script><img id="evil2" src=x onerror=alert(2)>'


def frame(**extra):
    return {"sampled_at": 1.0, "interval": 2.0, "error": EVIL, "samples": 3, "app_id": EVIL, **extra}


def tags(html: str) -> set[str]:
    return set(re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", html))


def test_dlq_page_shows_hostile_record_fields_as_text_with_values_hidden_by_default():
    record = {"topic": EVIL, "partition": 0, "offset": 1, "timestamp": EVIL, "stage": EVIL, "reason": EVIL,
              "attempt": 1, "key": EVIL, "value": EVIL, "value_bytes": 90, "headers": [[EVIL, EVIL]]}
    html = pages.dlq_page(frame(records=[record], topic=EVIL, limit=5, show_payload=False), [EVIL],
                          {"stream": EVIL, "key": EVIL, "since": EVIL}, token_required=True)
    assert 'id="evil"' not in html and 'id="evil2"' not in html
    assert "&lt;script id=&quot;evil&quot;&gt;" in html
    assert tags(html) <= {"html", "head", "meta", "title", "link", "body", "nav", "a", "main", "h1", "h2", "div",
                          "span", "code", "form", "label", "select", "option", "input", "button", "p", "section",
                          "article", "details", "summary", "pre", "table", "thead", "tbody", "tr", "th", "td",
                          "strong", "ul", "script"}
    assert html.count("<script") == 2  # the vendored chart library and console.js, nothing else
    assert "<details class=\"payload\">" in html  # closed: the value is hidden until asked for


def test_dlq_page_opens_values_when_the_dlq_logging_setting_shows_payloads():
    record = {"topic": "t.dlq", "partition": 0, "offset": 1, "timestamp": None, "stage": "decode",
              "reason": "invalid-json", "attempt": None, "key": "k", "value": "v", "value_bytes": 1, "headers": []}
    html = pages.dlq_page(frame(records=[record], show_payload=True), ["s"], {}, token_required=False)
    assert '<details class="payload" open>' in html


def test_overview_and_stream_pages_escape_stream_names_reasons_and_owners():
    totals = {"records_in": 1, "forwarded": 1, "dropped": 0, "dlq": 0}
    card = {"name": EVIL, "topics": {"source": EVIL, "output": EVIL}, "totals": totals, "classes": {EVIL: 1},
            "lag": 0, "dlq_depth": 0, "lake": None}
    overview = pages.overview_page(frame(streams=[card], lake_available=False))
    stream = pages.stream_page(frame(name=EVIL, totals=totals, lag=0, dlq_depth=0,
                                     group={"group": EVIL, "state": EVIL, "members": []},
                                     partitions=[{"role": "source", "topic": EVIL, "partition": 0, "committed": None,
                                                  "end": 1, "lag": 1, "owner": EVIL}],
                                     dlq_by_reason=[{"stage": EVIL, "reason": EVIL, "count": 1}],
                                     gaps={"opened": 0, "filled": 0, "forgotten": 0}), [EVIL])
    for html in (overview, stream):
        assert 'id="evil"' not in html and html.count("<script") == 2


def test_lake_page_shows_tables_snapshots_and_the_verify_result():
    table = {"name": "sales.orders_v1", "stream": "sales.orders", "topic": "sales.orders.valid.v1", "exists": True,
             "rows": 1234, "data_files": 3, "snapshots": 7, "newest_event_time": "2026-01-01T00:00:00+00:00",
             "last_commit": "2026-01-01T00:00:01+00:00", "offsets": {"0": 600, "1": 634},
             "snapshots_shown": [{"committed_at": "2026-01-01T00:00:01+00:00", "operation": "append",
                                  "added_rows": 10, "total_rows": 1234, "added_files": 1, "landed_by": EVIL,
                                  "offsets": EVIL}],
             "verify": {"ok": True, "rows": 1234, "records": 1300, "landed": 1234, "dlq": 60,
                        "duplicates_dropped": 6, "duplicate_rows": 0, "missing": 0, "rows_past_offsets": 0,
                        "verified_at": 2.0}}
    waiting = {"name": "other_v1", "stream": "x.other", "topic": "x.other.valid.v1", "exists": False}
    html = pages.lake_page(frame(available=True, tables=[table, waiting]), ["sales.orders"])
    assert 'data-field="rows">1234<' in html and "p0: 600, p1: 634" in html
    assert 'data-field="verify">OK<' in html and "missing 0" in html
    assert "not landed yet" in html and 'href="/lake?verify=sales.orders_v1"' in html
    assert 'id="evil"' not in html


def test_lake_page_without_lake_landing_says_so():
    html = pages.lake_page(frame(available=False, why="lake landing is not installed"), [])
    assert "lake landing is not installed" in html
