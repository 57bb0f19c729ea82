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
    try:
        with open(path) as f:
            return json.load(f)["results"][0]["times"]
    except (ValueError, KeyError, IndexError):
        return None  # an interrupted run


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


def verdict(ok):
    return "met" if ok else "**missed**"


def cmd(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


print("# berth benchmark results\n")
print(f"- report written: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}")
print(f"- machine: {platform.machine()}, {os.cpu_count()} cores, kernel {platform.release()}")
print(f"- engine: {cmd('docker', 'version', '--format', '{{.Server.Version}} (API {{.Server.APIVersion}})')}")
print(f"- docker-compose: {cmd('docker-compose', 'version', '--short')}")
stamps = []
for sec in ("apply", "recover", "footprint", "ssh", "backup", "reliability", "swarm"):
    path = os.path.join(out, f"ran-{sec}.txt")
    if os.path.exists(path):
        with open(path) as f:
            stamps.append(f"{sec} {f.read().strip()}")
if stamps:
    print(f"- sections started (UTC): {', '.join(stamps)}; each section measures berth and its peers together")
print("- figures: median ± half the range over repeated runs (hyperfine); ratios of medians, same run\n")
print("Reproduce with `bench/run` (see bench/README.md).\n")

print("## 1. Cold apply (images present, nothing running)\n")
print("| services | berth | docker-compose | raw engine API (floor) | berth / raw | berth / compose |")
print("|---|---|---|---|---|---|")
for n in (20, 100):
    b, c, r = load(f"cold-berth-{n}"), load(f"cold-compose-{n}"), load(f"cold-raw-{n}")
    print(f"| {n} | {fmt(b)} | {fmt(c)} | {fmt(r)} | {ratio(b, r)} | {ratio(b, c)} |")
print("\nTargets: berth ≤ 1.2× the raw floor and ≤ 0.5× docker-compose.\n")
for n in (20, 100):
    b, c, r = load(f"cold-berth-{n}"), load(f"cold-compose-{n}"), load(f"cold-raw-{n}")
    if b and r and c:
        mb, mc, mr = (statistics.median(x) for x in (b, c, r))
        print(f"- {n} services: floor {verdict(mb <= 1.2 * mr)}, half of docker-compose {verdict(mb <= 0.5 * mc)} (the floor itself is {mr / mc:.2f}× docker-compose)")
print()

print("## 2. No-op apply (everything already as the file says)\n")
print("| services | berth | docker-compose | berth / compose |")
print("|---|---|---|---|")
for n in (20, 100):
    b, c = load(f"noop-berth-{n}"), load(f"noop-compose-{n}")
    print(f"| {n} | {fmt(b)} | {fmt(c)} | {ratio(b, c)} |")
b100 = load("noop-berth-100")
print(f"\nTarget: under 100 ms at 100 services" + (f": {verdict(statistics.median(b100) < 0.1)}.\n" if b100 else ".\n"))


def load_json(name):
    path = os.path.join(out, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def pct(samples, p):
    """Nearest-rank percentile."""
    s = sorted(samples)
    k = max(0, min(len(s) - 1, -(-p * len(s) // 100) - 1))
    return s[int(k)]


print("## 3. Recovery: container killed → a fresh one running\n")
print("The container's main process is killed with SIGKILL from the host (a crash, not a")
print("`docker stop`); the figure runs to the engine's `start` event of the container that")
print("replaces it. Every killed container had run for over 10 s, so each supervisor treats")
print("it as a one-off crash, not a crash loop.\n")
print("| supervisor | p50 | p95 | min | max | samples | p50 / Docker's |")
print("|---|---|---|---|---|---|---|")
rec = {m: load_json(f"recover-{m}") for m in ("up", "systemd", "docker")}
base = rec["docker"] and rec["docker"]["samples_ms"]
names = {"up": "`berth up`", "systemd": "systemd units (`berth supervise`)", "docker": "Docker `restart: always` (peer)"}
for m in ("up", "systemd", "docker"):
    r = rec[m]
    if not r or not r["samples_ms"]:
        print(f"| {names[m]} | n/a | n/a | n/a | n/a | 0 | n/a |")
        continue
    x = r["samples_ms"]
    rel = f"{pct(x, 50) / pct(base, 50):.2f}×" if base else "n/a"
    print(f"| {names[m]} | {pct(x, 50):.0f} ms | {pct(x, 95):.0f} ms | {min(x):.0f} ms | {max(x):.0f} ms | {len(x)} | {rel} |")
for m in ("up", "systemd"):
    r = rec[m]
    if r and r["samples_ms"]:
        print(f"\nTarget p50 under 500 ms, {names[m]}: {verdict(pct(r['samples_ms'], 50) < 500)}.", end="")
print("\n")

print("## 4. Footprint\n")
print("| process | load | peak RSS (VmHWM) | RSS then | threads |")
print("|---|---|---|---|---|")
f = load_json("footprint-up")
if f:
    print(f"| `berth up` | {f['instances']} instances running (all up after {f['all_running_s']:.1f} s) | {f['vm_hwm_kb'] / 1024:.1f} MB | {f['vm_rss_kb'] / 1024:.1f} MB | {f['threads']} |")
g = load_json("footprint-ssh")
if g:
    print(f"| `berth ssh-gateway` | {g['sessions']} SSH sessions open at once | {g['vm_hwm_kb'] / 1024:.1f} MB | {g['vm_rss_kb'] / 1024:.1f} MB | {g['threads']} |")
if f:
    print(f"\nTarget under 30 MB for the supervisor: {verdict(f['vm_hwm_kb'] < 30 * 1024)}.")
print()

print("## 5. SSH\n")
print("| what | `ssh svc@host` through berth | `docker exec` (peer) | berth / docker exec |")
print("|---|---|---|---|")
bt, dt = load("ssh-true-berth"), load("ssh-true-docker")
print(f"| run `true` (round trip) | {fmt(bt)} | {fmt(dt)} | {ratio(bt, dt)} |")
bs, ds = load("ssh-stream-berth"), load("ssh-stream-docker")


def mbps(t):
    return f"{100 / statistics.median(t):.0f} MB/s" if t else "n/a"


print(f"| 100 MB on stdin | {fmt(bs)} ({mbps(bs)}) | {fmt(ds)} ({mbps(ds)}) | {ratio(bs, ds)} |")
if bt and dt and bs and ds:
    rt_ok = statistics.median(bt) <= 1.5 * statistics.median(dt)
    st_ok = statistics.median(bs) <= 1.5 * statistics.median(ds)
    print(f"\nTarget within 1.5× of `docker exec`: round trip {verdict(rt_ok)}, 100 MB stream {verdict(st_ok)}.")
print()

print("## 6. Backup and restore (`bench/backup.sh`)\n")
frag = os.path.join(out, "backup.md")
if os.path.exists(frag):
    with open(frag) as f:
        print(f.read())
    bb, tc = load("backup-berth-backup"), load("backup-tar-c")
    br, tx = load("backup-berth-restore"), load("backup-tar-x")
    if bb and tc and br and tx:
        # MB/s ratio = inverse time ratio (same bytes).
        b_ok = statistics.median(tc) / statistics.median(bb) >= 0.8
        r_ok = statistics.median(tx) / statistics.median(br) >= 0.8
        print(f"Target at least 80 % of `tar`: backup {verdict(b_ok)}, restore {verdict(r_ok)}.\n")
else:
    print("not measured in this run\n")

print("## 7. Reliability suite (long form)\n")
rel = os.path.join(out, "reliability.txt")
if os.path.exists(rel):
    with open(rel) as f:
        text = f.read().strip()
    if text.startswith("FAILED"):
        print("**Divergence** (the run stopped at the first one):\n")
        print("```\n" + text[len("FAILED"):].strip() + "\n```\n")
    else:
        print("Random operations and injected faults against one deployment, the engine checked")
        print("against the model and every volume's sentinel read back after every step")
        print("(`tests/testsuite/reliability.rs`):\n")
        print("```\n" + text + "\n```\n")
else:
    print("not run in this run\n")

print("## 8. Swarm: berth's swarm target beside `docker stack deploy`\n")
print("A three-node cluster (one engine per node in its own network namespace, the test")
print("suite's harness), stateless services each publishing a host-mode port, measured to")
print("convergence: berth's apply waits for every task itself; after `docker stack deploy`")
print("returns, the figure runs until `docker service ls` shows every replica running.")
print("berth and the stack take turns within each repetition (`berth-bench swarm`).\n")


def samples(name):
    d = load_json(name)
    return d.get("samples_s") if d else None


print("| services | cold: berth | cold: stack deploy | berth / stack | no-op: berth | no-op: stack deploy | berth / stack |")
print("|---|---|---|---|---|---|---|")
any_swarm = False
for n in (20, 100):
    cb, cs = samples(f"swarm-cold-berth-{n}"), samples(f"swarm-cold-stack-{n}")
    nb, ns = samples(f"swarm-noop-berth-{n}"), samples(f"swarm-noop-stack-{n}")
    if cb or cs:
        any_swarm = True
        print(f"| {n} | {fmt(cb)} | {fmt(cs)} | {ratio(cb, cs)} | {fmt(nb)} | {fmt(ns)} | {ratio(nb, ns)} |")
if not any_swarm:
    print("| – | not measured in this run | | | | | |")
roll = load_json("swarm-rolling")
if roll:
    print("\nRolling update of a stateless web service (an environment change), a client on the")
    print("service's overlay network asking for its page by name every 50 ms from before the")
    print("update until 2 s after it converged:\n")
    print("| replicas | berth: failed / requests | berth: update took | stack deploy: failed / requests | stack: update took |")
    print("|---|---|---|---|---|")
    for r, v in sorted(roll.items()):
        b, st = v["berth"], v["stack"]
        print(f"| {r} | {b['failed']} / {b['ok'] + b['failed']} | {b['update_s']:.1f} s | {st['failed']} / {st['ok'] + st['failed']} | {st['update_s']:.1f} s |")
    ok = all(v["berth"]["failed"] == 0 for v in roll.values())
    print(f"\nTarget zero failed requests during berth's rolling update: {verdict(ok)}.\n")
else:
    print()

notes = os.path.join(os.path.dirname(os.path.abspath(__file__)), "NOTES.md")
if os.path.exists(notes):
    with open(notes) as f:
        print(f.read())
