"""The console's HTML builder escapes every value by construction."""

from __future__ import annotations

import pytest

from streamlake.console.html import Markup, el, escape, join
from tests.faults.test_hostile_records import CORPUS


def test_text_children_and_attributes_are_escaped():
    out = el("a", {"href": '"><script>x</script>', "data_field": "a&b"}, "<b>bold</b>")
    assert out == ('<a href="&quot;&gt;&lt;script&gt;x&lt;/script&gt;" data-field="a&amp;b">'
                   "&lt;b&gt;bold&lt;/b&gt;</a>")


def test_markup_is_kept_and_nested_elements_are_not_escaped_twice():
    inner = el("code", {}, "<x>")
    assert el("p", {}, inner, " & ", 3) == "<p><code>&lt;x&gt;</code> &amp; 3</p>"
    assert escape(Markup("<br>")) == "<br>"


def test_boolean_and_none_attributes():
    assert el("details", {"open": True, "hidden": False, "title": None}) == "<details open></details>"
    assert el("input", {"value": "'"}) == '<input value="&#x27;">'


@pytest.mark.parametrize("case", [c for c in CORPUS if c.value is not None and len(c.value) < 5000],
                         ids=lambda c: c.name)
def test_hostile_corpus_values_never_open_a_tag(case):
    text = case.value.decode("utf-8", "replace")
    rendered = join(el("pre", {"title": text}, text))
    body = rendered[len("<pre "):-len("</pre>")]
    assert "<" not in body and '"' not in body.split('"', 2)[1]
