#!/bin/sh
# The webmail page: where the mail server is, and what it answers.
addr=${MAIL_PORT_25_TCP_ADDR:-${MAIL_HOST:-mail}}
port=${MAIL_PORT_25_TCP_PORT:-25}
imap_port=${MAIL_PORT_143_TCP_PORT:-143}
greeting=$(printf 'QUIT\r\n' | nc -w 3 "$addr" "$port" 2>&1 | head -n 1 | tr -d '\r')
imap=$(printf 'a STATUS postmaster\r\na LOGOUT\r\n' | nc -w 3 "$addr" "$imap_port" 2>&1 | grep '^\* STATUS' | tr -d '\r')
printf 'Content-Type: text/plain\r\n\r\n'
echo "berth example webmail"
echo "mail server: $addr:$port"
echo "link name: ${MAIL_NAME:-none}"
echo "smtp greeting: ${greeting:-no answer}"
echo "imap: ${imap:-no answer}"
echo
echo "link variables:"
env | grep '^MAIL_' | sort
