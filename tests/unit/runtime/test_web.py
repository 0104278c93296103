"""The worker's web server with ``web_port`` 0: any free port, announced in the log and in the app's conf (no broker)."""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request

import pytest

from streamlake.catalog import load_catalog
from streamlake.config import load_settings
from streamlake.runtime.factory import StreamLakeApp
from streamlake.runtime.web import StreamLakeWeb
from streamlake.topology import discover_streams
from tests.kafka_fixtures import WEB_LISTENING
from tests.unit.runtime.harness import ROOT


def app_with_web_port(port: str, tmp: str) -> StreamLakeApp:
    """The worker's app (never started; its web server is started by hand)."""
    settings = load_settings(env="test", root=ROOT, environ={"STREAMLAKE_WEB_PORT": port, "STREAMLAKE_DATADIR": tmp,
                                                             "STREAMLAKE_APP_ID": f"unit-web-{port}-{id(tmp)}"})
    return StreamLakeApp(settings, load_catalog(settings, discover_streams(settings.topologies_dir)))


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_port_zero_binds_a_free_port_and_the_log_and_conf_carry_it(tmp_path, caplog) -> None:
    app = app_with_web_port("0", str(tmp_path))
    assert isinstance(app.web, StreamLakeWeb)
    assert app.web.url.port == 0  # Faust's banner: not the placeholder port Faust's conf holds
    caplog.set_level(logging.INFO, logger="streamlake.web")
    await app.web.start_server()
    try:
        found = WEB_LISTENING.search(caplog.text)
        assert found is not None, caplog.text
        port = int(found.group(1))
        assert port > 0 and app.conf.web_port == port
        assert app.conf.canonical_url.port == port  # what the worker tells its group
        assert await asyncio.to_thread(status_of, f"http://127.0.0.1:{port}/no-such-page") == 404  # it listens
    finally:
        await app.web.stop_server()
    with pytest.raises(urllib.error.URLError):  # stopped: nothing listens there any more
        await asyncio.to_thread(status_of, f"http://127.0.0.1:{port}/")


def test_a_set_port_is_passed_to_faust_as_before(tmp_path) -> None:
    app = app_with_web_port("7123", str(tmp_path))
    assert app.conf.web_port == 7123 and app.web.url.port == 7123
