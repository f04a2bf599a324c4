#!/usr/bin/env bash
# bench/compare.sh - drover bench and multiprocessing.Pool, side by side, in one run.
#
#   bench/compare.sh            build if needed, run `drover bench --json` and
#                               bench/pool_bench.py --json with the same sizes,
#                               print both and the Drover / Pool ratios against
#                               the targets of issue 6
#   bench/compare.sh --write    the same, plus a sweep over -j 1,2,4, and
#                               regenerate BENCHMARKS.md and the charts
#                               bench/throughput_vs_payload.png and
#                               bench/throughput_vs_children.png (gnuplot)
#   bench/compare.sh --smoke    tiny sizes, writes nothing, exits 0 when both
#                               tools ran and printed valid JSON (no timing
#                               assertions; this is what CI runs)
#
# Options: -j N (children / processes, default 2), --tasks N (default 100000:
# runs of 20,000 tasks last 0.1-0.2 s, and Pool.imap_unordered(1) then swings
# between 75,000 and 120,000 tasks/s on the 2-core VM of BENCHMARKS.md),
# --samples N (default 2000), --repeats N (default 5: latency and dispatch,
# the figures that swing most from run to run, run N more times, the two
# tools in turn, and their targets are judged on the median of all runs),
# --build DIR (default build), --drover PATH (use this drover executable,
# build nothing). Environment:
# POOL_PYTHON (default /usr/bin/python3, Debian's interpreter, stdlib only).
# Installing gnuplot-nox for --write needs root or sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${POOL_PYTHON:-/usr/bin/python3}
BUILD=build
JOBS=2
TASKS=100000
SAMPLES=2000
ITEMS=2000000     # inputs of the chunked map (Drover) and of Pool.map
QUEUED=1000000    # tasks the broker holds in the memory scenario
MAP_LINES=10000000 # lines of the drover map process in the memory scenario
MODE=compare
DROVER=
SWEEP=(1 2 4)
REPEATS=5

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }
positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 takes a positive integer, not '$2'"; }

TASKS_SET=0 SAMPLES_SET=0
while [ $# -gt 0 ]; do
    case $1 in
        --smoke) MODE="smoke" ;;
        --write) MODE="write" ;;
        -j|--jobs) positive "$1" "${2:-}"; JOBS=$2; shift ;;
        --tasks) positive "$1" "${2:-}"; TASKS=$2; TASKS_SET=1; shift ;;
        --samples) positive "$1" "${2:-}"; SAMPLES=$2; SAMPLES_SET=1; shift ;;
        --repeats) [[ ${2:-} =~ ^[0-9]+$ ]] || die "--repeats takes a number, not '${2:-}'"
                   REPEATS=$2; shift ;;
        --build) [ -n "${2:-}" ] || die "--build takes a directory"; BUILD=$2; shift ;;
        --drover) [ -n "${2:-}" ] || die "--drover takes a path"; DROVER=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done
if [ "$MODE" = smoke ]; then
    [ $TASKS_SET = 1 ] || TASKS=200
    [ $SAMPLES_SET = 1 ] || SAMPLES=50
    ITEMS=3000 QUEUED=2000 MAP_LINES=3000 REPEATS=1
fi
# Smoke runs must not hang CI; full runs get more room.
LIMIT=$([ "$MODE" = smoke ] && echo 300 || echo 1800)

[ -x "$PY" ] || die "$PY not found (Debian's python3 package)"

# --- build ------------------------------------------------------------------
if [ -z "$DROVER" ]; then
    if [ ! -f "$BUILD/build.ninja" ]; then
        say "configuring $BUILD"
        meson setup "$BUILD" >/dev/null
    fi
    say "building $BUILD"
    ninja -C "$BUILD" >/dev/null
    DROVER=$BUILD/cli/drover
fi
[ -x "$DROVER" ] || die "$DROVER was not built"
"$DROVER" bench --help >/dev/null 2>&1 || die "$DROVER has no working 'bench' subcommand"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/drover-compare.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# busy: the share of CPU time not idle over one second, in percent. Other
# work on the machine skews every figure (latency most of all: a busy core
# wakes faster than an idle one), so a busy machine is reported.
busy() {
    "$PY" -c '
import time
def sample():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]
t0, i0 = sample(); time.sleep(1); t1, i1 = sample()
print(round(100 * (1 - (i1 - i0) / max(1, t1 - t0))))'
}
BUSY=$(busy)
if [ "$BUSY" -gt 10 ]; then
    say "warning: the machine is ${BUSY}% busy before the run; figures will be skewed"
fi

# run NAME COMMAND...: stdout to $WORK/NAME.json, stderr to $WORK/NAME.err,
# under a time limit; show the error output and fail if the command fails.
# Also writes to $WORK/NAME.foreign the CPU time that other processes of the
# machine used while it ran, in percent of all cores (the machine's non-idle
# time less the command's own, children included), and warns above 10 %.
run() {
    local name=$1; shift
    say "$name: $*"
    if ! "$PY" -c "$MEASURE" "$WORK/$name.foreign" timeout --kill-after=10 "$LIMIT" "$@" \
            >"$WORK/$name.json" 2>"$WORK/$name.err"; then
        tail -n 30 "$WORK/$name.err" >&2
        die "$name failed: $*"
    fi
    local foreign
    foreign=$(cat "$WORK/$name.foreign")
    if [ "$foreign" -gt 10 ]; then
        say "warning: other processes used ${foreign}% of the CPU during $name; its figures are skewed"
    fi
}
MEASURE='
import os, resource, subprocess, sys, time
def stat():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]
def own():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
t0, i0 = stat(); c0 = own(); w0 = time.monotonic()
rc = subprocess.call(sys.argv[2:])
t1, i1 = stat(); c1 = own(); w1 = time.monotonic()
busy = ((t1 - t0) - (i1 - i0)) / os.sysconf("SC_CLK_TCK")
foreign = max(0.0, busy - (c1 - c0)) / max(1e-9, (w1 - w0) * (os.cpu_count() or 1))
with open(sys.argv[1], "w") as f:
    f.write("%d\n" % round(100 * foreign))
sys.exit(rc)
'

common=(--tasks "$TASKS" --samples "$SAMPLES" --json)
# The same cap on the payload octets per size for both (drover bench's default
# is 256 MiB; a smoke run sends 4 MiB at most).
full=(--payload-mb "$([ "$MODE" = smoke ] && echo 4 || echo 256)" "${common[@]}")
run "drover-j$JOBS" "$DROVER" bench -j "$JOBS" --items "$ITEMS" --queued "$QUEUED" \
    --map-lines "$MAP_LINES" "${full[@]}"
run "pool-p$JOBS" "$PY" bench/pool_bench.py --processes "$JOBS" --items "$ITEMS" "${full[@]}"
# The ceiling again with as many credits per worker as a Drover node's
# automatic lookahead holds for tiny tasks (64 per child): the same flow
# as Drover's, where one credit per worker is that of a node without one.
run "ceiling64-j$JOBS" "$DROVER" bench -j "$JOBS" --scenarios ceiling --credits 64 \
    --messages "$([ "$MODE" = smoke ] && echo 2000 || echo 400000)" --json

for ((k = 1; k <= REPEATS; k++)); do
    run "drover-rep-$k" "$DROVER" bench -j "$JOBS" --scenarios latency,dispatch \
        --samples "$SAMPLES" --json
    run "pool-rep-$k" "$PY" bench/pool_bench.py --processes "$JOBS" \
        --scenarios latency,dispatch --samples "$SAMPLES" --json
done

if [ "$MODE" = write ]; then
    for j in "${SWEEP[@]}"; do
        [ "$j" = "$JOBS" ] && continue
        run "drover-j$j" "$DROVER" bench -j "$j" --scenarios throughput,chunked \
            --items "$ITEMS" "${common[@]}"
        run "pool-p$j" "$PY" bench/pool_bench.py --processes "$j" --scenarios map,imap \
            --items "$ITEMS" "${common[@]}"
    done
    if ! command -v gnuplot >/dev/null; then
        say "installing gnuplot-nox"
        sudo=()
        [ "$(id -u)" -ne 0 ] && sudo=(sudo)
        export DEBIAN_FRONTEND=noninteractive
        "${sudo[@]}" apt-get update -qq
        "${sudo[@]}" apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null
    fi
fi

# Facts about the build and machine that the JSON does not carry.
{
    echo "cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "memory=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "libzmq=$(pkg-config --modversion libzmq 2>/dev/null || echo unknown)"
    echo "buildtype=$(meson introspect --buildoptions "$BUILD" 2>/dev/null \
        | "$PY" -c 'import json,sys; print(next((o["value"] for o in json.load(sys.stdin) if o["name"] == "buildtype"), "unknown"))' \
        2>/dev/null || echo unknown)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "busy=$BUSY"
    echo "command=bench/compare.sh --write -j $JOBS --tasks $TASKS --samples $SAMPLES --repeats $REPEATS"
    echo "items=$ITEMS"
} >"$WORK/facts.txt"

"$PY" - "$MODE" "$WORK" "$JOBS" "${SWEEP[*]}" <<'PYEOF'
import json
import math
import os
import statistics
import sys

mode, work, jobs, sweep = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split()
sweep = [int(j) for j in sweep]


def load(name, tool):
    path = os.path.join(work, name + ".json")
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"compare.sh: {name}: no valid JSON ({e})")
    if not isinstance(doc, dict) or doc.get("tool") != tool:
        sys.exit(f"compare.sh: {name}: not {tool} output (tool={doc.get('tool')!r})")
    results = doc.get("results")
    if not isinstance(results, list) or not results or \
            not all(isinstance(r, dict) and "scenario" in r for r in results):
        sys.exit(f"compare.sh: {name}: 'results' is not a non-empty list of scenarios")
    return doc


drover = load(f"drover-j{jobs}", "drover bench")
ceiling64 = load(f"ceiling64-j{jobs}", "drover bench")
pool = load(f"pool-p{jobs}", "pool_bench")

def repeats(prefix, tool):
    names = sorted(n[:-len(".json")] for n in os.listdir(work)
                   if n.startswith(prefix) and n.endswith(".json"))
    return [load(n, tool) for n in names]


drover_runs = [drover] + repeats("drover-rep-", "drover bench")
pool_runs = [pool] + repeats("pool-rep-", "pool_bench")
facts = dict(line.rstrip("\n").split("=", 1)
             for line in open(os.path.join(work, "facts.txt")) if "=" in line)


def foreign(name):
    try:
        with open(os.path.join(work, name + ".foreign")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def foreign_text():
    names = sorted(n[:-len(".foreign")] for n in os.listdir(work) if n.endswith(".foreign"))
    return ", ".join(f"{n} {foreign(n)} %" for n in names)


# --- picking results -----------------------------------------------------------

def num(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) else None


def is_chunked(r):
    """A chunked-map result, however drover bench ends up naming it."""
    if "chunk" in str(r.get("scenario", "")) or r.get("scenario") == "map":
        return True
    if r.get("scenario") != "throughput":
        return False
    if r.get("chunked") is True:
        return True
    if any("chunk" in str(r.get(k, "")) for k in ("mode", "kind", "variant", "method")):
        return True
    return (num(r.get("chunksize")) or 1) > 1


def rate_of(r):
    if r is None:
        return None
    for key in ("items_per_second", "per_second"):
        if num(r.get(key)) is not None:
            return r[key]
    return None


def pick(results, scenario, **want):
    for r in results:
        if r.get("scenario") == scenario and all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def per_message(doc):
    rows = [r for r in doc["results"] if r.get("scenario") == "throughput" and not is_chunked(r)]
    for transport in ("ipc", "tcp", None):
        for r in rows:
            if transport is None or r.get("transport") == transport:
                return r
    return None


def chunked(doc):
    return next((r for r in doc["results"] if is_chunked(r)), None)


def ceiling(doc, pattern, transport, payload=16):
    for r in doc["results"]:
        if r.get("scenario") == "ceiling" and r.get("pattern") == pattern \
                and (transport is None or r.get("transport") == transport) \
                and r.get("payload", 16) == payload:
            return r
    return None


def fmt_rate(v):
    return "-" if v is None else f"{v:,.0f}/s"


def fmt_us(v):
    return "-" if num(v) is None else f"{v:,.0f} µs"


def fmt_num(v, digits=2):
    return "-" if num(v) is None else f"{v:.{digits}f}"


def ratio(a, b):
    return a / b if num(a) is not None and num(b) not in (None, 0) else None


def values(runs, scenario, key):
    """key of scenario in each run that has it (the main run and the repeats)."""
    out = []
    for doc in runs:
        r = pick(doc["results"], scenario)
        v = num(r.get(key)) if r else None
        if v is not None:
            out.append(v)
    return out


def median(vs):
    return statistics.median(vs) if vs else None


def fmt_median(vs, fmt):
    """'244 µs', or '244 µs (median of 6 runs: 132 µs to 280 µs)'."""
    if not vs:
        return "-"
    if len(vs) == 1:
        return fmt(vs[0])
    return f"{fmt(median(vs))} (median of {len(vs)} runs: {fmt(min(vs))} to {fmt(max(vs))})"


# --- the targets of issue 6 ----------------------------------------------------------

def targets():
    rows = []  # (target, drover figure, reference figure, ratio/value, goal, verdict)

    def verdict(value, ok):
        return "n/a" if value is None else ("MET" if ok(value) else "MISSED")

    ch = chunked(drover)
    pmap = pick(pool["results"], "map_default_chunksize")
    if ch is None:
        rows.append(("chunked map vs Pool.map (default chunksize)", "n/a: no chunking yet",
                     fmt_rate(rate_of(pmap)), "n/a", ">= 2.00x", "n/a"))
    else:
        r = ratio(rate_of(ch), rate_of(pmap))
        rows.append(("chunked map vs Pool.map (default chunksize)", fmt_rate(rate_of(ch)),
                     fmt_rate(rate_of(pmap)), "-" if r is None else f"{r:.2f}x", ">= 2.00x",
                     verdict(r, lambda x: x >= 2.0)))

    pm = per_message(drover)
    imap = pick(pool["results"], "imap_unordered_chunksize_1")
    r = ratio(rate_of(pm), rate_of(imap))
    rows.append(("one task per message vs Pool.imap_unordered(chunksize=1)",
                 fmt_rate(rate_of(pm)), fmt_rate(rate_of(imap)),
                 "-" if r is None else f"{r:.2f}x", ">= 2.00x", verdict(r, lambda x: x >= 2.0)))

    transport = pm.get("transport") if pm else None
    ceil = ceiling(drover, "router-credit", transport)
    r = ratio(rate_of(pm), rate_of(ceil))
    if r is None and pm is not None:
        r = num(pm.get("ceiling_fraction"))
    rows.append((f"one task per message vs ZeroMQ router-credit ceiling ({transport or '?'})",
                 fmt_rate(rate_of(pm)), fmt_rate(rate_of(ceil)),
                 "-" if r is None else f"{r:.2f}", ">= 0.40", verdict(r, lambda x: x >= 0.40)))

    ceil64 = ceiling(ceiling64, "router-credit", transport)
    r = ratio(rate_of(pm), rate_of(ceil64))
    rows.append((f"one task per message vs the same ceiling with 64 credits per worker "
                 f"(the lookahead of a Drover node for tiny tasks; {transport or '?'})",
                 fmt_rate(rate_of(pm)), fmt_rate(rate_of(ceil64)),
                 "-" if r is None else f"{r:.2f}", ">= 0.40", verdict(r, lambda x: x >= 0.40)))

    #  Latency and dispatch swing most from run to run: judged on the
    #  median of the main run and the repeats
    p50s = values(drover_runs, "latency", "p50_us")
    pool_p50s = values(pool_runs, "apply_async_latency", "p50_us")
    r = ratio(median(p50s), median(pool_p50s))
    rows.append(("latency p50 vs Pool.apply_async p50", fmt_median(p50s, fmt_us),
                 fmt_median(pool_p50s, fmt_us), "-" if r is None else f"{r:.2f}x",
                 "<= 1.00x", verdict(r, lambda x: x <= 1.0)))
    p99s = values(drover_runs, "latency", "p99_us")
    p99 = median(p99s)
    rows.append(("latency p99", fmt_median(p99s, fmt_us),
                 fmt_median(values(pool_runs, "apply_async_latency", "p99_us"), fmt_us),
                 fmt_us(p99), "< 1,000 µs", verdict(p99, lambda x: x < 1000)))

    effs = values(drover_runs, "dispatch", "efficiency")
    eff = median(effs)
    three = lambda v: fmt_num(v, 3)
    rows.append(("dispatch efficiency (2,000 x 1 ms on 8)", fmt_median(effs, three),
                 fmt_median(values(pool_runs, "dispatch", "efficiency"), three),
                 three(eff), ">= 0.95", verdict(eff, lambda x: x >= 0.95)))
    floors = [d.get("sleep_ms", 1) * 1000.0 / d["sleep_us"] for d in
              (pick(doc["results"], "dispatch") for doc in drover_runs)
              if d and num(d.get("sleep_us"))]
    if eff is not None and floors:
        floor = median(floors)
        sleep_us = 1000.0 / floor
        rows.append(("dispatch efficiency / what the kernel's timers allow "
                     f"(a 1 ms sleep takes {sleep_us:,.0f} µs here: at most {floor:.3f})",
                     three(eff / floor), "-", three(eff / floor), "(context)", "-"))
    broker = pick(drover["results"], "memory", what="broker")
    octets = num(broker.get("octets_per_task")) if broker else None
    rows.append((f"memory: broker holding {broker.get('queued_tasks', 0) if broker else 0:,} "
                 "queued 16-byte tasks",
                 "-" if octets is None else f"{octets:,.0f} B/task", "-",
                 "-" if octets is None else f"{octets:,.0f} B", "<= 256 B/task",
                 verdict(octets, lambda x: x <= 256)))
    mapped = pick(drover["results"], "memory", what="map")
    peak = num(mapped.get("peak_rss_kb")) if mapped else None
    peak_mb = None if peak is None else peak * 1024 / 1e6
    rows.append((f"memory: drover map -j N --chunksize auto (its broker and sink inside) over "
                 f"{mapped.get('lines', 0) if mapped else 0:,} lines",
                 "-" if peak_mb is None else f"{peak_mb:,.1f} MB peak RSS", "-",
                 "-" if peak_mb is None else f"{peak_mb:,.1f} MB", "< 100 MB",
                 verdict(peak_mb, lambda x: x < 100)))
    return rows


def text_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    out = ["  ".join(f"{str(c):<{w}}" for c, w in zip(header, widths)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(f"{str(c):<{w}}" for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(out)


def md_table(header, rows, align=None):
    align = align or ["---"] * len(header)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


TARGET_HEADER = ("target", "Drover", "reference", "ratio / value", "goal", "verdict")


# --- side-by-side figures -----------------------------------------------------------

def describe(r):
    """One row per result: (source, scenario, settings, figure)."""
    s = r.get("scenario")
    skip = {"scenario", "seconds", "per_second", "items_per_second", "mb_per_second",
            "p50_us", "p90_us", "p99_us", "p999_us", "min_us", "max_us", "efficiency",
            "ideal_seconds", "ceiling_fraction", "method", "first_call_seconds",
            "first_call_per_second", "min_us", "max_us"}
    settings = ", ".join(f"{k} {v}" for k, v in r.items()
                         if k not in skip and not isinstance(v, (dict, list)))
    if s == "memory":
        if r.get("what") == "broker":
            fig = f"{fmt_num(r.get('octets_per_task'), 0)} B per queued task"
        else:
            fig = f"peak RSS {fmt_num((num(r.get('peak_rss_kb')) or 0) / 1024, 1)} MiB, " \
                  f"{fmt_rate(rate_of(r))}"
        return s, settings, fig
    if "p50_us" in r:
        fig = " / ".join(fmt_us(r.get(k)) for k in ("p50_us", "p90_us", "p99_us", "p999_us"))
        fig = "p50/p90/p99/p99.9 " + fig
    elif "efficiency" in r:
        fig = f"efficiency {fmt_num(r.get('efficiency'), 3)} ({fmt_num(r.get('seconds'), 3)} s)"
    else:
        fig = fmt_rate(rate_of(r))
        if num(r.get("mb_per_second")) is not None:
            fig += f", {r['mb_per_second']:.1f} MB/s"
        if num(r.get("ceiling_fraction")) is not None:
            fig += f", {r['ceiling_fraction']:.2f} of ceiling"
    return s, settings, fig


def side_by_side():
    rows = []
    for r in drover["results"]:
        src = "ZeroMQ" if r.get("scenario") == "ceiling" else "Drover"
        rows.append((src,) + describe(r))
    for r in pool["results"]:
        rows.append(("Pool",) + describe(r))
    return rows


def print_summary():
    dm, pm = drover.get("machine", {}), pool.get("machine", {})
    print(f"\nmachine: {dm.get('cores', pm.get('cores'))} cores, {facts.get('cpu', '?')}, "
          f"{dm.get('kernel', pool['machine'].get('kernel', '?'))}")
    print(f"drover bench {drover.get('version', '?')} settings: "
          f"{json.dumps(drover.get('settings', {}))}")
    print(f"pool_bench: Python {pool.get('python')} ({pool.get('executable', '?')}), "
          f"{pool['settings']['processes']} processes")
    print(f"CPU used by other processes during each run (of all cores): {foreign_text()}\n")
    print(text_table(("source", "scenario", "settings", "figure"), side_by_side()))
    print("\nDrover / Pool and ZeroMQ ratios against the targets of issue 6 "
          "(local mode, in-memory):\n")
    print(text_table(TARGET_HEADER, targets()))


if mode == "smoke":
    print("smoke run: tiny sizes, so the figures and verdicts below mean nothing")
    print_summary()
    print(f"\nsmoke: both tools ran and printed valid JSON "
          f"(drover bench: {len(drover['results'])} results, "
          f"pool_bench: {len(pool['results'])} results); timings not asserted")
    sys.exit(0)

print_summary()
if mode != "write":
    sys.exit(0)

# --- --write: BENCHMARKS.md and the charts ----------------------------------------

sweep_docs = {}
for j in sweep:
    sweep_docs[j] = (load(f"drover-j{j}", "drover bench"), load(f"pool-p{j}", "pool_bench"))

# Throughput against payload size.
payload_rows = {}
for r in drover["results"]:
    if r.get("scenario") == "payload" and num(r.get("payload")):
        payload_rows.setdefault(r["payload"], {})["drover"] = rate_of(r)
pm16 = per_message(drover)
transport = pm16.get("transport") if pm16 else None
if pm16 is not None and 16 not in payload_rows:
    payload_rows.setdefault(16, {})["drover"] = rate_of(pm16)
for r in drover["results"]:
    if r.get("scenario") == "ceiling" and r.get("pattern") == "router-credit" \
            and (transport is None or r.get("transport") == transport):
        payload_rows.setdefault(r.get("payload", 16), {})["ceiling"] = rate_of(r)
for r in pool["results"]:
    if r.get("scenario") == "payload":
        payload_rows.setdefault(r["payload"], {})["pool"] = rate_of(r)

children_rows = []
for j in sweep:
    d, p = sweep_docs[j]
    children_rows.append((j, rate_of(per_message(d)), rate_of(chunked(d)),
                          rate_of(pick(p["results"], "imap_unordered_chunksize_1")),
                          rate_of(pick(p["results"], "map_default_chunksize"))))


def dat(v):
    return "NaN" if v is None else f"{v:.3f}"


with open(os.path.join(work, "payload.dat"), "w") as f:
    f.write("# payload drover zmq_ceiling pool\n")
    for size in sorted(payload_rows):
        row = payload_rows[size]
        f.write(f"{size} {dat(row.get('drover'))} {dat(row.get('ceiling'))} "
                f"{dat(row.get('pool'))}\n")
with open(os.path.join(work, "children.dat"), "w") as f:
    f.write("# children drover_per_message drover_chunked pool_imap1 pool_map\n")
    for row in children_rows:
        f.write(" ".join([str(row[0])] + [dat(v) for v in row[1:]]) + "\n")

have_chunked = any(row[2] is not None for row in children_rows)
style = ("set terminal pngcairo size 900,560 font 'DejaVu Sans,10'\n"
         "set grid\nset key below\nset logscale y 10\n"
         "set format y '%.0s%c'\n")
with open(os.path.join(work, "charts.gp"), "w") as f:
    f.write(style)
    f.write(f"set output '{work}/throughput_vs_payload.png'\n"
            f"set title 'Throughput against payload size ({jobs} children / processes, echo)'\n"
            f"set xlabel 'payload (bytes, log scale)'\nset ylabel 'tasks or messages per second'\n"
            f"set logscale x 2\n"
            f"set xtics ('16 B' 16, '256 B' 256, '1 KiB' 1024, '16 KiB' 16384, "
            f"'64 KiB' 65536, '1 MiB' 1048576)\n"
            f"plot '{work}/payload.dat' using 1:2 with linespoints lw 2 pt 7 title 'Drover', \\\n"
            f"     '' using 1:3 with linespoints lw 2 pt 5 dt 2 "
            f"title 'ZeroMQ router-credit ceiling', \\\n"
            f"     '' using 1:4 with linespoints lw 2 pt 9 "
            f"title 'Pool.imap\\_unordered chunksize 1'\n")
    f.write("unset logscale x\nset xtics (" +
            ", ".join(f"'{j}' {j}" for j in sweep) + ")\n")
    f.write(f"set output '{work}/throughput_vs_children.png'\n"
            f"set title 'Throughput of 16-byte echo tasks against children / processes'\n"
            f"set xlabel 'children (drover -j) / Pool processes'\n"
            f"set ylabel 'items per second'\nset xrange [0.8:{max(sweep) * 1.1}]\n"
            f"plot '{work}/children.dat' using 1:2 with linespoints lw 2 pt 7 "
            f"title 'Drover, one task per message', \\\n")
    if have_chunked:
        f.write("     '' using 1:3 with linespoints lw 2 pt 7 dt 2 "
                "title 'Drover, chunked map', \\\n")
    f.write("     '' using 1:4 with linespoints lw 2 pt 9 "
            "title 'Pool.imap\\_unordered chunksize 1', \\\n"
            "     '' using 1:5 with linespoints lw 2 pt 9 dt 2 "
            "title 'Pool.map default chunksize'\n")

# BENCHMARKS.md
dm = drover.get("machine", {})
lat = pick(drover["results"], "latency") or {}
plat = pick(pool["results"], "apply_async_latency") or {}
dis = pick(drover["results"], "dispatch") or {}
pdis = pick(pool["results"], "dispatch") or {}

thr_rows = []
for r in drover["results"]:
    if r.get("scenario") == "throughput":
        thr_rows.append(("Drover, one task per message", r.get("transport", "-"),
                         fmt_rate(rate_of(r)), fmt_num(r.get("ceiling_fraction"))))
ch = chunked(drover)
if ch:
    thr_rows.append((f"Drover, chunked map (--chunksize {ch.get('chunksize')}, "
                     f"{ch.get('items', 0):,} items)", "ipc", fmt_rate(rate_of(ch)), "-"))
for r in drover["results"]:
    if r.get("scenario") == "ceiling" and r.get("payload", 16) == 16:
        thr_rows.append((f"plain ZeroMQ, {r.get('pattern')}"
                         + (", 1 credit per worker" if r.get("pattern") == "router-credit" else ""),
                         r.get("transport", "-"), fmt_rate(rate_of(r)),
                         "(the reference)" if r.get("pattern") == "router-credit" else "-"))
for r in ceiling64["results"]:
    if r.get("scenario") == "ceiling" and r.get("pattern") == "router-credit" \
            and r.get("payload", 16) == 16:
        thr_rows.append(("plain ZeroMQ, router-credit, 64 credits per worker",
                         r.get("transport", "-"), fmt_rate(rate_of(r)), "-"))
for name, label in (("map_default_chunksize", "Pool.map (default chunksize {})"),
                    ("imap_unordered_chunksize_1", "Pool.imap_unordered (chunksize {})")):
    r = pick(pool["results"], name)
    if r:
        thr_rows.append((label.format(r.get("chunksize")), "pipes",
                         fmt_rate(rate_of(r)), "-"))

lat_rows = [("Drover", fmt_us(lat.get("p50_us")), fmt_us(lat.get("p90_us")),
             fmt_us(lat.get("p99_us")), fmt_us(lat.get("p999_us")), lat.get("samples", "-")),
            ("Pool.apply_async().get()", fmt_us(plat.get("p50_us")), fmt_us(plat.get("p90_us")),
             fmt_us(plat.get("p99_us")), fmt_us(plat.get("p999_us")), plat.get("samples", "-"))]
floor = (dis.get("sleep_ms", 1) * 1000.0 / dis["sleep_us"]) if num(dis.get("sleep_us")) else None
dis_rows = [("Drover", dis.get("tasks", "-"), dis.get("children", "-"),
             fmt_num(dis.get("seconds"), 3), fmt_num(dis.get("ideal_seconds"), 3),
             fmt_num(dis.get("efficiency"), 3)),
            (f"the floor: a 1 ms sleep takes {fmt_num(dis.get('sleep_us'), 0)} µs here",
             "-", "-", "-", "-", fmt_num(floor, 3)),
            ("Pool.imap_unordered, chunksize 1", pdis.get("tasks", "-"),
             pdis.get("processes", "-"), fmt_num(pdis.get("seconds"), 3),
             fmt_num(pdis.get("ideal_seconds"), 3), fmt_num(pdis.get("efficiency"), 3))]


def runs_text(what, scenario, pool_scenario, key, fmt):
    """The figure of every run, main and repeats, for noisy scenarios."""
    mine = values(drover_runs, scenario, key)
    theirs = values(pool_runs, pool_scenario, key)
    if len(mine) < 2:
        return ""
    return (f"\n\nThe {len(mine)} runs of this one (the table above first, then the "
            f"repeats, the two tools in turn), {what}: Drover "
            + ", ".join(fmt(v) for v in mine) + f" (median {fmt(median(mine))}); Pool "
            + ", ".join(fmt(v) for v in theirs) + f" (median {fmt(median(theirs))}).")


def size_name(n):
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div} {unit}"
    return f"{n} B"


pay_rows = []
for size in sorted(payload_rows):
    row = payload_rows[size]
    r = ratio(row.get("drover"), row.get("pool"))
    pay_rows.append((size_name(size), fmt_rate(row.get("drover")),
                     fmt_rate(row.get("ceiling")), fmt_rate(row.get("pool")),
                     "-" if r is None else f"{r:.2f}x"))
dur_rows = [(r.get("fsync", "-"), r.get("tasks", "-"), fmt_rate(rate_of(r)))
            for r in drover["results"] if r.get("scenario") == "durable"]
mem_rows = []
for r in drover["results"]:
    if r.get("scenario") == "memory" and r.get("what") == "broker":
        mem_rows.append((f"broker holding {r.get('queued_tasks', 0):,} queued 16-byte tasks",
                         f"{fmt_num((num(r.get('rss_growth_kb')) or 0) / 1024, 1)} MiB",
                         f"{fmt_num(r.get('octets_per_task'), 0)} B per task"))
    elif r.get("scenario") == "memory":
        mem_rows.append((f"drover map -j {jobs} --chunksize auto (its broker and sink inside) over {r.get('lines', 0):,} lines",
                         f"{fmt_num((num(r.get('peak_rss_kb')) or 0) / 1024, 1)} MiB peak",
                         f"{fmt_rate(rate_of(r))} lines"))
child_md = [(j, fmt_rate(a), fmt_rate(b) if have_chunked else "n/a", fmt_rate(c), fmt_rate(d),
             "-" if ratio(a, c) is None else f"{ratio(a, c):.2f}x")
            for j, a, b, c, d in children_rows]

settings = drover.get("settings", {})
md = f"""# Drover benchmarks

Generated by `{facts.get('command')}` on {facts.get('date')}.
Every figure below comes from that one run on one machine; compare the
ratios, not the absolute numbers (shared machines drift from run to run).

## Method

* **Drover**: `drover bench -j {jobs} --json` (version {drover.get('version', '?')}) on a
  private local cluster as `drover map -j {jobs}` runs one: the broker and its embedded
  sink as a thread of the measuring process, reached over inproc, and one node process
  with {jobs} children, reached over ipc sockets in a temporary directory; in-memory
  unless a row says otherwise (durable rows, and the broker's memory, run the broker as
  a process of its own). Settings:
  `{json.dumps(settings)}`. Tasks are `echo` with 16-byte payloads unless stated;
  each task has its own id, lease and result, except in the chunked map, where
  {facts.get('items', '?')} inputs go through `drover_map` with automatic chunks (as
  `drover map --chunksize auto`), as many inputs per task as make about 10 ms of work.
* **Plain ZeroMQ** (the ceiling): the same message flow through bare ZeroMQ sockets with
  no Drover logic, measured by `drover bench` itself: a PUSH/PULL pipeline and a
  credit-based ROUTER load balancer over the same transport.
* **Pool**: `bench/pool_bench.py` with Debian's `/usr/bin/python3` (Python
  {pool.get('python')}, start method `{pool.get('start_method')}`) and
  `multiprocessing.Pool({jobs})`, the worker function returning its argument:
  `map` with the default chunksize over {facts.get('items', '?')} items (the call is
  repeated until 0.25 s have passed; the first call alone is in the raw JSON),
  `imap_unordered` with chunksize 1,
  `apply_async(...).get()` one at a time for latency, the sleep workload
  (2,000 x `time.sleep(0.001)`) on 8 processes through `imap_unordered` with
  chunksize 1, and payloads of 16 B to 1 MiB through `imap_unordered` with chunksize 1.
  Pools are started and warmed up before any clock starts.
* The two tools run one after the other, never at the same time, with the same
  `--tasks` and `--samples`. Latency percentiles are nearest-rank over the samples,
  after a warm-up.
* Drover is built with meson buildtype `{facts.get('buildtype')}`.
* Other work on the machine skews every figure (latency most: a busy core
  wakes faster than an idle one). The machine was {facts.get('busy', '?')} % busy just
  before the run; during each run, processes other than the one measured used
  (in percent of all cores): {foreign_text()}.

## Machine

| | |
|---|---|
| CPU | {facts.get('cpu', '?')} |
| cores | {dm.get('cores', pool['machine'].get('cores'))} |
| memory | {facts.get('memory', '?')} |
| kernel | {dm.get('kernel', pool['machine'].get('kernel'))} |
| libzmq | {facts.get('libzmq')} |
| Python | {pool.get('python')} |

## Against the targets of issue 6

Local mode, {jobs} children, in-memory. Ratios are Drover / reference.

{md_table(TARGET_HEADER, targets())}

## Throughput, 16-byte tasks

{md_table(("what", "transport", "per second", "fraction of ZeroMQ ceiling"), thr_rows)}

## Latency, one task at a time (submit to result at the client)

{md_table(("what", "p50", "p90", "p99", "p99.9", "samples"), lat_rows)}{runs_text("p50", "latency", "apply_async_latency", "p50_us", fmt_us)}

## Dispatch efficiency (2,000 tasks of 1 ms)

{md_table(("what", "tasks", "children / processes", "seconds", "ideal seconds", "efficiency"),
          dis_rows)}{runs_text("efficiency", "dispatch", "dispatch", "efficiency", lambda v: fmt_num(v, 3))}

## Throughput against payload size

{md_table(("payload", "Drover", "ZeroMQ router-credit ceiling", "Pool.imap_unordered(1)",
           "Drover / Pool"), pay_rows)}

![throughput against payload size](bench/throughput_vs_payload.png)

## Throughput against number of children

{md_table(("children / processes", "Drover, one task per message", "Drover, chunked map",
           "Pool.imap_unordered(1)", "Pool.map", "Drover / imap_unordered"), child_md)}

![throughput against children](bench/throughput_vs_children.png)
"""
if mem_rows:
    md += f"""
## Memory

{md_table(("what", "resident memory", "per unit"), mem_rows)}
"""
if dur_rows:
    md += f"""
## Durable vs in-memory

{md_table(("fsync", "tasks", "per second"), dur_rows)}
"""
md += f"""
## Regenerating

```sh
bench/compare.sh --write   # builds if needed, runs both tools, rewrites this file and the charts
bench/compare.sh           # the same comparison, printed only
bench/compare.sh --smoke   # tiny sizes, checks both tools run (what CI runs)
drover bench --help        # the Drover side alone
/usr/bin/python3 bench/pool_bench.py --help   # the Pool side alone
```

The charts need gnuplot (Debian package `gnuplot-nox`, installed by `--write` when missing).

<details><summary>Raw JSON of this run</summary>

```json
{json.dumps(drover)}
{json.dumps(pool)}
```
</details>
"""
with open(os.path.join(work, "BENCHMARKS.md"), "w") as f:
    f.write(md)
PYEOF

if [ "$MODE" = write ]; then
    say "drawing bench/throughput_vs_payload.png and bench/throughput_vs_children.png"
    gnuplot "$WORK/charts.gp"
    mv "$WORK/throughput_vs_payload.png" "$WORK/throughput_vs_children.png" bench/
    mv "$WORK/BENCHMARKS.md" BENCHMARKS.md
    say "wrote BENCHMARKS.md"
fi
