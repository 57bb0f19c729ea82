#!/usr/bin/env bash
# berth backup / restore throughput against plain tar of the same volume
# contents, and against the engine's archive API alone (the floor of a
# design that reads and writes volumes only through the engine).
#
#   bench/backup.sh                  # 1 GiB volume, 5 runs each
#   SIZE_MB=256 RUNS=3 bench/backup.sh
#
# Writes bench/out/backup-*.json (hyperfine) and bench/out/backup.md (a
# table for bench/RESULTS.md). Uses target/release/berth as built; needs
# docker, hyperfine, zstd, python3, busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-5}
SIZE_MB=${SIZE_MB:-1024}
OUT=$ROOT/bench/out
BERTH=$ROOT/target/release/berth
mkdir -p "$OUT"
command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null
command -v zstd >/dev/null || apt-get install -y -qq zstd >/dev/null
[ -x "$BERTH" ] || { echo "build berth first: cargo build --release" >&2; exit 1; }

# A FROM-scratch busybox image, built locally (no registry is reachable).
IMAGE=berth-bench/busybox:1
if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  ctx=$(mktemp -d); cp /bin/busybox "$ctx/"
  printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\nLABEL berth.bench-image=1\n' > "$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

# Everything lives on the filesystem that holds the engine's volumes, so
# that berth, tar and the engine write to the same disk.
VOLROOT=$(docker info -f '{{.DockerRootDir}}')
WORK=$(mktemp -d)
if [ "$(stat -c %d "$WORK")" != "$(stat -c %d "$VOLROOT")" ]; then
  rmdir "$WORK"; WORK=$(mktemp -d -p "$(dirname "$VOLROOT")" bkb-bench.XXXXXX)
fi
ID=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
DEP=bkb$ID                     # the deployment backed up
RDEP=bkb${ID}r                 # restores go into this (absent) deployment
VOL=$DEP-s-data
FVOL=bkb$ID-floor              # the archive API floor's restore targets
LABEL=berth.bench=backup
export BERTH_STATE_DIR=$WORK/state BERTH_UNIT_DIR=$WORK/units
TOML=$WORK/dep/berth.toml

cleanup() {
  set +e
  "$BERTH" destroy -f "$TOML" --volumes >/dev/null 2>&1
  docker rm -f "bkb$ID-src" >/dev/null 2>&1
  for c in $(docker ps -aq --filter "name=$FVOL"); do docker rm -f "$c" >/dev/null 2>&1; done
  for v in $(docker volume ls -q --filter "name=$RDEP") $(docker volume ls -q --filter "name=$FVOL") "$VOL"; do
    docker volume rm -f "$v" >/dev/null 2>&1
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$WORK/dep"
# The service stops at once on SIGTERM, as a well-behaved one does.
cat > "$TOML" <<EOF
name = "$DEP"
[services.s]
image = "$IMAGE"
command = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000000 & wait"]
volumes = ["data:/data"]
EOF
"$BERTH" apply -f "$TOML" --integration docker -q >/dev/null
MNT=$(docker volume inspect -f '{{.Mountpoint}}' "$VOL")

# Fill the volume: half incompressible data in large files, half text (C
# headers, documentation, man pages of this host, cut at random offsets)
# in many small and medium files, in nested directories.
python3 - "$MNT" "$SIZE_MB" <<'PY'
import os, random, sys, glob
root, size = sys.argv[1], int(sys.argv[2]) << 20
rnd = random.Random(42)
corpus = bytearray()
for pat in ["/usr/include/**/*.h", "/usr/share/doc/**/*", "/usr/share/man/**/*"]:
    for p in glob.iglob(pat, recursive=True):
        if len(corpus) > (48 << 20): break
        if os.path.isfile(p) and not p.endswith((".gz", ".bz2", ".xz", ".png")):
            try: corpus += open(p, "rb").read()
            except OSError: pass
corpus = bytes(corpus)
def text(n):
    at = rnd.randrange(0, max(1, len(corpus) - n))
    return corpus[at:at + n]
stats = {"big": [0, 0], "medium": [0, 0], "small": [0, 0]}
def put(kind, path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f: f.write(data)
    stats[kind][0] += 1; stats[kind][1] += len(data)
half = size // 2
done, i = 0, 0
while done < half:                       # incompressible, 64 MiB files
    n = min(64 << 20, half - done)
    put("big", f"{root}/blobs/blob{i:03}.bin", os.urandom(n)); done += n; i += 1
text_total, i = size - half, 0
while done < half + text_total * 6 // 10:  # 60 % of the text: 256 KiB-2 MiB files
    n = min(rnd.randrange(256 << 10, 2 << 20), size - done)
    put("medium", f"{root}/docs/d{i // 100:02}/doc{i:05}.txt", text(n)); done += n; i += 1
i = 0
while done < size:                       # the rest: 1-32 KiB files
    n = min(rnd.randrange(1 << 10, 32 << 10), size - done)
    put("small", f"{root}/src/m{i // 500:03}/f{i:06}.c", text(n)); done += n; i += 1
for k, (c, b) in stats.items():
    print(f"  {k}: {c} files, {b / 2**20:.0f} MiB", file=sys.stderr)
PY
sync
BYTES=$(du -sb --apparent-size "$MNT" | cut -f1)
FILES=$(find "$MNT" -type f | wc -l)
echo "volume $VOL: $((BYTES >> 20)) MiB in $FILES files" >&2

hf() { hyperfine --style basic --runs "$RUNS" --export-json "$OUT/backup-$1.json" "${@:2}"; }

T=$WORK/t
mkdir -p "$T"
B="$BERTH -f $TOML"
# Backup: the default mode (the instance is stopped for the copy and
# started again, its stop and start included in the time), and --live.
hf berth-backup --prepare "rm -f $T/b.tar.zst" "$B backup s -o $T/b.tar.zst"
hf berth-backup-live --prepare "rm -f $T/b.tar.zst" "$B backup s --live -o $T/b.tar.zst"
ARCHIVE_BYTES=$(stat -c %s "$T/b.tar.zst")
hf tar-c --prepare "rm -f $T/p.tar" "tar -C $MNT -cf $T/p.tar ."
hf tar-c-zstd --prepare "rm -f $T/p.tar.zst" "tar -C $MNT -cf - . | zstd -q -3 -T0 -o $T/p.tar.zst"
ZSTD_BYTES=$(stat -c %s "$T/p.tar.zst")
# The archive API alone: a created, never-started container with the volume.
docker create --name "bkb$ID-src" --label "$LABEL" --network none \
  --mount "type=volume,src=$VOL,dst=/berth-volume,volume-nocopy" "$IMAGE" /none >/dev/null
hf api-get "docker cp bkb$ID-src:/berth-volume - >/dev/null"
docker cp "bkb$ID-src:/berth-volume" - > "$T/api.tar"

# Restores. Every run writes into a fresh destination and nothing is deleted
# until the end: on ext4, creating files right after many were deleted is
# several times slower (the inode allocator skips recently freed inodes),
# which would make each run pay for the one before it. `sync` before each
# run, so that no run pays for the previous one's writeback either.
N=$T/n; echo 0 > "$N"
next="echo \$((\$(cat $N) + 1)) > $N; sync"
# berth: into a volume that does not exist yet (restore creates it; no
# snapshot of old content is taken, as there is none).
hf berth-restore --prepare "$next" "$BERTH restore $T/b.tar.zst --deployment $RDEP\$(cat $N)"
# The restored volume must hold what the source holds.
RMNT=$(docker volume inspect -f '{{.Mountpoint}}' "${RDEP}1-s-data")
diff -r "$MNT" "$RMNT" >/dev/null || { echo "restored volume differs from the source" >&2; exit 1; }
mkdir -p "$T/x"
hf tar-x --prepare "$next; mkdir $T/x/\$(cat $N)" "tar -C $T/x/\$(cat $N) -xf $T/p.tar"
hf zstd-tar-x --prepare "$next; mkdir $T/x/\$(cat $N)" \
  "zstd -q -d -c $T/p.tar.zst | tar -C $T/x/\$(cat $N) -xf -"
hf api-put --prepare "$next; docker volume create --label $LABEL $FVOL\$(cat $N) >/dev/null; \
docker create --name $FVOL\$(cat $N) --label $LABEL --network none \
--mount type=volume,src=$FVOL\$(cat $N),dst=/berth-volume,volume-nocopy $IMAGE /none >/dev/null" \
  "docker cp - $FVOL\$(cat $N):/ < $T/api.tar"

python3 - "$OUT" "$BYTES" "$FILES" "$ARCHIVE_BYTES" "$ZSTD_BYTES" "$RUNS" > "$OUT/backup.md" <<'PY'
import json, statistics, sys
out, size, files, arch, zst, runs = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:])
mb = size / 1e6
def rate(name):
    t = json.load(open(f"{out}/backup-{name}.json"))["results"][0]["times"]
    return mb / statistics.median(t), mb / max(t), mb / min(t)
rows = {
 "backup": [("`berth backup` (instance stopped, the default)", "berth-backup"),
            ("`berth backup --live`", "berth-backup-live"),
            ("`tar -cf` (peer)", "tar-c"),
            ("`tar -cf - \\| zstd -3 -T0` (same work)", "tar-c-zstd"),
            ("archive API GET alone (`docker cp` to /dev/null; floor)", "api-get")],
 "restore": [("`berth restore` (into a new volume)", "berth-restore"),
             ("`tar -xf` (peer)", "tar-x"),
             ("`zstd -d \\| tar -xf` (same work)", "zstd-tar-x"),
             ("archive API PUT alone (`docker cp -`; floor)", "api-put")],
}
r = {n: rate(n) for sec in rows.values() for _, n in sec}
print(f"One volume of {size / 2**20:.0f} MiB in {files} files: half incompressible "
      "(64 MiB random files), half text (headers, docs, man pages of the host cut into "
      "1-32 KiB and 256 KiB-2 MiB files). Warm page cache; archives go to the volumes' "
      f"filesystem; each restore run writes to a fresh destination after a `sync`. berth's archive: {arch / 2**20:.0f} MiB; tar | zstd -3: {zst / 2**20:.0f} MiB. "
      f"{runs} runs each.\n")
print("| | MB/s (median) | min-max |")
print("|---|---:|---:|")
for sec, items in rows.items():
    print(f"| **{sec}** | | |")
    for label, n in items:
        m, lo, hi = r[n]
        print(f"| {label} | {m:.0f} | {lo:.0f}-{hi:.0f} |")
print()
def ratio(a, b): return f"{100 * r[a][0] / r[b][0]:.0f} %"
print("| ratio (median MB/s) | backup | restore |")
print("|---|---:|---:|")
print(f"| berth / tar | {ratio('berth-backup', 'tar-c')} | {ratio('berth-restore', 'tar-x')} |")
print(f"| berth / (tar + zstd) | {ratio('berth-backup', 'tar-c-zstd')} | {ratio('berth-restore', 'zstd-tar-x')} |")
print(f"| berth / archive API floor | {ratio('berth-backup', 'api-get')} | {ratio('berth-restore', 'api-put')} |")
print(f"| berth --live / tar | {ratio('berth-backup-live', 'tar-c')} | |")
PY
cat "$OUT/backup.md"
