#!/bin/sh
# busybox httpd in the foreground on port 80, and on 443 too (plain HTTP:
# the classic deployment publishes the webmail's 443).
set -u
trap 'echo "webmail: stopping"; kill $(jobs -p) 2>/dev/null; exit 0' TERM INT
echo "webmail: mail server at ${MAIL_PORT_25_TCP_ADDR:-${MAIL_HOST:-mail}}:${MAIL_PORT_25_TCP_PORT:-25}"
httpd -f -v -p 80 -h /www &
httpd -f -p 443 -h /www &
echo "webmail: serving HTTP on 80 and 443"
while :; do
    wait
    sleep 1
done
