"""The web console: streams, ordering, DLQ, lag and lake freshness at a glance.

``streamlake console`` serves it (:func:`streamlake.console.server.serve`).
Layout: :mod:`.state` samples the broker and builds the views (the same
library functions as the CLI), :mod:`.history` is the pure in-memory history,
:mod:`.pages` renders HTML from the views through :mod:`.html` (escaped by
construction), :mod:`.server` is the aiohttp app and its JSON API, and
``static/`` holds the page script, the stylesheet and the vendored uPlot.
"""
