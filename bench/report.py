"""Print results: a plain table for the terminal, Markdown for docs/BENCHMARKS.md."""

from __future__ import annotations


def _num(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def throughput_rows(report: dict) -> list[list[str]]:
    rows = []
    for r in report["results"]:
        rows.append([
            r["path"], r["name"], _num(r["records_per_s"]),
            _num(r["ratio_to_path_2"], "{:.2f}"),
            _num(r["peak_rss_mb"], "{:.0f} MB"),
            _num(r["first_output_s"], "{:.2f} s"),
            _num(r["records_per_s_after_first_output"]),
            _num(r.get("cpu_s"), "{:.1f} s"),
            r["output_check"],
            ", ".join(f"{s['records_per_s']:,}" for s in r["samples"])
            + (f" ERROR: {r['error']}" if r["error"] else ""),
        ])
    return rows


HEADERS = ["path", "what", "records/s (median)", "÷ path 2", "peak RSS", "first output",
           "records/s after first output", "CPU (median)", "output", "all repetitions"]


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(out)


def workload_line(report: dict) -> str:
    w = report["workload"]
    return (f"{w['records']:,} records (mean value {w['mean_value_bytes']:.0f} B), {w['partitions']} partitions, "
            f"{w['keys']:,} keys, {w['duplicates']:,} duplicates, {w['malformed']:,} malformed; "
            f"median of {report['repeat']} repetition(s); ratios against path {report['reference_path']}")


def machine_line(m: dict) -> str:
    return (f"{m['nproc']} CPUs ({m['cpu']}), {m['memory_gb']} GB RAM, Python {m['python']}, "
            f"faust-streaming {m['faust']}, aiokafka {m['aiokafka']}, quixstreams {m['quixstreams']}, "
            f"load average at start {m['load_avg_at_start']}, at end {m.get('load_avg_at_end', '—')}")


def print_machine(m: dict, markdown: bool) -> None:
    if markdown:
        print(f"Machine: {machine_line(m)}\n")
    else:
        print(f"\nmachine:  {machine_line(m)}")


def print_throughput(report: dict, markdown: bool) -> None:
    rows = throughput_rows(report)
    if markdown:
        print(f"Machine: {machine_line(report['machine'])}\n")
        print(f"Command: `{report['command']}`\n")
        print(f"Workload: {workload_line(report)}\n")
        print(markdown_table(HEADERS, rows))
    else:
        print(f"\nmachine:  {machine_line(report['machine'])}")
        print(f"workload: {workload_line(report)}\n")
        print(text_table(HEADERS, rows))


def print_simple(title: str, headers: list[str], rows: list[list[str]], markdown: bool) -> None:
    if markdown:
        print(f"**{title}**\n")
        print(markdown_table(headers, rows))
    else:
        print(f"\n{title}\n")
        print(text_table(headers, rows))


def main() -> None:
    """``python -m bench.report REPORT.json [--markdown]``: print a saved ``--json`` report again."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("report")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with open(args.report) as fh:
        report = json.load(fh)
    if "workload" in report:
        print_throughput(report, args.markdown)
    else:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
