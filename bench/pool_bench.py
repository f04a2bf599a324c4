#!/usr/bin/python3
"""pool_bench.py - the workloads of `drover bench`, through multiprocessing.Pool.

Runs with Debian's system interpreter and its standard library only:

    /usr/bin/python3 bench/pool_bench.py [--processes N] [--tasks N]
                                         [--samples N] [--scenarios a,b] [--json]

Scenarios (all items are 16-byte bytes objects unless stated; the worker
function returns its argument, like Drover's `echo` handler):

  map          Pool.map over --items items (default: --tasks) with its default
               chunksize (items/s);
               the call is repeated until --map-min-seconds (0.25) have passed
  imap         Pool.imap_unordered over --tasks items, chunksize=1 (items/s)
  latency      Pool.apply_async(...).get() one at a time, --samples round trips
               after a warm-up: p50 / p90 / p99 / p99.9 in microseconds
  dispatch     --dispatch-tasks (2000) calls of time.sleep(0.001) on
               --dispatch-processes (8) processes, imap_unordered chunksize=1;
               efficiency = ideal (tasks x 1 ms / processes) / measured
  payload      16 B, 1 KiB, 64 KiB, 1 MiB payloads through imap_unordered
               chunksize=1; the count per size is --tasks, capped so that at
               most --payload-mb (256) MiB of payloads go each way, as drover
               bench does

Only the work is timed: each pool is started and warmed up before its clock
starts, and torn down after it stops.
"""

import argparse
import json
import math
import multiprocessing
import os
import platform
import sys
import time

SCENARIOS = {
    "map": "map_default_chunksize",
    "imap": "imap_unordered_chunksize_1",
    "latency": "apply_async_latency",
    "dispatch": "dispatch",
    "payload": "payload",
}
PAYLOAD_SIZES = (16, 1024, 64 * 1024, 1024 * 1024)


def identity(item):
    return item


def sleep_ms(_item):
    time.sleep(0.001)
    return None


def items16(count):
    """count distinct 16-byte items, built before any clock starts."""
    return [b"%016d" % i for i in range(count)]


def warm_up(pool, processes):
    """Make sure every process has started and run a task."""
    pool.map(identity, [b"w"] * (processes * 4), chunksize=1)


def percentile(sorted_values, fraction):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def rate(count, seconds):
    return count / seconds if seconds > 0 else 0.0


def bench_map(processes, tasks, min_seconds):
    """Pool.map is so fast on trivial items that one call over a few
    thousand of them lasts a few milliseconds, within the noise of the
    scheduler: the same call is repeated until min_seconds have passed, and
    the figure is all the items over all the time (per-call costs included)."""
    items = items16(tasks)
    repeats = 0
    seconds = 0.0
    first = None
    with multiprocessing.Pool(processes) as pool:
        warm_up(pool, processes)
        while repeats == 0 or seconds < min_seconds:
            start = time.perf_counter()
            out = pool.map(identity, items)
            elapsed = time.perf_counter() - start
            seconds += elapsed
            first = elapsed if first is None else first
            repeats += 1
            assert len(out) == tasks
    # The chunksize Pool.map picks when none is given (CPython's formula).
    chunksize, extra = divmod(tasks, processes * 4)
    if extra:
        chunksize += 1
    return {
        "scenario": SCENARIOS["map"],
        "processes": processes,
        "payload": 16,
        "items": tasks * repeats,
        "items_per_call": tasks,
        "repeats": repeats,
        "chunksize": chunksize,
        "seconds": seconds,
        "per_second": rate(tasks * repeats, seconds),
        "first_call_seconds": first,
        "first_call_per_second": rate(tasks, first),
    }


def imap_run(pool, items):
    start = time.perf_counter()
    count = 0
    for _ in pool.imap_unordered(identity, items, chunksize=1):
        count += 1
    seconds = time.perf_counter() - start
    assert count == len(items)
    return seconds


def bench_imap(processes, tasks):
    items = items16(tasks)
    with multiprocessing.Pool(processes) as pool:
        warm_up(pool, processes)
        seconds = imap_run(pool, items)
    return {
        "scenario": SCENARIOS["imap"],
        "processes": processes,
        "payload": 16,
        "items": tasks,
        "chunksize": 1,
        "seconds": seconds,
        "per_second": rate(tasks, seconds),
    }


def bench_latency(processes, samples, warmup):
    item = b"0" * 16
    timings = []
    with multiprocessing.Pool(processes) as pool:
        warm_up(pool, processes)
        for _ in range(warmup):
            pool.apply_async(identity, (item,)).get()
        clock = time.perf_counter
        for _ in range(samples):
            start = clock()
            pool.apply_async(identity, (item,)).get()
            timings.append((clock() - start) * 1e6)
    timings.sort()
    return {
        "scenario": SCENARIOS["latency"],
        "processes": processes,
        "payload": 16,
        "samples": samples,
        "warmup": warmup,
        "p50_us": percentile(timings, 0.50),
        "p90_us": percentile(timings, 0.90),
        "p99_us": percentile(timings, 0.99),
        "p999_us": percentile(timings, 0.999),
        "min_us": timings[0] if timings else 0.0,
        "max_us": timings[-1] if timings else 0.0,
    }


def bench_dispatch(processes, tasks):
    sleep_s = 0.001
    with multiprocessing.Pool(processes) as pool:
        warm_up(pool, processes)
        start = time.perf_counter()
        count = 0
        for _ in pool.imap_unordered(sleep_ms, range(tasks), chunksize=1):
            count += 1
        seconds = time.perf_counter() - start
    assert count == tasks
    ideal = tasks * sleep_s / processes
    return {
        "scenario": SCENARIOS["dispatch"],
        "method": "imap_unordered chunksize=1",
        "tasks": tasks,
        "processes": processes,
        "sleep_ms": 1,
        "seconds": seconds,
        "ideal_seconds": ideal,
        "efficiency": ideal / seconds if seconds > 0 else 0.0,
    }


def payload_tasks(size, tasks, budget_mib):
    cap = (budget_mib * 1024 * 1024) // size
    return max(1, min(tasks, cap))


def bench_payload(processes, tasks, budget_mib, sizes):
    results = []
    with multiprocessing.Pool(processes) as pool:
        warm_up(pool, processes)
        for size in sizes:
            count = payload_tasks(size, tasks, budget_mib)
            # Distinct objects with the same size (a shared object would be
            # pickled every time anyway, but keep it honest).
            items = [bytes([i % 256]) * size for i in range(count)]
            seconds = imap_run(pool, items)
            del items
            results.append({
                "scenario": SCENARIOS["payload"],
                "method": "imap_unordered chunksize=1",
                "processes": processes,
                "payload": size,
                "tasks": count,
                "seconds": seconds,
                "per_second": rate(count, seconds),
                "mb_per_second": rate(count * size, seconds) / 1e6,
            })
    return results


def human_rate(value):
    return f"{value:,.0f}/s"


def print_table(report):
    machine = report["machine"]
    print(f"pool_bench: Python {report['python']} multiprocessing.Pool "
          f"(start method {report['start_method']}), "
          f"{machine['cores']} cores, {machine['kernel']}")
    rows = []
    for r in report["results"]:
        name = r["scenario"]
        if name in (SCENARIOS["map"], SCENARIOS["imap"]):
            calls = f"{r['repeats']} calls of " if r.get("repeats", 1) > 1 else ""
            count = r.get("items_per_call", r["items"])
            rows.append((name, f"{r['processes']} procs, {calls}{count} x 16 B,"
                               f" chunksize {r['chunksize']}",
                         f"{r['seconds']:.3f} s", human_rate(r["per_second"])))
        elif name == SCENARIOS["latency"]:
            rows.append((name, f"{r['processes']} procs, {r['samples']} samples",
                         "", f"p50 {r['p50_us']:.0f} us  p90 {r['p90_us']:.0f} us  "
                             f"p99 {r['p99_us']:.0f} us  p99.9 {r['p999_us']:.0f} us"))
        elif name == SCENARIOS["dispatch"]:
            rows.append((name, f"{r['processes']} procs, {r['tasks']} x sleep 1 ms",
                         f"{r['seconds']:.3f} s",
                         f"efficiency {r['efficiency']:.3f} (ideal {r['ideal_seconds']:.3f} s)"))
        elif name == SCENARIOS["payload"]:
            rows.append((name, f"{r['processes']} procs, {r['tasks']} x {r['payload']} B",
                         f"{r['seconds']:.3f} s",
                         f"{human_rate(r['per_second'])}  {r['mb_per_second']:.1f} MB/s"))
    widths = [max(len(row[i]) for row in rows + [("scenario", "workload", "time", "result")])
              for i in range(3)]
    header = ("scenario", "workload", "time", "result")
    for row in [header] + rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="drover bench's workloads through multiprocessing.Pool")
    parser.add_argument("--processes", "-j", type=int, default=2,
                        help="pool processes, like drover's -j (default 2)")
    parser.add_argument("--tasks", type=int, default=20000,
                        help="items for the throughput scenarios (default 20000)")
    parser.add_argument("--samples", type=int, default=2000,
                        help="latency round trips (default 2000)")
    parser.add_argument("--warmup", type=int, default=100,
                        help="latency round trips before measuring (default 100)")
    parser.add_argument("--dispatch-tasks", type=int, default=2000,
                        help="sleep tasks in the dispatch scenario (default 2000)")
    parser.add_argument("--dispatch-processes", type=int, default=8,
                        help="processes in the dispatch scenario (default 8)")
    parser.add_argument("--items", type=int, default=None,
                        help="items of the map scenario, as drover bench's "
                             "chunked map (default: --tasks)")
    parser.add_argument("--map-min-seconds", type=float, default=0.25,
                        help="repeat the Pool.map call until this much time "
                             "has passed (default 0.25)")
    parser.add_argument("--payload-mb", "--payload-budget", dest="payload_budget",
                        type=int, default=256,
                        help="the most MiB of payloads per size, fewer tasks for "
                             "big payloads (default 256, as drover bench)")
    parser.add_argument("--payload-sizes", default=",".join(map(str, PAYLOAD_SIZES)),
                        help="comma-separated payload sizes in bytes")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated subset of: " + ",".join(SCENARIOS))
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    wanted = []
    for name in filter(None, (s.strip() for s in args.scenarios.split(","))):
        key = next((k for k, v in SCENARIOS.items() if name in (k, v)), None)
        if key is None:
            parser.error(f"unknown scenario {name!r}; known: {','.join(SCENARIOS)}")
        wanted.append(key)
    args.scenarios = wanted
    try:
        args.payload_sizes = [int(s) for s in args.payload_sizes.split(",") if s]
    except ValueError:
        parser.error("--payload-sizes takes comma-separated integers")
    if args.warmup < 0:
        parser.error("--warmup must not be negative")
    if args.items is not None and args.items < 1:
        parser.error("--items must be at least 1")
    for name in ("processes", "tasks", "samples", "dispatch_tasks",
                 "dispatch_processes", "payload_budget"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if any(s < 1 for s in args.payload_sizes):
        parser.error("payload sizes must be at least 1")
    return args


def main(argv):
    args = parse_args(argv)
    uname = platform.uname()
    report = {
        "tool": "pool_bench",
        "python": platform.python_version(),
        "executable": sys.executable,
        "start_method": multiprocessing.get_start_method(),
        "machine": {"cores": os.cpu_count(), "kernel": f"{uname.system} {uname.release}",
                    "host": uname.node},
        "settings": {"processes": args.processes, "tasks": args.tasks,
                     "samples": args.samples, "scenarios": args.scenarios},
        "results": [],
    }
    results = report["results"]
    for key in args.scenarios:
        if key == "map":
            results.append(bench_map(args.processes, args.items or args.tasks,
                                     args.map_min_seconds))
        elif key == "imap":
            results.append(bench_imap(args.processes, args.tasks))
        elif key == "latency":
            results.append(bench_latency(args.processes, args.samples, args.warmup))
        elif key == "dispatch":
            results.append(bench_dispatch(args.dispatch_processes, args.dispatch_tasks))
        elif key == "payload":
            results.extend(bench_payload(args.processes, args.tasks,
                                         args.payload_budget, args.payload_sizes))
    if args.json:
        json.dump(report, sys.stdout)
        sys.stdout.write("\n")
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
