"""The lander's web server on port 0: any free port, named in its log line (no broker, no lake)."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request

from prometheus_client import CollectorRegistry

from streamlake.lake.metrics import serve_lander_web
from tests.kafka_fixtures import WEB_LISTENING


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def test_port_zero_binds_a_free_port_and_the_log_names_it(caplog) -> None:
    caplog.set_level(logging.INFO, logger="streamlake.lander")
    runner = await serve_lander_web("127.0.0.1", 0, CollectorRegistry(), lambda: {"alive": True},
                                    lambda: {"ready": True})
    try:
        found = WEB_LISTENING.search(caplog.text)
        assert found is not None, caplog.text
        port = int(found.group(1))
        assert port == runner.addresses[0][1] and port > 0
        assert await asyncio.to_thread(get_json, f"http://127.0.0.1:{port}/health") == {"alive": True}
    finally:
        await runner.cleanup()
