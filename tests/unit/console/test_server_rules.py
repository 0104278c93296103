"""Who may execute a redrive, and how a page's filter becomes a DlqFilter."""

from __future__ import annotations

import pytest

from streamlake.console.server import ConsoleConfig, is_loopback, parse_filter
from streamlake.core.dlq_policy import DlqError


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                                           ("localhost", True), ("0.0.0.0", False), ("::", False),
                                           ("10.0.0.5", False), ("console.example", False)])
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_loopback_without_a_token_may_execute():
    assert ConsoleConfig("127.0.0.1", 0, None).execute_refusal(None) is None


def test_not_loopback_without_a_token_configured_refuses_execute_and_says_what_to_set():
    why = ConsoleConfig("0.0.0.0", 0, None).execute_refusal("anything")
    assert why is not None and "STREAMLAKE_CONSOLE_TOKEN" in why


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_a_configured_token_must_match(host):
    config = ConsoleConfig(host, 0, "s3cret")
    assert config.token_required
    assert config.execute_refusal(None) is not None
    assert config.execute_refusal("wrong") is not None
    assert config.execute_refusal("s3cret") is None


def test_filter_from_form_fields_empty_fields_match_everything():
    filt = parse_filter({"reason": "invalid-json", "stage": "", "since": "2026-01-01T00:00:00Z", "until": " ",
                         "key": "k-1"})
    assert (filt.reason, filt.stage, filt.since_ms, filt.until_ms, filt.key) == (
        "invalid-json", None, 1767225600000, None, b"k-1")
    assert parse_filter({}) == parse_filter({"reason": "", "key": ""})


@pytest.mark.parametrize("fields", [{"reason": "no-such-reason"}, {"stage": "nowhere"}, {"since": "yesterday"},
                                    {"since": "2026-01-02", "until": "2026-01-01"}])
def test_bad_filter_fields_are_refused_with_a_message(fields):
    with pytest.raises(DlqError):
        parse_filter(fields)
