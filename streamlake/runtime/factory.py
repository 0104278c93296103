"""Create the one Faust app whose id is the consumer group."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import faust
from prometheus_client import CollectorRegistry

from ..catalog import Catalog, load_catalog
from ..config import Settings, load_settings
from ..kafka.client import ssl_context
from ..topology import Stream, discover_streams
from .binding import StreamBinding
from .compat import check_versions, group_member_id
from .declarations import declare_stream
from .dlq_agents import DlqAgent, bind_dlq_agents
from .gc_tuning import collect_young_less_often, freeze_startup_objects
from .monitor import StreamLakeMonitor
from .record_path import RecordPath
from .startup import prepare_worker
from .table_store import StartNowTableManager
from .watchdog import record_member
from .web import WEB_DRIVER_SCHEME, install_web_views

#: URL scheme of StreamLake's transport (fastpath.BatchTransport: consumer and producer), registered
#: with Faust through the ``faust.transports`` entry point in setup.cfg.
BATCH_TRANSPORT_SCHEME = "streamlake"


def consumer_broker_url(broker: str) -> str:
    """*broker* with every server's scheme set to StreamLake's consumer transport."""
    return ";".join(f"{BATCH_TRANSPORT_SCHEME}://{part.strip().split('://', 1)[-1]}"
                    for part in broker.split(";") if part.strip())


def faust_settings(settings: Settings) -> dict[str, Any]:
    """Faust app keyword arguments; every value comes from conf or the environment."""
    conf: dict[str, Any] = dict(
        broker=settings.broker,
        store=settings.store,
        processing_guarantee=settings.processing_guarantee,
        web=f"{WEB_DRIVER_SCHEME}://",  # web.StreamLakeWeb: web_port 0 binds any free port
        web_host=settings.web_host,
        web_bind=settings.web_host,
        datadir=settings.datadir,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_commit_interval=settings.commit_interval,
        topic_disable_leader=True,
        # prepare_worker (startup.py) creates every catalog topic and changelog before Faust
        # starts; Faust's own declarations were eight more create-topic requests at start-up.
        topic_allow_declare=False,
        autodiscover=False,
        table_cleanup_interval=60.0,
        producer_linger=0.005,
        producer_max_batch_size=256 * 1024,
        producer_acks=-1,
        stream_wait_empty=True,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=4 * 1024 * 1024,  # DLQ records carry the original value plus context
        # Fail a send after this long (Faust's default is 20 min) so an unwritable
        # output or DLQ topic shows up in the log at once, and keeps showing up.
        producer_request_timeout=settings.request_timeout,
        Monitor=StreamLakeMonitor,  # committed offsets for /metrics (runtime/monitor.py)
        # Each table partition is followed by this many other workers, which take it over
        # without a cold restore when its worker dies (see table_store.py).
        table_standby_replicas=settings.table_standby_replicas,
        TableManager=StartNowTableManager,
    )
    if settings.web_port:  # Faust refuses 0; its conf takes the bound port once the server listens
        conf["web_port"] = settings.web_port
    if RecordPath.for_settings(settings).batch_consumer:
        # StreamLake's consumer owns read positions, fast path or not (see fastpath.py).
        # exactly_once keeps Faust's: its sends join Faust's per-partition transactions.
        conf["broker_consumer"] = consumer_broker_url(settings.broker)
        # acks=all with idempotence for outputs, DLQs and changelogs (compat.IdempotentProducer).
        # exactly_once keeps Faust's producer as it is: its sends go through transactional
        # producers, which are idempotent already.
        conf["broker_producer"] = consumer_broker_url(settings.broker)
    credentials = _credentials(settings)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    return conf


def _credentials(settings: Settings) -> Any:
    sec = settings.security
    if sec.sasl_mechanism:
        return faust.SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password,
            mechanism=sec.sasl_mechanism,
            ssl_context=ssl_context(settings) if sec.protocol == "SASL_SSL" else None,
        )
    if sec.protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return None


class StreamLakeApp(faust.App):
    """The Faust app, plus StreamLake's bindings and start-up checks; every attribute typed, set once."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        super().__init__(settings.app_id, **faust_settings(settings))
        self.streamlake_settings = settings
        self.catalog = catalog
        #: chosen once from the settings; every binding gets it passed in
        self.record_path = RecordPath.for_settings(settings)
        self.bindings: list[StreamBinding] = []
        #: source and retry topic name -> binding, for StreamLake's consumer (fast path only)
        self.fast_bindings: dict[str, StreamBinding] = {}
        self.dlq_agents: list[DlqAgent] = []
        self.metrics_registry: CollectorRegistry | None = None
        #: held while a worker with a RocksDB store runs (startup.lock_datadir)
        self.datadir_lock: IO[str] | None = None
        self.on_partitions_assigned.connect(self._record_member)  # type: ignore[arg-type]  # mode types receivers loosely

    async def _record_member(self, sender: Any, *_: Any, **__: Any) -> None:
        """Keep the group member id in the data dir: a watchdog leaves the group with it if this worker is killed."""
        member_id = group_member_id(self.consumer)
        if member_id is not None:
            record_member(self.streamlake_settings.datadir, self.conf.id, member_id)

    async def on_first_start(self) -> None:
        await super().on_first_start()
        if self.bindings:
            await prepare_worker(self.streamlake_settings, self.catalog, self.tables.values())

    async def on_started(self) -> None:
        await super().on_started()
        freeze_startup_objects(self.streamlake_settings.gc_young_threshold)

    def bind(self, streams: Sequence[Stream]) -> None:
        """Declare every stream's topics and tables, its ingestion agent and its DLQ agent."""
        for stream in streams:
            topics = declare_stream(self, stream, self.streamlake_settings, self.catalog)
            binding = StreamBinding(self, topics, self.streamlake_settings, self.record_path)
            self.bindings.append(binding)
            if self.record_path is RecordPath.FAST:
                for name in topics.input_names:
                    self.fast_bindings[name] = binding
        self.dlq_agents = bind_dlq_agents(self, streams, self.streamlake_settings, self.catalog)


def create_app(settings: Settings | None = None) -> StreamLakeApp:
    """Build the app from conf/ and bind every stream declared under topologies/."""
    settings = settings or load_settings()
    check_versions()
    collect_young_less_often(settings.gc_young_threshold)
    Path(settings.datadir).mkdir(parents=True, exist_ok=True)
    streams = discover_streams(settings.topologies_dir)
    app = StreamLakeApp(settings, load_catalog(settings, streams))
    app.bind(streams)
    install_web_views(app)
    return app
