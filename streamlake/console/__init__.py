"""The web console: streams, ordering, DLQ, lag and lake freshness at a glance.

``streamlake console`` serves it (:func:`streamlake.console.server.serve`).
Layout: :mod:`.state` samples the broker and builds the views (the same
library functions as the CLI), :mod:`.history` is the pure in-memory history,
:mod:`.pages` renders HTML from the views through :mod:`.html` (escaped by
construction), :mod:`.server` is the aiohttp app and its JSON API, and
``static/`` holds the page script, the stylesheet and the vendored uPlot.

This package's own module is kept free of imports: ``streamlake console`` is registered
on every CLI start (and in every worker), and the server, state and lake views load
only when the console runs.
"""

#: The environment variable that holds the console's redrive token (never logged or shown).
TOKEN_ENV = "STREAMLAKE_CONSOLE_TOKEN"

