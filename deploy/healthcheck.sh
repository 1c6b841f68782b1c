#!/bin/bash
# The container's HEALTHCHECK: GET /healthz from pvgate's web server and
# succeed on 200. Written with bash's /dev/tcp so that the image needs no
# curl. The URL comes from $PVGATE_HEALTHCHECK_URL (default
# http://127.0.0.1:8080/healthz); set it when `serve --listen` differs.
set -u
url=${PVGATE_HEALTHCHECK_URL:-http://127.0.0.1:8080/healthz}
rest=${url#http://}
if [ "$rest" = "$url" ]; then
    echo "healthcheck: PVGATE_HEALTHCHECK_URL=$url: only http:// URLs work here (pvgate serves plain HTTP; TLS belongs to a proxy in front)" >&2
    exit 1
fi
hostport=${rest%%/*}
case $rest in */*) path=/${rest#*/} ;; *) path=/ ;; esac
case $hostport in
    \[*\]:*) host=${hostport%]:*}; host=${host#[}; port=${hostport##*]:} ;;
    \[*\])   host=${hostport#[}; host=${host%]}; port=80 ;;
    *:*)     host=${hostport%:*}; port=${hostport##*:} ;;
    *)       host=$hostport; port=80 ;;
esac
# A wildcard listen address is reached through loopback.
case $host in 0.0.0.0) host=127.0.0.1 ;; ::) host=::1 ;; esac

if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
    echo "healthcheck: nothing answers on $host:$port ($url): is pvgate running, and does PVGATE_HEALTHCHECK_URL match its --listen?" >&2
    exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$hostport" >&3
status=
IFS= read -r -t 5 status <&3 || true
status=${status%$'\r'}
case $status in
    "HTTP/1."?" 200"*) exit 0 ;;
esac
echo "healthcheck: GET $url answered '${status:-nothing within 5 s}'" >&2
exit 1
