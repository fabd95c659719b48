#!/usr/bin/env bash
# The image's HEALTHCHECK: exits 0 when GET /healthz answers 200. The runtime image carries no
# curl, so plain HTTP goes through bash's /dev/tcp and TLS through openssl s_client.
# URL: the first argument, else $EPCS_HEALTHCHECK_URL, else http://127.0.0.1:8080/healthz
# (compose.tls.yaml points it at https://).
set -euo pipefail

url=${1:-${EPCS_HEALTHCHECK_URL:-http://127.0.0.1:8080/healthz}}
if [[ ! $url =~ ^(https?)://([^/:]+):([0-9]+)(/.*)?$ ]]; then
    echo "epcs-healthcheck: expected http(s)://HOST:PORT/PATH, got '$url'" >&2
    exit 2
fi
scheme=${BASH_REMATCH[1]} host=${BASH_REMATCH[2]} port=${BASH_REMATCH[3]}
path=${BASH_REMATCH[4]:-/healthz}
request() {
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host"
}

status=
if [ "$scheme" = http ]; then
    if { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
        request >&3
        IFS= read -r -t 5 status <&3 || true
        exec 3<&-
    fi
else
    # -quiet keeps reading after the request is sent; the certificate is not verified, since
    # what is checked is the server, not the operator's PKI.
    status=$(request |
        timeout 5 openssl s_client -quiet -connect "$host:$port" -servername "$host" 2>/dev/null |
        head -n 1) || true
fi
status=${status%$'\r'}

if [[ $status == HTTP/1.?" 200"* ]]; then
    echo "epcs-healthcheck: $url: $status"
    exit 0
fi
echo "epcs-healthcheck: $url: ${status:-no answer}" >&2
exit 1
