"""``python -m bench``: StreamLake's benchmarks. See docs/BENCHMARKS.md.

    python -m bench [throughput options]      the five paths side by side (default)
    python -m bench latency [options]         produce-to-forward latency at a steady offered load
    python -m bench seek [options]            offsets_for_times on a small and a large topic
    python -m bench recovery [options]        sequence-table recovery time and memory per 1M keys
    python -m bench failover [options]        kill -9 of one of two workers: time until its partitions forward again
    python -m bench startup [--repeat N]      where a new worker's time goes from spawn to first output
    python -m bench producer [options]        the producer SDK against a raw aiokafka producer loop
    python -m bench landing [options]         rows/s into the lake (raw loop, StreamLake lander, Quix IcebergSink)

Every run prints the machine and its load average at the start and at the end:
on a shared machine, compare figures only as ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
import sys
from collections.abc import Callable

from .common import bench_broker, load_average, machine

COMMANDS = ("throughput", "latency", "seek", "recovery", "failover", "producer", "landing", "startup")


def _paths(text: str) -> tuple[int, ...]:
    try:
        paths = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--paths takes numbers 1..5 separated by commas, not {text!r}") from None
    if not paths or any(p not in (1, 2, 3, 4, 5) for p in paths):
        raise argparse.ArgumentTypeError(f"--paths takes numbers 1..5 separated by commas, not {text!r}")
    return paths


def _choices(allowed: tuple[str, ...]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v.strip() for v in text.split(",") if v.strip())
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}")
        return values
    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", nargs="?", default="throughput", choices=COMMANDS)
    p.add_argument("--broker", help="use this broker (kafka://host:port); default: start or reuse the bench broker")
    p.add_argument("--json", action="store_true", help="print the full report as JSON")
    p.add_argument("--markdown", action="store_true", help="print the results as Markdown for docs/BENCHMARKS.md")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    t = p.add_argument_group("throughput")
    t.add_argument("--records", type=int, default=1_000_000, help="records to prefill (default 1M)")
    t.add_argument("--partitions", type=int, default=8)
    t.add_argument("--keys", type=int, default=10_000)
    t.add_argument("--repeat", type=int, default=3, help="repetitions per path; the median is reported")
    t.add_argument("--paths", type=_paths, default=(1, 2, 3, 4, 5), help="e.g. 1,2,4 (default: all five)")
    t.add_argument("--fast-path", type=_choices(("0", "1")), default=(None,),
                   help="STREAMLAKE_FAST_PATH for path 4; '0,1' measures both in the same run "
                        "(default: inherit the environment)")
    t.add_argument("--guarantee", type=_choices(("at_least_once", "exactly_once")), default=(None,),
                   help="processing guarantee(s) for path 4, e.g. at_least_once,exactly_once (default: conf)")
    t.add_argument("--keep-topics", action="store_true", help="keep the run's topics (default: delete them)")
    t.add_argument("--log-level", default="warn", help="worker log level for paths 3 and 4 (default: warn)")
    lat = p.add_argument_group("latency")
    lat.add_argument("--rate", type=int, default=5000, help="offered load, records/s (default 5000)")
    lat.add_argument("--seconds", type=float, default=30.0, help="how long to offer it (default 30)")
    lat.add_argument("--warmup", type=float, default=3.0, help="seconds of the start left out of the percentiles")
    sk = p.add_argument_group("seek")
    sk.add_argument("--sizes", default="10000,1000000", help="topic sizes in records (default 10000,1000000)")
    sk.add_argument("--lookups", type=int, default=20, help="timestamp lookups per topic (default 20)")
    rc = p.add_argument_group("recovery")
    rc.add_argument("--tracked-keys", type=int, default=1_000_000, help="keys in the changelog (default 1M)")
    rc.add_argument("--stores", type=_choices(("memory", "rocksdb")), default=None,
                    help="recovery: memory,rocksdb (default both); failover: default memory")
    fo = p.add_argument_group("failover (also takes --tracked-keys and --stores)")
    fo.add_argument("--standbys", type=_choices(("0", "1")), default=("0", "1"),
                    help="standby replicas to compare (default 0,1)")
    fo.add_argument("--session-timeout", type=float, default=6.0,
                    help="the workers' session timeout in seconds (default 6, the minimum of a broker with "
                         "Kafka's defaults; the project's own default is 10, the local broker accepts 2 and up)")
    fo.add_argument("--failover-rate", type=int, default=2000, help="records/s offered during failover (default 2000)")
    fo.add_argument("--watchdog", type=_choices(("0", "1")), default=("0",),
                    help="0: kill -9 the worker process group; 1: workers run under `streamlake worker`'s "
                         "watchdog (worker_watchdog) and only the worker process is killed, as the OOM killer "
                         "does; 0,1 compares both (default 0)")
    pr = p.add_argument_group("producer")
    pr.add_argument("--producer-records", type=int, default=100_000, help="records per run (default 100000)")
    pr.add_argument("--part", choices=("sdk", "repartition", "both"), default="both",
                    help="sdk: SDK vs raw producer loop; repartition: moved vs direct worker path (default both)")
    la = p.add_argument_group("landing (also takes --partitions and --keys)")
    la.add_argument("--landing-records", type=int, default=200_000, help="records in the valid topic (default 200k)")
    la.add_argument("--commit-interval", type=float, default=2.0, help="seconds between table commits (default 2)")
    la.add_argument("--commits", type=int, default=1000, help="commits for the latency series (default 1000; 0 skips)")
    la.add_argument("--landing-paths", type=_choices(("raw", "streamlake", "quix")),
                    default=("raw", "streamlake", "quix"))
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)

    def say(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    command = "python -m bench " + shlex.join(argv)
    info = machine()
    with bench_broker(args.broker, log=say) as url:
        from .report import print_machine
        if args.command == "throughput":
            from .report import print_throughput
            from .throughput import Options, Run

            opts = Options(broker=url, records=args.records, partitions=args.partitions, keys=args.keys,
                           repeat=args.repeat, paths=args.paths, fast_path=args.fast_path,
                           guarantee=args.guarantee, keep_topics=args.keep_topics, log_level=args.log_level)
            report = asyncio.run(Run(opts, say).execute())
            info["load_avg_at_end"] = load_average()
            report = {"command": command, "machine": info, **report}
            if args.json:
                print(json.dumps(report, indent=2))
            else:
                print_throughput(report, args.markdown)
            return 0 if all(r["error"] is None for r in report["results"]) else 1
        if args.command == "latency":
            from .latency import measure_latency, print_latency
            report = asyncio.run(measure_latency(url, args.rate, args.seconds, args.warmup, args.partitions,
                                                 args.keys, say))
        elif args.command == "seek":
            from .seek import measure_seek, print_seek
            sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
            report = asyncio.run(measure_seek(url, sizes, args.partitions, args.lookups, say))
        elif args.command == "producer":
            from .producer import measure_producer, measure_repartition
            report = {}
            if args.part in ("sdk", "both"):
                report["sdk"] = asyncio.run(measure_producer(url, args.producer_records, args.keys, args.partitions,
                                                             args.repeat, say))
            if args.part in ("repartition", "both"):
                report["repartition"] = asyncio.run(measure_repartition(
                    url, args.producer_records, args.keys, args.partitions, args.repeat, say))
        elif args.command == "recovery":
            from .recovery import measure_recovery, print_recovery
            report = asyncio.run(measure_recovery(url, args.tracked_keys, args.stores or ("memory", "rocksdb"),
                                                  args.partitions, say))
        elif args.command == "startup":
            from .startup import measure_startup, print_startup
            report = asyncio.run(measure_startup(url, args.repeat, args.partitions, say))
        elif args.command == "landing":
            from .landing import measure_landing, print_landing
            report = asyncio.run(measure_landing(url, args.landing_records, args.partitions, args.keys,
                                                 args.commit_interval, args.commits, args.landing_paths, say))
        else:
            from .failover import measure_failover, print_failover
            report = asyncio.run(measure_failover(url, args.tracked_keys, tuple(int(s) for s in args.standbys),
                                                  args.stores or ("memory",), args.partitions, args.failover_rate,
                                                  args.session_timeout, say,
                                                  tuple(w == "1" for w in args.watchdog)))
        info["load_avg_at_end"] = load_average()
        report = {"command": command, "machine": info, **report}
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            printer = {"latency": print_latency if args.command == "latency" else None,
                       "seek": print_seek if args.command == "seek" else None,
                       "recovery": print_recovery if args.command == "recovery" else None,
                       "failover": print_failover if args.command == "failover" else None,
                       "producer": _print_producer,
                       "landing": print_landing if args.command == "landing" else None,
                       "startup": print_startup if args.command == "startup" else None}[args.command]
            assert printer is not None
            print_machine(info, args.markdown)
            printer(report, args.markdown)
    return 0


def _print_producer(report: dict, markdown: bool) -> None:
    from .producer import print_producer, print_repartition
    if "sdk" in report:
        print_producer({"command": report["command"], **report["sdk"]}, markdown)
    if "repartition" in report:
        print_repartition(report["repartition"], markdown)


if __name__ == "__main__":
    sys.exit(main())
