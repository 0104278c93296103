"""The five paths side by side on the same prefilled data, in one run."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streamlake.broker.local import free_port
from streamlake.kafka.offsets import OffsetAdmin

from .common import (
    PYTHON,
    ROOT,
    RUNS_DIR,
    Child,
    ChildFailed,
    broker_settings,
    delete_topics_with,
    end_offsets,
    run_tag,
    watch_group,
)
from .workload import Workload, create_topics, make_workload, produce_workload

PATH_NAMES = {
    1: "raw aiokafka consume + orjson decode",
    2: "raw aiokafka copy loop (consume, decode, produce)",
    3: "bare Faust agent, forward per event",
    4: "StreamLake ingestion worker (full pipeline)",
    5: "Quix Streams: decode, last seq per key in state, forward",
}
REFERENCE = 2
STREAM_DATASET = "sales.orders"


@dataclass
class Sample:
    """One repetition of one path."""

    records: int
    seconds: float
    peak_rss_mb: float | None
    first_output_s: float | None = None
    output: int | None = None      # records the path wrote (or decoded, for path 1)
    expected: int | None = None    # what it should have written for this workload
    cpu_s: float | None = None     # CPU time of the path's process (all threads): steadier than rates on a shared host

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else 0.0

    @property
    def rate_after_first_output(self) -> float | None:
        if self.first_output_s is None or self.seconds <= self.first_output_s:
            return None
        return self.records / (self.seconds - self.first_output_s)


@dataclass
class PathResult:
    key: str            # "1" .. "5", or "4[fast=1,eos]" for variants
    number: int
    name: str
    samples: list[Sample] = field(default_factory=list)
    error: str | None = None

    @property
    def median_rate(self) -> float | None:
        return statistics.median(s.rate for s in self.samples) if self.samples else None

    @property
    def peak_rss_mb(self) -> float | None:
        values = [s.peak_rss_mb for s in self.samples if s.peak_rss_mb is not None]
        return max(values) if values else None

    @property
    def median_first_output_s(self) -> float | None:
        values = [s.first_output_s for s in self.samples if s.first_output_s is not None]
        return statistics.median(values) if values else None

    @property
    def median_rate_after_first_output(self) -> float | None:
        values = [s.rate_after_first_output for s in self.samples if s.rate_after_first_output is not None]
        return statistics.median(values) if values else None

    @property
    def median_cpu_s(self) -> float | None:
        values = [s.cpu_s for s in self.samples if s.cpu_s is not None]
        return statistics.median(values) if values else None

    @property
    def output_check(self) -> str:
        """'ok' when every repetition wrote what the workload calls for (a sanity check, not a test)."""
        if not self.samples or any(s.output is None or s.expected is None for s in self.samples):
            return "—"
        off = [f"{s.output}/{s.expected}" for s in self.samples if s.output != s.expected]
        return "ok" if not off else "MISMATCH " + ", ".join(off)

    def as_dict(self, reference: float | None) -> dict:
        rate = self.median_rate
        return {
            "path": self.key, "name": self.name,
            "records_per_s": None if rate is None else round(rate),
            "ratio_to_path_2": None if rate is None or not reference else round(rate / reference, 3),
            "peak_rss_mb": self.peak_rss_mb,
            "first_output_s": None if self.median_first_output_s is None else round(self.median_first_output_s, 2),
            "records_per_s_after_first_output": (None if self.median_rate_after_first_output is None
                                                 else round(self.median_rate_after_first_output)),
            "output_check": self.output_check,
            "cpu_s": None if self.median_cpu_s is None else round(self.median_cpu_s, 1),
            "samples": [{"records_per_s": round(s.rate), "seconds": round(s.seconds, 3),
                         "peak_rss_mb": s.peak_rss_mb, "output": s.output, "expected": s.expected,
                         "cpu_s": None if s.cpu_s is None else round(s.cpu_s, 1),
                         "first_output_s": None if s.first_output_s is None else round(s.first_output_s, 3)}
                        for s in self.samples],
            "error": self.error,
        }


@dataclass
class Variant:
    """One StreamLake worker configuration (path 4 may be measured in several)."""

    fast_path: str | None   # None: inherit STREAMLAKE_FAST_PATH from the environment
    guarantee: str | None   # None: the conf's processing guarantee

    @property
    def key(self) -> str:
        bits = []
        if self.fast_path is not None:
            bits.append(f"fast={self.fast_path}")
        if self.guarantee is not None:
            bits.append("eos" if self.guarantee == "exactly_once" else "alo")
        return "4" + (f"[{','.join(bits)}]" if bits else "")

    @property
    def name(self) -> str:
        extra = []
        if self.fast_path is not None:
            extra.append(f"STREAMLAKE_FAST_PATH={self.fast_path}")
        if self.guarantee is not None:
            extra.append(self.guarantee)
        return PATH_NAMES[4] + (f" ({', '.join(extra)})" if extra else "")


@dataclass
class Options:
    broker: str
    records: int = 200_000
    partitions: int = 8
    keys: int = 10_000
    repeat: int = 3
    paths: tuple[int, ...] = (1, 2, 3, 4, 5)
    fast_path: tuple[str | None, ...] = (None,)
    guarantee: tuple[str | None, ...] = (None,)
    keep_topics: bool = False
    log_level: str = "warn"


class Run:
    """One harness run: prefill once, then every path, interleaved per repetition."""

    def __init__(self, opts: Options, say: Callable[[str], None]) -> None:
        self.opts = opts
        self.say = say
        self.tag = run_tag()
        self.dir = RUNS_DIR / self.tag
        self.bootstrap = broker_settings(opts.broker).bootstrap_servers
        self.source = f"bench-{self.tag}.sales.orders.raw.v1"
        self.workload: Workload | None = None
        self.prefill_seconds = 0.0

    async def execute(self) -> dict:
        opts = self.opts
        self.say(f"run {self.tag}: generating {opts.records} records over {opts.partitions} partitions, "
                 f"{opts.keys} keys")
        self.workload = make_workload(opts.records, opts.partitions, opts.keys)
        await create_topics(self.bootstrap, [self.source], opts.partitions)
        self.prefill_seconds = await produce_workload(self.bootstrap, self.source, self.workload.records)
        self.say(f"prefilled {self.source} in {self.prefill_seconds:.1f}s "
                 f"(mean value {self.workload.mean_value_bytes:.0f} B)")
        results: dict[str, PathResult] = {}
        for number in opts.paths:
            if number == 4:
                for v in self.variants():
                    results[v.key] = PathResult(v.key, 4, v.name)
            else:
                results[str(number)] = PathResult(str(number), number, PATH_NAMES[number])
        try:
            for rep in range(opts.repeat):
                for number in opts.paths:
                    targets = [(v.key, v) for v in self.variants()] if number == 4 else [(str(number), None)]
                    for key, variant in targets:
                        result = results[key]
                        if result.error:
                            continue
                        self.say(f"[rep {rep + 1}/{opts.repeat}] path {key}: {result.name} ...")
                        try:
                            sample = await self.measure(number, rep, variant)
                        except (ChildFailed, RuntimeError, OSError) as exc:
                            result.error = str(exc).splitlines()[0][:300]
                            self.say(f"  path {key} FAILED: {exc}")
                            continue
                        result.samples.append(sample)
                        extra = f", first output after {sample.first_output_s:.2f}s" if sample.first_output_s else ""
                        cpu = f", CPU {sample.cpu_s:.1f}s" if sample.cpu_s is not None else ""
                        self.say(f"  {sample.records} records in {sample.seconds:.2f}s = {sample.rate:,.0f}/s, "
                                 f"peak RSS {sample.peak_rss_mb} MB{cpu}{extra}")
        finally:
            if not opts.keep_topics:
                await asyncio.sleep(0.5)
                n = await delete_topics_with(opts.broker, self.tag)
                self.say(f"deleted {n} topic(s) of run {self.tag}")
                shutil.rmtree(self.dir, ignore_errors=True)
        reference = results[str(REFERENCE)].median_rate if str(REFERENCE) in results else None
        return {
            "run": self.tag,
            "workload": self.workload.describe() | {"prefill_seconds": round(self.prefill_seconds, 2)},
            "repeat": opts.repeat,
            "reference_path": REFERENCE,
            "results": [r.as_dict(reference) for r in results.values()],
        }

    def variants(self) -> list[Variant]:
        return [Variant(f, g) for f in self.opts.fast_path for g in self.opts.guarantee]

    def expected_output(self, number: int) -> int:
        w = self.workload
        assert w is not None
        valid = len(w.records) - w.malformed
        return {1: valid, 2: valid, 3: len(w.records), 4: valid - w.duplicates, 5: valid - w.duplicates}[number]

    async def written(self, topic: str) -> int:
        async with OffsetAdmin(broker_settings(self.opts.broker)) as kafka:
            return sum((await end_offsets(kafka, topic, self.opts.partitions)).values())

    def timeout(self) -> float:
        return 120 + self.opts.records / 400  # generous: path 3 runs at a few k/s

    async def measure(self, number: int, rep: int, variant: Variant | None) -> Sample:
        if number in (1, 2):
            return await self.raw(number, rep)
        if number == 3:
            return await self.faust_forward(rep)
        if number == 4:
            assert variant is not None
            return await self.streamlake(rep, variant)
        if number == 5:
            return await self.quix(rep)
        raise ValueError(f"no path {number}")

    # -- paths 1 and 2: in-process timing in their own process

    async def raw(self, number: int, rep: int) -> Sample:
        argv = [PYTHON, "-m", "bench.raw", "consume" if number == 1 else "copy", "--broker", self.bootstrap,
                "--source", self.source, "--partitions", str(self.opts.partitions)]
        if number == 2:
            output = f"bench-{self.tag}.copy.r{rep}"
            await create_topics(self.bootstrap, [output], self.opts.partitions)
            argv += ["--output", output]
        proc = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), self.timeout())
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise ChildFailed(f"path {number} did not finish within {self.timeout():.0f}s") from None
        if proc.returncode != 0:
            raise ChildFailed(f"path {number} exited with {proc.returncode}: {err.decode()[-2000:]}")
        data = json.loads(out.decode().strip().splitlines()[-1])
        output = data["decoded"] if number == 1 else await self.written(argv[-1])
        return Sample(data["records"], data["seconds"], data["peak_rss_mb"], output=output,
                      expected=self.expected_output(number), cpu_s=data.get("cpu_s"))

    # -- paths 3, 4, 5: a worker process, timed until its commits reach the end

    async def worker(self, number: int, name: str, argv: list[str], env: dict[str, str], group: str,
                     source: str, output: str) -> Sample:
        child = Child.spawn(name, argv, env, self.dir / f"{name}.log")
        try:
            async with OffsetAdmin(broker_settings(self.opts.broker)) as kafka:
                progress = await watch_group(child, kafka, group, source, self.opts.partitions, output,
                                             limit_s=self.timeout())
        finally:
            child.stop()
        return Sample(self.opts.records, progress.done_s or 0.0, progress.peak_rss_mb, progress.first_output_s,
                      output=await self.written(output), expected=self.expected_output(number),
                      cpu_s=progress.cpu_s)

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    async def faust_forward(self, rep: int) -> Sample:
        app_id = f"bench-{self.tag}-faust-r{rep}"
        output = f"bench-{self.tag}.faust.r{rep}"
        await create_topics(self.bootstrap, [output], self.opts.partitions)
        env = self.base_env() | {"BENCH_BROKER": self.opts.broker, "BENCH_APP_ID": app_id, "BENCH_SOURCE": self.source,
                                 "BENCH_OUTPUT": output, "BENCH_DATADIR": str(self.dir / f"faust-r{rep}")}
        argv = [PYTHON, "-m", "faust", "-A", "bench.faust_forward", "worker", "-l", self.opts.log_level,
                "--without-web"]
        return await self.worker(3, f"faust-r{rep}", argv, env, app_id, self.source, output)

    async def quix(self, rep: int) -> Sample:
        group = f"bench-{self.tag}-quix-r{rep}"
        output = f"bench-{self.tag}.quix.r{rep}"
        await create_topics(self.bootstrap, [output], self.opts.partitions)
        env = self.base_env() | {"BENCH_BROKER": self.opts.broker, "BENCH_APP_ID": group, "BENCH_SOURCE": self.source,
                                 "BENCH_OUTPUT": output, "BENCH_DATADIR": str(self.dir / f"quix-r{rep}")}
        return await self.worker(5, f"quix-r{rep}", [PYTHON, "-m", "bench.quix_pipeline"], env, group,
                                 self.source, output)

    async def streamlake(self, rep: int, variant: Variant) -> Sample:
        label = variant.key.replace("[", "-").replace("]", "").replace(",", "-").replace("=", "")
        prefix = f"bench-{self.tag}-{label}-r{rep}"
        app_id = f"bench-{self.tag}-{label}-r{rep}"
        source = f"{prefix}.sales.orders.raw.v1"
        output = f"{prefix}.sales.orders.valid.v1"
        assert self.workload is not None
        port = free_port()
        env = streamlake_env(self.base_env(), self.opts.broker, prefix, app_id, port,
                             self.dir / f"{label}-r{rep}-data", self.home())
        await apply_streamlake_catalog(env)  # as a deploy would: `streamlake topics apply` first
        await produce_workload(self.bootstrap, source, self.workload.records)
        if variant.fast_path is not None:
            env["STREAMLAKE_FAST_PATH"] = variant.fast_path
        if variant.guarantee is not None:
            env["STREAMLAKE_PROCESSING_GUARANTEE"] = variant.guarantee
        argv = streamlake_argv(port, self.opts.log_level)
        return await self.worker(4, f"{label}-r{rep}", argv, env, app_id, source, output)

    def home(self) -> Path:
        return streamlake_home(self.opts.partitions, self.dir)


def catalog_partitions() -> int:
    data = tomllib.loads((ROOT / "conf" / "catalog.toml").read_text())
    return int(data["datasets"][STREAM_DATASET].get("partitions", data["defaults"]["partitions"]))


def streamlake_home(partitions: int, run_dir: Path) -> Path:
    """The project root, or (for another partition count) a copy of its conf with the catalog overlaid.

    The worker refuses a source topic whose partition count differs from the
    catalog's (co-partitioning), so ``--partitions`` other than the catalog's
    needs a catalog that agrees; the repo's conf/ is never touched.
    """
    if partitions == catalog_partitions():
        return ROOT
    home = run_dir / "home"
    if not home.exists():
        (home / "conf").mkdir(parents=True)
        for f in (ROOT / "conf").glob("*.toml"):
            shutil.copy(f, home / "conf" / f.name)
        (home / "topologies").symlink_to(ROOT / "topologies")
        (home / "conf" / "catalog.dev.toml").write_text(
            f'[datasets."{STREAM_DATASET}"]\npartitions = {partitions}\n[dlq]\npartitions = {partitions}\n')
    return home


async def apply_streamlake_catalog(env: dict[str, str]) -> None:
    """Create the stream's topics from the catalog, as ``streamlake topics apply`` does."""
    from streamlake.catalog import load_catalog
    from streamlake.config import load_settings
    from streamlake.kafka.admin import apply_catalog
    from streamlake.topology import discover_streams

    settings = load_settings(environ=env, root=Path(env["STREAMLAKE_HOME"]))
    catalog = load_catalog(settings, discover_streams(settings.topologies_dir))
    report = await apply_catalog(settings, catalog)
    if report.outcome.value == "refused":
        raise RuntimeError(f"the catalog cannot be applied: {report.as_dict()}")


def streamlake_env(base: dict[str, str], broker: str, prefix: str, app_id: str, web_port: int, datadir: Path,
                   home: Path) -> dict[str, str]:
    return base | {
        "STREAMLAKE_ENV": "dev", "STREAMLAKE_HOME": str(home), "STREAMLAKE_BROKER": broker,
        "STREAMLAKE_TOPIC_PREFIX": prefix, "STREAMLAKE_APP_ID": app_id, "STREAMLAKE_WEB_PORT": str(web_port),
        "STREAMLAKE_DATADIR": str(datadir),
    }


def streamlake_argv(web_port: int, log_level: str = "warn") -> list[str]:
    return [PYTHON, "-m", "faust", "-A", "streamlake.app", "worker", "-l", log_level,
            "--web-port", str(web_port), "--web-host", "127.0.0.1"]
