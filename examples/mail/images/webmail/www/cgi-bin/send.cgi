#!/bin/sh
# Send a test message to postmaster through the linked mail server:
# `curl http://host:PORT/cgi-bin/send.cgi`.
addr=${MAIL_PORT_25_TCP_ADDR:-${MAIL_HOST:-mail}}
port=${MAIL_PORT_25_TCP_PORT:-25}
out=$(printf 'HELO webmail\r\nMAIL FROM:<webmail@example.org>\r\nRCPT TO:<postmaster@example.org>\r\nDATA\r\nSubject: hello from the webmail\r\n\r\nsent at %s\r\n.\r\nQUIT\r\n' "$(date -u)" \
    | nc -w 3 "$addr" "$port" 2>&1 | tr -d '\r')
printf 'Content-Type: text/plain\r\n\r\n'
echo "$out"
