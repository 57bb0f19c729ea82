#!/bin/sh
# ManageSieve greeting, so that port 4190 answers like the real thing.
echo '"IMPLEMENTATION" "berth example sieve"'
echo 'OK "ready"'
while IFS= read -r line; do
    case "$line" in LOGOUT*|logout*) echo 'OK "bye"'; exit 0 ;; *) echo 'NO "not supported"' ;; esac
done
