#!/bin/sh
# Just enough IMAP to greet, report capabilities, count a mailbox and log out.
cr=$(printf '\r')
echo "* OK [CAPABILITY IMAP4rev1] berth example IMAP ready"
while IFS= read -r line; do
    line=${line%"$cr"}
    tag=${line%% *}
    cmd=${line#* }
    case "$cmd" in
        CAPABILITY*|capability*) echo "* CAPABILITY IMAP4rev1"; echo "$tag OK done" ;;
        STATUS\ *|status\ *)
            box=$(echo "$cmd" | awk '{print $2}')
            case "$box" in */*|.*|"") echo "$tag NO bad mailbox"; continue ;; esac
            n=0
            [ -f "/var/spool/mail/$box" ] && n=$(grep -c '^From ' "/var/spool/mail/$box")
            echo "* STATUS $box (MESSAGES $n)"; echo "$tag OK done" ;;
        NOOP*|noop*) echo "$tag OK done" ;;
        LOGOUT*|logout*) echo "* BYE"; echo "$tag OK done"; exit 0 ;;
        *) echo "$tag BAD not supported by this stand-in" ;;
    esac
done
