"""The console's pages, rendered on the server from the same views the JSON API returns.

Every value goes through :mod:`streamlake.console.html`, so it is text. The
pages work without JavaScript (numbers as of the request); ``console.js``
draws the charts and refreshes the numbers from the JSON API, writing text
only (``textContent``), never markup.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlencode

from ..core.dlq import Reason, Stage
from .html import Markup, Node, el, join

__all__ = ["overview_page", "stream_page", "dlq_page", "lake_page", "error_page", "fmt_time"]

TOTALS = (("records_in", "in"), ("forwarded", "forwarded"), ("dropped", "dropped"), ("dlq", "DLQ"))
CLASSES = ("in_order", "gap", "duplicate", "late")


def fmt_time(seconds: float | None) -> str:
    """Seconds since the epoch as an ISO 8601 UTC time ("-" for none)."""
    if seconds is None:
        return "-"
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _stream_href(name: str) -> str:
    return "/stream/" + quote(name, safe="")


def _dlq_href(stream: str, reason: str) -> str:
    return "/dlq?" + urlencode({"stream": stream, "reason": reason})


def _frame(title: str, page: str, view: dict[str, Any], streams: Iterable[str], body: Node,
           **data: object) -> Markup:
    nav = el("nav", {}, el("a", {"href": "/", "class": "brand"}, "StreamLake"),
             el("a", {"href": "/", "class_": "active" if page == "overview" else None}, "Overview"),
             [el("a", {"href": _stream_href(name),
                       "class_": "active" if data.get("stream") == name and page == "stream" else None}, name)
              for name in streams],
             el("a", {"href": "/dlq", "class_": "active" if page == "dlq" else None}, "DLQ"),
             el("a", {"href": "/lake", "class_": "active" if page == "lake" else None}, "Lake"))
    error = view.get("error")
    status = el("div", {"class": "status"},
                el("span", {}, "app ", el("code", {}, view.get("app_id", ""))),
                el("span", {}, "sampled ", el("span", {"data-field": "sampled_at"}, fmt_time(view.get("sampled_at")))),
                el("span", {}, f"every {view.get('interval', 0):g}s, ",
                   el("span", {"data-field": "samples"}, view.get("samples", 0)), " samples kept"))
    banner = el("div", {"class": "banner", "data-field": "error", "hidden": not error}, error or "")
    attrs = {"data-page": page, "data-interval": view.get("interval", 2), **{f"data-{k}": v for k, v in data.items()}}
    return Markup("<!doctype html>\n" + el(
        "html", {"lang": "en"},
        el("head", {},
           Markup('<meta charset="utf-8">'),
           Markup('<meta name="viewport" content="width=device-width, initial-scale=1">'),
           el("title", {}, f"{title} · StreamLake console"),
           Markup('<link rel="stylesheet" href="/static/uPlot.min.css">'),
           Markup('<link rel="stylesheet" href="/static/console.css">')),
        el("body", attrs, nav, el("main", {}, el("h1", {}, title), status, banner, body),
           Markup('<script src="/static/uPlot.iife.min.js"></script>'),
           Markup('<script src="/static/console.js"></script>'))))


def _number(field: str, label: str, value: Node) -> Markup:
    return el("div", {"class": "num"}, el("dt", {}, label), el("dd", {"data-field": field}, value))


def _lake_line(lake: dict[str, Any] | None, available: bool) -> Markup:
    if not available:
        return el("p", {"class": "lake muted"}, "lake: landing not installed")
    lake = lake or {}
    return el("p", {"class": "lake"}, "lake: newest landed event ",
              el("strong", {"data-field": "lake_newest"}, lake.get("newest_event_time") or "-"),
              ", rows ", el("strong", {"data-field": "lake_rows"}, lake.get("rows", "-")),
              " in ", el("a", {"href": "/lake"}, el("code", {"data-field": "lake_table"}, lake.get("table") or "-")),
              el("span", {"class": "muted"}, ", last commit "),
              el("span", {"class": "muted", "data-field": "lake_commit"}, lake.get("last_commit") or "-"))


def overview_page(view: dict[str, Any]) -> Markup:
    cards = []
    for card in view["streams"]:
        totals = card["totals"]
        numbers = [_number(field, label, totals[field]) for field, label in TOTALS]
        numbers += [_number("lag", "consumer lag", card["lag"]), _number("dlq_depth", "DLQ depth", card["dlq_depth"])]
        classes = el("table", {"class": "classes"},
                     el("caption", {}, "ordering classes"),
                     el("tr", {}, [el("th", {}, c) for c in CLASSES]),
                     el("tr", {}, [el("td", {"data-class": c}, card["classes"].get(c, 0)) for c in CLASSES]))
        cards.append(el(
            "article", {"class": "card", "data-stream": card["name"]},
            el("h2", {}, el("a", {"href": _stream_href(card["name"])}, card["name"])),
            el("p", {"class": "topics"}, el("code", {}, card["topics"]["source"]), " → ",
               el("code", {}, card["topics"]["output"])),
            el("dl", {"class": "numbers"}, numbers),
            el("div", {"class": "charts"},
               el("div", {"class": "chart", "data-chart": "volume", "aria-label": "in and forwarded per second"}),
               el("div", {"class": "chart", "data-chart": "problems", "aria-label": "dropped and DLQ per second"})),
            classes, _lake_line(card.get("lake"), view.get("lake_available", False))))
    body = el("section", {"class": "cards"}, cards or el("p", {}, "no streams are declared under topologies/"))
    return _frame("Overview", "overview", view, [c["name"] for c in view["streams"]], body)


def _table(header: list[str], rows: list[list[Node]], **attrs: object) -> Markup:
    return el("table", attrs, el("thead", {}, el("tr", {}, [el("th", {}, h) for h in header])),
              el("tbody", {}, [el("tr", {}, [el("td", {}, cell) for cell in row]) for row in rows]))


def stream_page(view: dict[str, Any], streams: list[str]) -> Markup:
    totals = view["totals"]
    numbers = [_number(field, label, totals[field]) for field, label in TOTALS]
    numbers += [_number("lag", "consumer lag", view["lag"]), _number("dlq_depth", "DLQ depth", view["dlq_depth"])]
    group = view.get("group") or {}
    parts = _table(["role", "topic", "partition", "committed", "end", "lag", "owner"],
                   [[p["role"], p["topic"], p["partition"], "-" if p["committed"] is None else p["committed"],
                     p["end"], p["lag"], p["owner"] or "-"] for p in view["partitions"]],
                   id="partitions", class_="grid")
    reasons = _table(["stage", "reason", "count"],
                     [[r["stage"], el("a", {"href": _dlq_href(view["name"], r["reason"])}, r["reason"]), r["count"]]
                      for r in view["dlq_by_reason"]], id="dlq-reasons", class_="grid")
    gaps = view["gaps"]
    partitions = el("section", {}, el("h2", {}, "Partitions"),
                    el("p", {}, "group ", el("code", {}, group.get("group", "-")), " is ",
                       el("span", {"data-field": "group_state"}, group.get("state", "unknown")), " with ",
                       el("span", {"data-field": "members"}, len(group.get("members", []))), " member(s)"),
                    parts)
    charts = join(
        el("section", {}, el("h2", {}, "Lag and DLQ depth"),
           el("div", {"class": "chart wide", "data-chart": "lag", "aria-label": "lag over time"})),
        el("section", {}, el("h2", {}, "DLQ by stage and reason"),
           el("div", {"class": "chart wide", "data-chart": "dlq-rates",
                      "aria-label": "DLQ records per second by reason"}), reasons),
        el("section", {}, el("h2", {}, "Gaps"),
           el("dl", {"class": "numbers"}, _number("gaps_opened", "opened", gaps["opened"]),
              _number("gaps_filled", "filled", gaps["filled"]),
              _number("gaps_forgotten", "forgotten", gaps["forgotten"])),
           el("div", {"class": "chart wide", "data-chart": "gaps", "aria-label": "gaps over time"})))
    body = join(el("dl", {"class": "numbers"}, numbers),
                el("div", {"class": "split"}, el("div", {}, charts), el("div", {}, partitions)))
    return _frame(view["name"], "stream", view, streams, body, stream=view["name"])


def _options(values: Iterable[str], selected: str | None, blank: str) -> list[Markup]:
    return [el("option", {"value": ""}, blank)] + [
        el("option", {"value": v, "selected": v == selected}, v) for v in values]


def _record(r: dict[str, Any], show_payload: bool) -> Markup:
    value_note = "" if r["value_bytes"] is None else f" ({r['value_bytes']} bytes)"
    return el(
        "article", {"class": "record", "data-offset": f"{r['partition']}:{r['offset']}"},
        el("div", {"class": "record-head"},
           el("code", {}, f"{r['topic']}[{r['partition']}]@{r['offset']}"), " ",
           el("span", {"class": "time"}, r["timestamp"] or "-"), " ",
           el("span", {"class": "reason"}, f"{r['stage']}/{r['reason']}"), " ",
           el("span", {}, f"attempt {r['attempt'] if r['attempt'] is not None else '-'}")),
        el("div", {}, "key: ", el("code", {"class": "key"}, r["key"])),
        el("details", {"class": "payload", "open": show_payload},
           el("summary", {}, f"headers and value{value_note}"),
           el("pre", {"class": "value"}, r["value"]),
           _table(["header", "value"], [[name, el("code", {}, value)] for name, value in r["headers"]],
                  class_="headers")))


def dlq_page(view: dict[str, Any], streams: list[str], form: dict[str, str], token_required: bool) -> Markup:
    stream = form.get("stream") or ""
    fields = el(
        "form", {"method": "get", "action": "/dlq", "class": "filters", "id": "dlq-filter"},
        el("label", {}, "stream ", el("select", {"name": "stream"}, [
            el("option", {"value": s, "selected": s == stream}, s) for s in streams])),
        el("label", {}, "reason ", el("select", {"name": "reason"},
                                      _options([r.value for r in Reason], form.get("reason"), "any"))),
        el("label", {}, "stage ", el("select", {"name": "stage"},
                                     _options([s.value for s in Stage], form.get("stage"), "any"))),
        el("label", {}, "since ", el("input", {"name": "since", "value": form.get("since", ""),
                                                "placeholder": "ISO 8601, UTC", "size": 22})),
        el("label", {}, "until ", el("input", {"name": "until", "value": form.get("until", ""), "size": 22})),
        el("label", {}, "key ", el("input", {"name": "key", "value": form.get("key", ""), "size": 16})),
        el("label", {}, "limit ", el("input", {"name": "limit", "value": form.get("limit", "50"), "size": 4})),
        el("button", {"type": "submit"}, "Show"))
    problem = view.get("problem")
    records = view.get("records") or []
    found = el("p", {"class": "found"}, el("span", {"data-field": "shown"}, len(records)),
               f" record(s) shown (at most {view.get('limit', '-')}) from ", el("code", {}, view.get("topic", "-")),
               "; values hidden by default" if not view.get("show_payload") else "")
    redrive = el(
        "section", {"id": "redrive", "data-token-required": "true" if token_required else "false"},
        el("p", {}, el("button", {"type": "button", "id": "redrive-dry-run"}, "Redrive dry run for this filter"),
           " sends nothing; execute sends the matching records back to their origin topic and partition, "
           "value bytes unchanged."),
        el("div", {"id": "redrive-result", "hidden": True},
           el("p", {}, "redrive ", el("code", {"data-field": "redrive_id"}, ""), " (",
              el("span", {"data-field": "mode"}, ""), "): scanned ", el("span", {"data-field": "scanned"}, ""),
              ", matched ", el("span", {"data-field": "matched"}, ""), ", ",
              el("span", {"data-field": "verb"}, "would send"), " ", el("strong", {"data-field": "sent"}, ""),
              ", refused by the loop guard ", el("span", {"data-field": "refused_attempt_cap"}, ""),
              ", without origin ", el("span", {"data-field": "refused_no_origin"}, "")),
           el("ul", {"id": "redrive-destinations"}),
           el("button", {"type": "button", "id": "redrive-execute"}, "Execute…")),
        el("div", {"id": "redrive-confirm", "hidden": True, "class": "confirm"},
           el("p", {}, "Send ", el("strong", {"data-field": "confirm_count"}, ""),
              " record(s) back to their origin partitions under redrive id ",
              el("code", {"data-field": "confirm_id"}, ""), "? This writes to the source topic."),
           el("label", {"hidden": not token_required}, "console token ",
              el("input", {"type": "password", "id": "redrive-token", "autocomplete": "off"})),
           el("button", {"type": "button", "id": "redrive-confirm-yes", "class": "danger"}, "Yes, redrive"),
           el("button", {"type": "button", "id": "redrive-confirm-no"}, "Cancel")),
        el("p", {"id": "redrive-error", "class": "banner", "hidden": True}))
    body = join(fields,
                el("p", {"class": "banner", "id": "dlq-problem"}, problem) if problem else None,
                redrive, found,
                el("section", {"id": "records"}, [_record(r, bool(view.get("show_payload"))) for r in records]))
    return _frame("DLQ browser", "dlq", view, streams, body, stream=stream)


def _verify_line(table: str, verify: dict[str, Any] | None) -> Markup:
    again = el("a", {"href": "/lake?" + urlencode({"verify": table}), "class": "action"},
               "verify now" if verify is None else "verify again")
    if verify is None:
        return el("p", {"class": "verify muted"}, "verify: not run since the console started. ", again)
    summary = (f"rows {verify['rows']}, topic records {verify['records']}: landed {verify['landed']}, "
               f"landing DLQ {verify['dlq']}, duplicates dropped {verify['duplicates_dropped']}; "
               f"duplicate rows {verify['duplicate_rows']}, missing {verify['missing']}, "
               f"rows past the landed offsets {verify['rows_past_offsets']}")
    return el("p", {"class": "verify " + ("ok" if verify["ok"] else "bad")},
              "verify: ", el("strong", {"data-field": "verify"}, "OK" if verify["ok"] else "FAILED"),
              f" at {fmt_time(verify.get('verified_at'))}: {summary}. ", again)


def lake_page(view: dict[str, Any], streams: list[str]) -> Markup:
    if not view.get("available"):
        body = el("p", {"class": "muted"}, view.get("why", "lake landing is not available"))
        return _frame("Lake", "lake", view, streams, body)
    sections = []
    for t in view["tables"]:
        if not t.get("exists"):
            waiting = f"not landed yet (stream {t['stream']}, topic {t['topic']})"
            sections.append(el("article", {"class": "card wide", "data-table": t["name"]},
                               el("h2", {}, t["name"]), el("p", {"class": "muted"}, waiting)))
            continue
        snapshots = _table(["committed", "operation", "rows added", "rows total", "files added", "landed by",
                            "offsets"],
                           [[s["committed_at"], s["operation"], s["added_rows"], s["total_rows"], s["added_files"],
                             s["landed_by"] or "-", s["offsets"] or "-"] for s in t.get("snapshots_shown", [])],
                           class_="grid snapshots")
        offsets = ", ".join(f"p{p}: {o}" for p, o in t.get("offsets", {}).items()) or "-"
        sections.append(el(
            "article", {"class": "card wide", "data-table": t["name"]},
            el("h2", {}, t["name"], " ", el("span", {"class": "muted"}, f"stream {t['stream']}, topic {t['topic']}")),
            el("dl", {"class": "numbers"}, _number("rows", "rows", t["rows"]),
               _number("data_files", "data files", t["data_files"]), _number("snapshots", "snapshots", t["snapshots"]),
               _number("newest_event_time", "newest landed event", t.get("newest_event_time") or "-"),
               _number("last_commit", "last commit", t.get("last_commit") or "-")),
            el("p", {}, "landed offsets (next to land per partition): ", el("code", {}, offsets)),
            _verify_line(t["name"], t.get("verify")),
            el("h3", {}, f"latest {len(t.get('snapshots_shown', []))} snapshots"), snapshots))
    problem = view.get("problem")
    body = join(el("p", {"class": "banner"}, problem) if problem else None,
                sections or el("p", {}, "no streams are declared"))
    return _frame("Lake", "lake", view, streams, body)


def error_page(title: str, message: str, view: dict[str, Any], streams: list[str]) -> Markup:
    return _frame(title, "error", view, streams, el("p", {"class": "banner"}, message))
