#!/bin/sh
# Just enough IMAP to greet, report capabilities, check a login against the
# user list in /etc/mail/users, count a mailbox and log out.
cr=$(printf '\r')
echo "* OK [CAPABILITY IMAP4rev1] berth example IMAP ready"
while IFS= read -r line; do
    line=${line%"$cr"}
    tag=${line%% *}
    cmd=${line#* }
    case "$cmd" in
        CAPABILITY*|capability*) echo "* CAPABILITY IMAP4rev1 AUTH=PLAIN"; echo "$tag OK done" ;;
        LOGIN\ *|login\ *)
            # The user list is the config berth delivers: user:password lines.
            set -f
            # shellcheck disable=SC2086
            set -- $cmd
            set +f
            user=${2:-}; pass=${3:-}
            user=${user#\"}; user=${user%\"}; pass=${pass#\"}; pass=${pass%\"}
            if [ -n "$user" ] && grep -qxF -- "$user:$pass" /etc/mail/users 2>/dev/null; then
                echo "$tag OK LOGIN completed"
            else
                echo "$tag NO [AUTHENTICATIONFAILED] invalid credentials"
            fi ;;
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
