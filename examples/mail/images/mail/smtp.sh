#!/bin/sh
# A tiny SMTP dialogue: enough for `nc`, a CGI script or a test to hand over
# a message, which is appended to /var/spool/mail/<local part of RCPT TO>.
log() { echo "mail: smtp: $*" > /proc/1/fd/1 2>/dev/null; }
cr=$(printf '\r')
host=$(hostname)
rcpt=""
from=""
echo "220 $host ESMTP berth example mail server ready"
while IFS= read -r line; do
    line=${line%"$cr"}
    case "$line" in
        HELO*|helo*) echo "250 $host" ;;
        EHLO*|ehlo*) printf '250-%s\r\n250 8BITMIME\r\n' "$host" ;;
        MAIL\ FROM:*|mail\ from:*) from=${line#*:}; echo "250 2.1.0 ok" ;;
        RCPT\ TO:*|rcpt\ to:*)
            rcpt=${line#*:}; rcpt=${rcpt#*<}; rcpt=${rcpt%>*}; rcpt=${rcpt%@*}
            case "$rcpt" in
                ""|*/*|.*) echo "550 5.1.1 bad recipient"; rcpt="" ;;
                *) echo "250 2.1.5 ok" ;;
            esac ;;
        DATA|data)
            if [ -z "$rcpt" ]; then echo "503 5.5.1 RCPT first"; continue; fi
            echo "354 end with <CRLF>.<CRLF>"
            box="/var/spool/mail/$rcpt"
            { echo "From $from $(date -u)"; } >> "$box"
            while IFS= read -r body; do
                body=${body%"$cr"}
                [ "$body" = "." ] && break
                echo "$body" >> "$box"
            done
            echo "" >> "$box"
            log "delivered a message to $rcpt"
            echo "250 2.0.0 queued as $(date +%s)" ;;
        RSET|rset) rcpt=""; from=""; echo "250 ok" ;;
        NOOP|noop) echo "250 ok" ;;
        QUIT|quit) echo "221 2.0.0 bye"; exit 0 ;;
        "") ;;
        *) echo "502 5.5.2 command not recognised" ;;
    esac
done
