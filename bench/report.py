#!/usr/bin/env python3
"""Turn hyperfine's JSON exports in bench/out into bench/RESULTS.md."""
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

out = sys.argv[1]


def load(name):
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        times = json.load(f)["results"][0]["times"]
    return times


def fmt(times):
    if not times:
        return "n/a"
    med = statistics.median(times)
    spread = (max(times) - min(times)) / 2
    if med < 1:
        return f"{med * 1000:.0f} ms ± {spread * 1000:.0f}"
    return f"{med:.2f} s ± {spread:.2f}"


def ratio(a, b):
    if not a or not b:
        return "n/a"
    return f"{statistics.median(a) / statistics.median(b):.2f}×"


def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


print("# berth benchmark results\n")
print(f"- date: {datetime.datetime.utcnow().isoformat(timespec='seconds')}Z")
print(f"- machine: {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}")
print(f"- engine: {cmd('docker', 'version', '--format', '{{.Server.Version}} (API {{.Server.APIVersion}})')}")
print(f"- docker-compose: {cmd('docker-compose', 'version', '--short')}")
print("- figures: median ± half the range over repeated runs (hyperfine); ratios of medians, same run\n")
print("Reproduce with `bench/run` (see bench/README.md).\n")

print("## 1. Cold apply (images present, nothing running)\n")
print("| services | berth | docker-compose | raw engine API (floor) | berth / raw | berth / compose |")
print("|---|---|---|---|---|---|")
for n in (20, 100):
    b, c, r = load(f"cold-berth-{n}"), load(f"cold-compose-{n}"), load(f"cold-raw-{n}")
    print(f"| {n} | {fmt(b)} | {fmt(c)} | {fmt(r)} | {ratio(b, r)} | {ratio(b, c)} |")
print("\nTargets: berth ≤ 1.2× the raw floor and ≤ 0.5× docker-compose.\n")

print("## 2. No-op apply (everything already as the file says)\n")
print("| services | berth | docker-compose | berth / compose |")
print("|---|---|---|---|")
for n in (20, 100):
    b, c = load(f"noop-berth-{n}"), load(f"noop-compose-{n}"),
    print(f"| {n} | {fmt(b)} | {fmt(c)} | {ratio(b, c)} |")
print("\nTarget: under 100 ms at 100 services.\n")

extra = os.path.join(out, "extra.md")
if os.path.exists(extra):
    with open(extra) as f:
        print(f.read())
