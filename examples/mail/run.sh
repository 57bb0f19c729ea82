#!/usr/bin/env bash
# Build the example's images, build berth, and apply the mail + webmail
# deployment. Safe to run again: images are rebuilt from cache, and a second
# apply changes nothing when nothing changed.
#
# Environment (all optional):
#   BERTH_EXAMPLE_NAME   deployment name (default: the file's, "mailexample")
#   BERTH_BIN            use this berth binary instead of building one
#   BERTH_INTEGRATION    auto | systemd | docker (default: systemd when PID 1
#                        is systemd, else docker)
#   BERTH_STATE_DIR, BERTH_UNIT_DIR, DOCKER_HOST   as for berth itself
#   MAIL_SMTP_PORT, MAIL_IMAP_PORT, ..., WEBMAIL_PORT   host ports (see berth.toml)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
busybox=/bin/busybox
webmail_port="${WEBMAIL_PORT:-18480}"
smtp_port="${MAIL_SMTP_PORT:-12525}"

fetch() {
    if command -v curl >/dev/null; then
        curl -fsS --max-time 3 "$1"
    else
        "$busybox" wget -q -T 3 -O - "$1"
    fi
}
say() { printf '==> %s\n' "$*"; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

# 1. What the images are built from: Debian's statically linked busybox.
if [ ! -x "$busybox" ]; then
    say "installing busybox-static"
    command -v apt-get >/dev/null || die "$busybox is missing and apt-get is not available; install a static busybox at $busybox"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >/dev/null
fi
[ -x "$busybox" ] || die "$busybox is still missing after installing busybox-static"
"$busybox" true || die "$busybox does not run"

command -v docker >/dev/null || die "the docker CLI is needed to build the example images"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable (is dockerd running? DOCKER_HOST=${DOCKER_HOST:-unset})"

# Build contexts live here; removed whatever happens.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# 2. The stand-in images, FROM scratch + busybox. The classic builder
# (DOCKER_BUILDKIT=0) works on every engine and needs no registry.
build_image() {
    local name="$1" tag="$2" ctx="$tmp/$1"
    mkdir -p "$ctx"
    cp -R "$here/images/$name/." "$ctx/"
    cp "$busybox" "$ctx/busybox"
    say "building image $tag"
    local out
    if ! out="$(DOCKER_BUILDKIT=0 docker build -q -t "$tag" "$ctx" 2>&1)"; then
        printf '%s\n' "$out" >&2
        die "docker build of $tag failed"
    fi
}
build_image mail berth-example/mail:1
build_image webmail berth-example/webmail:1

# 3. berth itself.
if [ -n "${BERTH_BIN:-}" ]; then
    berth="$BERTH_BIN"
else
    command -v cargo >/dev/null || die "cargo is needed to build berth (or set BERTH_BIN)"
    say "building berth (cargo build --release)"
    (cd "$repo" && cargo build --release --quiet)
    berth="$repo/target/release/berth"
fi
[ -x "$berth" ] || die "no berth binary at $berth"

# 4. Apply. Without systemd as PID 1 there is nothing to run units, so Docker's
# restart policies keep the services up instead.
integration="${BERTH_INTEGRATION:-}"
if [ -z "$integration" ]; then
    if [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
        integration=auto
    else
        integration=docker
    fi
fi
args=(-f "$here/berth.toml")
if [ -n "${BERTH_EXAMPLE_NAME:-}" ]; then
    args+=(--name "$BERTH_EXAMPLE_NAME")
fi
# Is the host ready (engine, directories, the ports above free or already
# ours)? doctor names every problem with its fix.
if ! doctor_out="$("$berth" "${args[@]}" doctor 2>&1)"; then
    printf '%s\n' "$doctor_out" >&2
    die "this host is not ready for the example (see above; host ports can be changed with MAIL_*_PORT / WEBMAIL_PORT)"
fi
say "applying $here/berth.toml (integration: $integration)"
"$berth" "${args[@]}" apply --integration "$integration"

# 5. Wait for the webmail to answer, then say how to reach everything.
say "waiting for the webmail on port $webmail_port"
ok=""
for _ in $(seq 1 30); do
    if page="$(fetch "http://127.0.0.1:$webmail_port/" 2>/dev/null)"; then
        ok=1
        break
    fi
    sleep 1
done
if [ -z "$ok" ]; then
    "$berth" "${args[@]}" ps || true
    die "the webmail did not answer on http://127.0.0.1:$webmail_port/ within 30 s"
fi
printf '%s\n' "$page"

ps_args=("${args[@]}")
cat <<INFO

The example is running.
  webmail:   curl http://127.0.0.1:$webmail_port/
  send mail: curl http://127.0.0.1:$webmail_port/cgi-bin/send.cgi
  SMTP:      printf 'QUIT\\r\\n' | nc 127.0.0.1 $smtp_port
  status:    $berth ${ps_args[*]} ps
  logs:      $berth ${ps_args[*]} logs mail
  remove:    $berth ${ps_args[*]} destroy            (keeps the mail volumes)
INFO
