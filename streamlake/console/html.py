"""HTML built from parts, escaped by construction.

Invariant: every string that reaches a page passes :func:`escape` unless it
is :class:`Markup`, and only :func:`el` (from escaped parts) and the page
frame make Markup. Record keys, values, headers, reasons and topic names
are therefore always text, never markup, whatever bytes they hold.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Union

__all__ = ["Markup", "escape", "el", "join", "Node"]


class Markup(str):
    """A string that is already safe HTML."""


Node = Union["Markup", str, int, float, None, Iterable["Node"]]


def escape(value: object) -> Markup:
    """Return *value* as HTML text (quotes escaped too, so it is safe in attributes)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _render(node: Node) -> str:
    if node is None:
        return ""
    if isinstance(node, str | int | float):
        return escape(node)
    return "".join(_render(child) for child in node)


def join(*nodes: Node) -> Markup:
    """Render *nodes* (text escaped, Markup kept) one after the other."""
    return Markup(_render(nodes))


_VOID = frozenset({"br", "hr", "img", "input", "link", "meta"})


def el(tag: str, attrs: dict[str, object] | None = None, *children: Node) -> Markup:
    """Return ``<tag attrs>children</tag>``; attribute values and text children are escaped.

    An attribute whose value is ``None`` or ``False`` is left out; ``True``
    writes it without a value.
    """
    parts = [tag]
    for name, value in (attrs or {}).items():
        if value is None or value is False:
            continue
        attr = name.rstrip("_").replace("_", "-")
        parts.append(attr if value is True else f'{attr}="{escape(value)}"')
    opening = "<" + " ".join(parts) + ">"
    if tag in _VOID:
        return Markup(opening)
    return Markup(opening + _render(children) + f"</{tag}>")
