#!/bin/sh
# Main process of the stand-in mail server: one persistent busybox `nc`
# listener per port, each connection handled by a small protocol script.
set -u
log() { echo "mail: $*"; }

# Stop promptly on `docker stop` (PID 1 ignores SIGTERM unless it asks for it).
trap 'log "stopping"; kill $(jobs -p) 2>/dev/null; exit 0' TERM INT

mkdir -p /var/spool/mail /var/mail
echo "started $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)" >> /var/mail/boot.log
log "domains: ${LOCAL_DOMAINS:-none}; boots so far: $(wc -l < /var/mail/boot.log)"

for port in 25 465 587; do
    nc -ll -p "$port" -e /usr/local/bin/smtp.sh &
done
for port in 143 993; do
    nc -ll -p "$port" -e /usr/local/bin/imap.sh &
done
nc -ll -p 4190 -e /usr/local/bin/sieve.sh &
log "listening on 25 143 465 587 993 4190"

# `wait` returns when a trapped signal arrives; loop so that a listener
# exiting does not end the server.
while :; do
    wait
    sleep 1
done
