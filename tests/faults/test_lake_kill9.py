"""kill -9 on the lake: three landers and two ingestion workers under a steady load.

Landers are SIGKILLed at random points — before a table commit, while one is in flight
(right after its "committing" log line) and just after one — and restarted; one ingestion
worker is killed too, so ingestion forwards some records twice (same key and seq). In the
end every valid (key, seq) is in the table exactly once, the table's offsets are
contiguous (``lake verify``: every record of the valid topic below them is a row, a
landing DLQ record or a dropped duplicate), and the tally is printed.

CI runs a small profile; ``STREAMLAKE_LAKE_SOAK=1`` runs 60,000 records with more kills.
"""

from __future__ import annotations

import os
import random
import time

import pytest

from streamlake.lake.query import query_lake
from streamlake.lake.verify import verify_table
from tests.faults.support import SteadyProducer, group_stable, plan_workload, topics
from tests.kafka_fixtures import wait_for
from tests.lake_fixtures import lake_env, lander_factory  # noqa: F401

SOAK = os.environ.get("STREAMLAKE_LAKE_SOAK", "") not in ("", "0")
PROFILE = (dict(events=60_000, rate=1_500.0, lander_kills=9, keys=600) if SOAK
           else dict(events=2_500, rate=250.0, lander_kills=3, keys=150))
MODES = ("before", "during", "after")


def _commits(lander, word: str) -> int:
    return lander.log().count(f"[DEBUG] streamlake.lander: {word} ")


@pytest.mark.timeout(1800 if SOAK else 900)  # starts five processes and restarts several; a loaded machine is slow
def test_kill9_landers_and_a_worker_land_every_record_exactly_once(lake_env, lander_factory, worker_factory,  # noqa: F811
                                                                    record_property):
    env = lake_env.env
    seed = int(os.environ.get("STREAMLAKE_LAKE_SEED", "13"))
    rnd = random.Random(seed)
    workers = [worker_factory(f"w{i}", wait=False) for i in range(2)]
    for w in workers:
        w.wait_ready()
    wait_for(group_stable(env, 2), timeout=90, what="2 workers to share the partitions")
    landers = [lander_factory(f"l{i}", wait=False, loglevel="debug") for i in range(3)]
    for lander in landers:
        lander.wait_ready(timeout=180)
    source, _output, _dlq = topics(env)
    planned = plan_workload(PROFILE["events"], keys=PROFILE["keys"], seed=seed)
    producer = SteadyProducer(env.broker.bootstrap, source, planned, PROFILE["rate"])
    producer.start()
    kills: list[str] = []
    restarts = 0
    try:
        wait_for(lambda: producer.acked >= PROFILE["rate"] or producer.error, timeout=60, what="the load to start")
        spacing = len(planned) / PROFILE["rate"] / (PROFILE["lander_kills"] + 2)
        for k in range(PROFILE["lander_kills"]):
            mode = MODES[k % 3]
            time.sleep(rnd.uniform(0.5, 1.0) * spacing)  # a random point of the load, not a condition
            # a victim that is up and landing (a lander restarted a moment ago may still be starting)
            busy = [i for i, lander in enumerate(landers) if _commits(lander, "committing") > 0]
            slot = rnd.choice(busy) if busy else rnd.randrange(3)
            victim = landers[slot]
            if mode != "before":
                word = "committing" if mode == "during" else "committed"
                seen = _commits(victim, word)
                try:
                    wait_for(lambda v=victim, w=word, n=seen: _commits(v, w) > n or v.proc.poll() is not None,
                             timeout=180, interval=0.02, what=f"lander {victim.name} to log '{word}'")
                except AssertionError:
                    mode = f"{mode}-missed"  # no commit in time (a loaded machine): killed anyway, said so
            victim.kill()
            kills.append(f"{victim.name}:{mode}@{producer.acked}")
            restarts += 1
            landers[slot] = lander_factory(f"l{slot}-r{restarts}", wait=False, loglevel="debug")
            if k == 1:  # an ingestion worker too: it re-forwards what it had not committed
                workers[0].kill()
                kills.append(f"worker w0@{producer.acked}")
                workers[0] = worker_factory("w0-r", wait=False)
        producer.join(timeout=len(planned) / PROFILE["rate"] + 120)
        assert producer.error is None and producer.acked == len(planned), producer.error
    finally:
        producer.cancel()

    valid = {(p.key.decode(), p.seq) for p in planned if p.kind == "valid"}
    settings, lake = env.settings(), lake_env.lake
    table = lake_env.table

    def landed_pairs() -> set | None:
        try:
            rows = query_lake(settings, f"SELECT DISTINCT _key, _seq FROM {table}", lake).rows
        except Exception:  # the table may be mid-commit or not yet created: ask again
            return None
        pairs = set(rows)
        return pairs if valid <= pairs else None

    wait_for(landed_pairs, timeout=300 if SOAK else 180, interval=2.0, what="every valid record to land")
    counts = query_lake(settings, f"SELECT count(*), count(DISTINCT (_key, _seq)) FROM {table}", lake).rows[0]
    pairs = set(query_lake(settings, f"SELECT DISTINCT _key, _seq FROM {table}", lake).rows)
    report = wait_for(lambda: (r := verify_table(settings, table, lake)).ok and r, timeout=120, interval=2.0,
                      what="lake verify to pass")
    rows, distinct = counts
    missing = len(valid - pairs)
    duplicates = rows - distinct
    extra = len(pairs - valid)
    tally = (f"[lake kill -9] records {len(planned)}, valid (key, seq) {len(valid)}; rows {rows}, "
             f"missing {missing}, duplicate rows {duplicates}, unexpected {extra}; verify: records "
             f"{report.records} = landed {report.landed} + landing DLQ {report.dlq} + duplicates dropped "
             f"{report.duplicates_dropped}, missing offsets {len(report.missing)}; kills {kills}")
    print("\n" + tally, flush=True)
    record_property("lake_kill9_tally", tally)
    assert missing == 0 and duplicates == 0 and extra == 0, tally
    assert report.ok and report.duplicate_rows == 0 and not report.missing, report.as_dict()
