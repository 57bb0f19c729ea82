#!/usr/bin/env bash
# Build the example's images, build berth, apply the mail + webmail
# deployment, start the SSH gateway, and print how to try every part of it.
# Safe to run again: images are rebuilt from cache, and a second apply changes
# nothing when nothing changed.
#
#   examples/mail/run.sh        set up (or bring up to date) and print how to try it
#   examples/mail/run.sh down   stop the SSH gateway this script started, and destroy
#                               the deployment with its volumes (everything it made)
#
# SSH: the mail service grants one key, MAIL_SSH_KEY, which this script writes
# to .env beside berth.toml (so every later berth command on the file sees it):
# your own ~/.ssh/id_ed25519.pub, id_ecdsa.pub or id_rsa.pub when you have one
# (read, never changed), else a key made for the example in .run/ (gitignored).
#
# Environment (all optional):
#   BERTH_EXAMPLE_NAME   deployment name (default: the file's, "mailexample")
#   BERTH_BIN            use this berth binary instead of building one
#   BERTH_INTEGRATION    auto | systemd | docker (default: systemd when PID 1
#                        is systemd, else docker)
#   BERTH_STATE_DIR, BERTH_UNIT_DIR, DOCKER_HOST   as for berth itself
#   MAIL_SMTP_PORT, MAIL_IMAP_PORT, ..., WEBMAIL_PORT   host ports (see berth.toml)
#   MAIL_SSH_PORT        the SSH gateway's port (default 2222)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
run_dir="$here/.run"
gateway_pid="$run_dir/ssh-gateway.pid"
busybox=/bin/busybox
webmail_port="${WEBMAIL_PORT:-18480}"
smtp_port="${MAIL_SMTP_PORT:-12525}"
ssh_port="${MAIL_SSH_PORT:-2222}"
port_vars=(MAIL_SMTP_PORT MAIL_SMTPS_PORT MAIL_SUBMISSION_PORT MAIL_IMAP_PORT MAIL_IMAPS_PORT MAIL_SIEVE_PORT WEBMAIL_PORT)

say() { printf '==> %s\n' "$*"; }
warn() { printf 'run.sh: warning: %s\n' "$*" >&2; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

args=(-f "$here/berth.toml")
if [ -n "${BERTH_EXAMPLE_NAME:-}" ]; then
    args+=(--name "$BERTH_EXAMPLE_NAME")
fi

# berth: the one given, else the one built here (the debug build, which is
# also what `cargo test` builds, so the test command reuses it).
berth="${BERTH_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/berth}"

# The gateway started by an earlier run, if it still runs.
running_gateway() {
    local pid
    pid="$(cat "$gateway_pid" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'ssh-gateway' \
        && printf '%s\n' "$pid"
}

if [ "${1:-}" = down ]; then
    if pid="$(running_gateway)"; then
        say "stopping the SSH gateway (pid $pid)"
        kill "$pid"
    fi
    rm -f "$gateway_pid"
    [ -x "$berth" ] || die "no berth binary at $berth (set BERTH_BIN)"
    say "destroying the deployment and its volumes"
    "$berth" "${args[@]}" destroy --volumes
    exit 0
fi
[ $# -eq 0 ] || die "unknown argument $1 (usage: run.sh [down])"

# 1. What the images are built from (Debian's statically linked busybox),
# and the tools the hints below use.
need=()
[ -x "$busybox" ] || need+=(busybox-static)
command -v curl >/dev/null || need+=(curl)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
if [ ${#need[@]} -gt 0 ]; then
    say "installing ${need[*]}"
    command -v apt-get >/dev/null || die "missing ${need[*]} and apt-get is not available; install them first"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >/dev/null
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

# 3. berth itself, with cargo's progress on the terminal: the first build
# compiles about 300 crates (about 5 minutes on 2 cores); later ones take seconds.
if [ -z "${BERTH_BIN:-}" ]; then
    command -v cargo >/dev/null || die "cargo is needed to build berth (or set BERTH_BIN)"
    say "building berth (cargo build --locked; about 5 minutes on 2 cores the first time)"
    (cd "$repo" && cargo build --locked)
fi
[ -x "$berth" ] || die "no berth binary at $berth"

# 4. The key the mail service grants, and .env carrying it (and any port
# overrides, so later commands on berth.toml resolve the same file).
home="$HOME"
if [ -n "${SUDO_USER:-}" ] && [ "$SUDO_USER" != root ]; then
    # Under sudo, the invoking user's key is the one they will ssh with.
    home="$(getent passwd "$SUDO_USER" | cut -d: -f6)"
fi
identity=""
for k in id_ed25519 id_ecdsa id_rsa; do
    if [ -f "$home/.ssh/$k.pub" ] && [ -f "$home/.ssh/$k" ]; then
        identity="$home/.ssh/$k"
        break
    fi
done
mkdir -p "$run_dir"
if [ -z "$identity" ]; then
    identity="$run_dir/id_ed25519"
    if [ ! -f "$identity" ]; then
        say "making an SSH key for the example: $identity (you have none in $home/.ssh)"
        ssh-keygen -q -t ed25519 -N '' -C "berth mail example" -f "$identity" </dev/null
        if [ -n "${SUDO_UID:-}" ]; then
            chown "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" "$identity" "$identity.pub" "$run_dir"
        fi
    fi
fi
# type, key and comment, without characters that would end the quoted value.
pubkey="$(tr -d "'\r\n" <"$identity.pub")"
{
    echo "# Written by run.sh, and rewritten on every run: edits here do not last."
    echo "MAIL_SSH_KEY='$pubkey'"
    for v in "${port_vars[@]}"; do
        if [ -n "${!v:-}" ]; then
            echo "$v=${!v}"
        fi
    done
} >"$here/.env"

# 5. Apply. Without systemd as PID 1 there is nothing to run units, so Docker's
# restart policies keep the services up instead.
integration="${BERTH_INTEGRATION:-}"
if [ -z "$integration" ]; then
    if [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm 2>/dev/null)" = systemd ]; then
        integration=systemd
    else
        integration=docker
    fi
fi
# Is the host ready (engine, directories, the ports above free or already
# ours)? doctor names every problem with its fix.
if ! doctor_out="$("$berth" "${args[@]}" doctor 2>&1)"; then
    printf '%s\n' "$doctor_out" >&2
    die "this host is not ready for the example (see above; host ports can be changed with MAIL_*_PORT / WEBMAIL_PORT)"
fi
apply_args=(apply --integration "$integration")
if [ "$integration" = systemd ] && [ -n "${MAIL_SSH_PORT:-}" ]; then
    apply_args+=(--ssh-listen "0.0.0.0:$ssh_port")
fi
say "applying $here/berth.toml (integration: $integration)"
"$berth" "${args[@]}" "${apply_args[@]}"

# 6. The SSH gateway. Under systemd, apply installed and started it
# (berth-ssh-gateway.service). Otherwise no berth process stays running, so
# run one here in the background, on loopback only, unless ours still runs.
ssh_banner() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && head -c 13 <&3" 2>/dev/null
}
gateway_ok=""
if [ "$integration" = systemd ]; then
    unit="${BERTH_UNIT_DIR:-/etc/systemd/system}/berth-ssh-gateway.service"
    listen="$(grep -o -- '--listen [^ ]*' "$unit" 2>/dev/null | head -n1 | cut -d' ' -f2 | tr -d '"')"
    ssh_port="${listen##*:}"
    ssh_port="${ssh_port:-2222}"
    gateway_ok=1
    gateway_note="the gateway runs as berth-ssh-gateway.service (systemctl status berth-ssh-gateway)"
elif pid="$(running_gateway)"; then
    gateway_ok=1
    gateway_note="the gateway started by an earlier run.sh (pid $pid) serves it; run.sh down stops it"
else
    say "starting the SSH gateway on 127.0.0.1:$ssh_port (log: $run_dir/ssh-gateway.log)"
    rm -f "$gateway_pid"
    # In a session of its own, so that closing this terminal does not end it;
    # the gateway's own pid goes to the pid file (setsid may fork).
    setsid sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$gateway_pid" \
        "$berth" ssh-gateway --listen "127.0.0.1:$ssh_port" \
        </dev/null >"$run_dir/ssh-gateway.log" 2>&1 &
    pid=""
    for _ in $(seq 1 150); do
        pid="${pid:-$(cat "$gateway_pid" 2>/dev/null || true)}"
        if [ "$(ssh_banner "$ssh_port")" = SSH-2.0-berth ]; then
            gateway_ok=1
            break
        fi
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            break
        fi
        sleep 0.2
    done
    if [ -n "$gateway_ok" ]; then
        gateway_note="the gateway runs in the background (pid $pid); run.sh down stops it"
    else
        [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
        rm -f "$gateway_pid"
        cat "$run_dir/ssh-gateway.log" >&2 || true
        warn "the SSH gateway did not start on 127.0.0.1:$ssh_port (see above; MAIL_SSH_PORT picks another port)"
    fi
fi

# 7. Wait for the webmail to answer, then say how to reach everything.
say "waiting for the webmail on port $webmail_port"
ok=""
for _ in $(seq 1 30); do
    if page="$(curl -fsS --max-time 3 "http://127.0.0.1:$webmail_port/" 2>/dev/null)"; then
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

# What the commands below are run as: the full path (berth is not on PATH
# unless installed) and, from any directory, the absolute file.
b="$berth ${args[*]}"
down="$here/run.sh down"
if [ -n "${BERTH_EXAMPLE_NAME:-}" ]; then
    down="BERTH_EXAMPLE_NAME=$BERTH_EXAMPLE_NAME $down"
fi
name="${BERTH_EXAMPLE_NAME:-$(sed -n 's/^name = "\(.*\)"$/\1/p' "$here/berth.toml")}"
cat <<INFO

The example is running (deployment "$name").
  webmail:    curl http://127.0.0.1:$webmail_port/
  send mail:  curl http://127.0.0.1:$webmail_port/cgi-bin/send.cgi
  over SMTP:  printf 'Subject: hi\\r\\n\\r\\nhello\\r\\n' | curl -sS smtp://127.0.0.1:$smtp_port --mail-from you@example.org --mail-rcpt postmaster@example.org -T -
  read it:    $b exec mail -- cat /var/spool/mail/postmaster
  status:     $b ps
  logs:       $b logs mail
  changes:    $b plan               (exit 0: none)
  backup:     $b backup --all -o /tmp/mail.tar.zst
  restore:    $b restore /tmp/mail.tar.zst --force
  remove:     $b destroy            (keeps the mail volumes)
              $down   (also the volumes, and the gateway run.sh started)
INFO
if [ -n "$gateway_ok" ]; then
    fingerprint="$("$berth" ssh-gateway --fingerprint 2>/dev/null || true)"
    cat <<INFO
  ssh:        ssh -i $identity -p $ssh_port -o StrictHostKeyChecking=accept-new $name.mail@127.0.0.1
              (a shell in the mail container; add a command to run just that, e.g. cat /var/mail/boot.log)
              host key $fingerprint; $gateway_note
INFO
fi
[ -n "${BERTH_BIN:-}" ] || cat <<INFO

berth is at $berth (not on PATH). To call it as \`berth\`:
  ${sudo:+sudo }install -m755 $berth /usr/local/bin/berth   (this build)
  cargo install --path $repo --locked   (an optimised build into ~/.cargo/bin; takes minutes)
INFO
