#!/usr/bin/env bash
# Proves docker/Dockerfile, docker/proxy/Dockerfile and docker/compose.yaml on a machine like
# CI's, where no image registry is reachable and no Docker engine runs: installs Podman,
# podman-compose and debootstrap from Debian, builds debian:bookworm-slim locally from the apt
# mirror, builds both images, runs the compose file (epcsd behind HAProxy, its own port
# unpublished), asks epcs over HTTP/2 through the proxy, floods the proxy with reset streams
# while a keyed client is served, amends a rule in the mounted rules directory and sees the
# verdict change, repeats over TLS (compose.tls.yaml), stops epcsd with SIGTERM; then the cluster
# stage (docker/test-cluster.sh): docker/compose.cluster.yaml with a PostgreSQL primary, its
# synchronous standby, two replicas and the proxy, and its fault tests (a replica killed, the
# primary restarted and paused, the standby promoted). Tears everything down. Run as root; takes
# about seven minutes.
#
# Podman keeps everything this script makes (images, containers, volumes, network definitions)
# in a store of its own under a temporary directory, so the machine's own Podman state is left
# alone and one `rm` removes it all. Cleanup runs on every exit, failures included.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

step() { echo "== $* =="; }
passed=0
ok() {
    passed=$((passed + 1))
    echo "ok: $*"
}
fail() {
    echo "docker/test.sh: FAIL: $*" >&2
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    fail "run as root: it installs packages and runs rootful Podman"
fi

step "install podman, runc, podman-compose, debootstrap (Debian packages)"
# dnsname: the proxy finds epcsd by its service name on the compose network.
packages=(podman runc podman-compose containernetworking-plugins
    golang-github-containernetworking-plugin-dnsname iptables debootstrap curl python3
    python3-hpack nghttp2-client openssl)
missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "all ${#packages[@]} packages present"
fi

tmp=$(mktemp -d /var/tmp/epcs-docker-test.XXXXXX)
# Podman keeps a blob cache in /var/lib/containers whatever the store: gone again if it was new.
[ -e /var/lib/containers ] && had_var_lib_containers=1 || had_var_lib_containers=0
project=epcs-test
network=${project}_default
# Every compose network made here (the cluster stage adds its own), for the cleanup.
networks=("$network")
container=${project}_epcs_1
proxy=${project}_proxy_1
image=localhost/epcs:test
proxy_image=localhost/epcs-proxy:test

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    echo "== clean up =="
    if [ -x "$tmp/bin/podman" ]; then
        podman unpause --all >/dev/null 2>&1
        podman rm --all --force --time 0 >/dev/null 2>&1
        for net in "${networks[@]}"; do
            podman network rm --force "$net" >/dev/null 2>&1
        done
        podman system reset --force >/dev/null 2>&1
    fi
    # The CNI host-local allocator keeps its state outside Podman's store.
    for net in "${networks[@]}"; do
        rm -rf "/var/lib/cni/networks/$net"
    done
    if [ "$had_var_lib_containers" = 0 ]; then
        rm -f /var/lib/containers/cache/blob-info-cache-v1.boltdb
        rmdir /var/lib/containers/cache /var/lib/containers 2>/dev/null
    fi
    # conmon of a container that would not die carries the store's path in its arguments.
    local pid
    for pid in $(pgrep -f -- "$tmp/" || true); do
        [ "$pid" != "$$" ] && kill -KILL "$pid" 2>/dev/null
    done
    # Nothing may stay mounted (overlay layers, debootstrap's /proc) before the tree goes.
    findmnt -rn -o TARGET | grep -F "$tmp/" | sort -r | while read -r mnt; do
        umount -l "$mnt"
    done
    rm -rf --one-file-system "$tmp"
    echo "docker/test.sh: $([ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)") in $((SECONDS - started)) s"
    echo "docker: $passed passed, $([ "$rc" -eq 0 ] && echo 0 || echo 1) failed"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A `podman` first on PATH that points every call (podman-compose's too) at the private store.
mkdir -p "$tmp/bin"
cat >"$tmp/bin/podman" <<EOF
#!/bin/sh
exec /usr/bin/podman --root "$tmp/storage" --runroot "$tmp/run" --tmpdir "$tmp/libpod" \\
    --network-config-dir "$tmp/cni" --storage-driver overlay "\$@"
EOF
chmod +x "$tmp/bin/podman"
export PATH="$tmp/bin:$PATH"
# runc and ulimits this machine allows (cgroup v1 hybrid, no CAP_SYS_RESOURCE).
export CONTAINERS_CONF="$repo/docker/containers.conf"

show_logs() {
    echo "--- epcsd log (last 40 lines) ---" >&2
    podman logs "$container" 2>&1 | tail -40 >&2 || true
    echo "--- proxy log (last 20 lines) ---" >&2
    podman logs "$proxy" 2>&1 | tail -20 >&2 || true
}

# --- the base image, made here because no registry is reachable ---------------------------

step "debian:bookworm-slim from the apt mirror (debootstrap --variant=minbase)"
# The sites apt is configured with, as apt itself parses them.
site_of() {
    # shellcheck disable=SC2016 # $(RELEASE) and $(SITE) are apt's fields, not the shell's
    apt-get indextargets --format '$(RELEASE) $(SITE)' 2>/dev/null |
        awk -v r="$1" '$1 == r { print $2; exit }'
}
mirror=${EPCS_DEBIAN_MIRROR:-$(site_of bookworm)}
mirror=${mirror:-http://deb.debian.org/debian}
security=${EPCS_DEBIAN_SECURITY_MIRROR:-$(site_of bookworm-security)}
echo "mirror $mirror${security:+, security $security}"
if ! debootstrap --variant=minbase bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
    tail -20 "$tmp/debootstrap.log" >&2
    fail "debootstrap from $mirror failed (log above)"
fi
# The same apt sources as the published image (deb822, main, updates and security), on this
# machine's mirror, and no package lists or .debs left behind.
rm -f "$tmp/rootfs/etc/apt/sources.list"
{
    printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [ -n "$security" ]; then
        printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "$security"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
} >"$tmp/rootfs/etc/apt/sources.list.d/debian.sources"
rm -rf "$tmp/rootfs/var/lib/apt/lists/"* "$tmp/rootfs/var/cache/apt/archives/"*.deb
tar -C "$tmp/rootfs" --numeric-owner -c . |
    podman import --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
rm -rf --one-file-system "$tmp/rootfs"
podman image exists debian:bookworm-slim || fail "debian:bookworm-slim was not imported"
ok "debian:bookworm-slim imported"

# --- the image ---------------------------------------------------------------------------

step "build the image (docker/Dockerfile, context: the repository root)"
# --format docker: OCI images drop HEALTHCHECK. --pull=never: there is no registry to ask.
# --network host: RUN steps reach the apt mirror without a CNI network of their own.
build_started=$SECONDS
if ! podman build --format docker --pull=never --network host \
    -f docker/Dockerfile -t "$image" . >"$tmp/build.log" 2>&1; then
    tail -40 "$tmp/build.log" >&2
    fail "podman build failed (log above)"
fi
grep '^runtime packages:' "$tmp/build.log" || true
if ! podman build --format docker --pull=never --network host \
    -f docker/proxy/Dockerfile -t "$proxy_image" . >"$tmp/build-proxy.log" 2>&1; then
    tail -40 "$tmp/build-proxy.log" >&2
    fail "podman build of the proxy failed (log above)"
fi
echo "built in $((SECONDS - build_started)) s, $(podman image inspect --format '{{.Size}}' "$image") bytes"
config=$(podman image inspect --format \
    'user={{.Config.User}} cmd={{index .Config.Healthcheck.Test 1}} stop={{.Config.StopSignal}}' "$image")
[ "$config" = "user=epcs cmd=epcs-healthcheck stop=SIGTERM" ] ||
    fail "image config: expected user epcs, the healthcheck and SIGTERM, got: $config"
ok "image runs as epcs, checks its health with epcs-healthcheck, stops on SIGTERM"
proxy_config=$(podman image inspect --format \
    'user={{.Config.User}} cmd={{index .Config.Healthcheck.Test 1}}' "$proxy_image")
[ "$proxy_config" = "user=epcs cmd=epcs-healthcheck" ] ||
    fail "proxy image config: expected user epcs and the healthcheck, got: $proxy_config"
haproxy_version=$(podman run --rm --network none --no-healthcheck "$proxy_image" haproxy -v 2>&1 |
    head -n 1) || true
[[ $haproxy_version == "HAProxy version 2.6."* ]] ||
    fail "the proxy image does not run HAProxy 2.6: '$haproxy_version'"
ok "proxy image: Debian's HAProxy 2.6, runs as epcs, checks its health"

# One-off containers: no network, and no health check (Podman would try systemd timers).
run_once() { podman run --rm --network none --no-healthcheck "$@"; }

step "API key and TLS material"
install -d -o 10001 -g 10001 -m 0700 "$tmp/secrets"
token=$(run_once -v "$tmp/secrets:/out" "$image" \
    epcsd keys create --keys /out/epcs_keys --partner test --role staff) ||
    fail "epcsd keys create failed"
[[ $token =~ ^epcs_[0-9a-f]+_[0-9a-f]+$ ]] || fail "epcsd keys create printed '$token', not a token"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$tmp/secrets/tls.key" -out "$tmp/secrets/tls.crt" 2>/dev/null ||
    fail "openssl could not make a test certificate"
chown 10001:10001 "$tmp/secrets/tls.key"
ok "keys file made by the image's epcsd; self-signed certificate for 127.0.0.1"

# --- the rules: a copy, and two amendments of it ------------------------------------------

step "rules: a copy to mount, and two amendments (one failing its own tests)"
cp -r lua_rules "$tmp/rules"
for variant in refused accepted; do
    cp -r lua_rules "$tmp/$variant"
done
# docker/amend-rules.py says what the two amendments are; test_legal.py keeps them passing.
python3 docker/amend-rules.py "$tmp/refused" refused || fail "cannot amend lua_rules/ (refused)"
python3 docker/amend-rules.py "$tmp/accepted" accepted || fail "cannot amend lua_rules/ (accepted)"
# The image's own rule test runner says beforehand what epcsd will do with each.
if run_once -v "$tmp/refused:/rules:ro" "$image" epcsd --test-rules /rules >"$tmp/refused.txt" 2>&1; then
    fail "the amendment without its tests passed --test-rules; it cannot show a refusal"
fi
run_once -v "$tmp/accepted:/rules:ro" "$image" epcsd --test-rules /rules >"$tmp/accepted.txt" 2>&1 ||
    { cat "$tmp/accepted.txt" >&2; fail "the amended rules fail their own tests"; }
amended_ruleset=$(sed -n 's/^ruleset \(rs-[0-9a-f]*\): .* 0 failed$/\1/p' "$tmp/accepted.txt")
[ -n "$amended_ruleset" ] || { cat "$tmp/accepted.txt" >&2; fail "no ruleset id in --test-rules output"; }
ok "epcsd --test-rules in the image: the amendment passes as $amended_ruleset, the other fails"

# --- compose -----------------------------------------------------------------------------

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export EPCS_IMAGE=$image EPCS_PROXY_IMAGE=$proxy_image EPCS_PUBLISH=127.0.0.1:$port
export EPCS_RULES=$tmp/rules
export EPCS_KEYS_FILE=$tmp/secrets/epcs_keys
export EPCS_TLS_CERT=$tmp/secrets/tls.crt EPCS_TLS_KEY=$tmp/secrets/tls.key
compose() {
    podman-compose -p "$project" "$@" >>"$tmp/compose.log" 2>&1 ||
        { tail -30 "$tmp/compose.log" >&2; fail "podman-compose $* failed (log above)"; }
}

# Podman runs health checks from systemd timers; without systemd (as here) nothing runs them,
# so this runs the container's own check until it passes.
wait_healthy() {
    local name=${1:-$container}
    local deadline=$((SECONDS + 60))
    until podman healthcheck run "$name" >/dev/null 2>&1; do
        if [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" != true ]; then
            show_logs
            fail "the container $name is not running"
        fi
        if [ $SECONDS -ge $deadline ]; then
            show_logs
            fail "no healthy answer from $name's health check within 60 s"
        fi
        sleep 1
    done
}

body='{"election":"na22","area":"deepfake","date":"2024-02-15","actor":{"kind":"voter"},
"activity":{"kind":"post","deepfake":true,"purpose":"campaign","labeled":true}}'
# check URL [CURL-ARGS...]: POSTs the deepfake check; sets status, version, verdict, ruleset,
# window_from and reason from the answer.
check() {
    local url=$1
    shift
    local out
    out=$(curl -s -o "$tmp/answer.json" -w '%{http_code} %{http_version}' "$@" "$url/v1/check" \
        -H 'content-type: application/json' -H "authorization: Bearer $token" -d "$body") ||
        fail "curl could not reach $url"
    read -r status version <<<"$out"
    IFS=$'\t' read -r verdict ruleset window_from reason < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print("\t".join(str(d.get(k, "")) for k in ("verdict", "ruleset")) + "\t" +
      str((d.get("window") or {}).get("from", "")) + "\t" + str(d.get("reason", "")))
' "$tmp/answer.json") || fail "the answer is not JSON: $(head -c 300 "$tmp/answer.json")"
}
h2c=(--http2-prior-knowledge)
plain=http://127.0.0.1:$port

step "compose up (docker/compose.yaml, h2c on 127.0.0.1:$port through the proxy)"
compose -f docker/compose.yaml up -d --no-build
wait_healthy
wait_healthy "$proxy"
ok "epcs and the proxy healthy (GET /healthz through epcs-healthcheck, the proxy's through itself)"
[ -z "$(podman port "$container")" ] || fail "epcsd's port is published: $(podman port "$container")"
[ "$(podman port "$proxy")" = "8080/tcp -> 127.0.0.1:$port" ] ||
    fail "expected the proxy on 127.0.0.1:$port, got: $(podman port "$proxy")"
ok "only the proxy is published (127.0.0.1:$port); epcsd's port is not"
pid1=$(podman exec "$container" sh -c 'echo "$(cat /proc/1/comm) $(awk "/^Uid:/ { print \$2 }" /proc/1/status)"')
[ "$pid1" = "epcsd 10001" ] || fail "expected epcsd as PID 1 with uid 10001, got '$pid1'"
ok "epcsd is PID 1 and runs as uid 10001"

step "HTTP/2 check"
check "$plain" "${h2c[@]}"
[ "$status $version" = "200 2" ] || fail "expected 200 over HTTP/2, got $status over HTTP/$version"
[ "$verdict" = prohibited ] || fail "expected prohibited, got '$verdict'"
baseline=$ruleset
ok "prohibited over h2c, ruleset $baseline"
# Several, so the proxy holds several connections to epcsd that answered a 401: each must
# have said `connection: close`, or the keyed checks below that the proxy sends over them fail.
for _ in 1 2 3 4 5; do
    unauth=$(curl -s -o /dev/null -w '%{http_code}' "${h2c[@]}" "$plain/v1/check" \
        -H 'content-type: application/json' -d "$body")
    [ "$unauth" = 401 ] || fail "a check without a key answered $unauth, not 401"
done
ok "no key: 401"

step "a reset flood through the proxy while a keyed client is served"
printf '%s' "$body" >"$tmp/check.json"
flood_pids=()
# Debian's python3: it has hpack (python3-h2, from scripts/setup.sh); another on PATH may not.
for n in 1 2; do
    /usr/bin/python3 tests/integration/h2_flood.py "$port" "$token" 6 >"$tmp/flood.$n.json" 2>&1 &
    flood_pids+=($!)
done
sleep 0.5
h2load -n 300 -c 1 -m 1 -d "$tmp/check.json" -H 'content-type: application/json' \
    -H "authorization: Bearer $token" --log-file "$tmp/h2load.log" "$plain/v1/check" \
    >"$tmp/h2load.txt" 2>&1 || { cat "$tmp/h2load.txt" >&2; fail "h2load failed"; }
wait "${flood_pids[@]}" || { cat "$tmp"/flood.*.json >&2; fail "the flood did not run"; }
for n in 1 2; do
    grep -q '"closed"' "$tmp/flood.$n.json" || { cat "$tmp/flood.$n.json" >&2; fail "the flood did not run"; }
done
grep -q 'requests: 300 total, 300 started, 300 done, 300 succeeded' "$tmp/h2load.txt" ||
    { cat "$tmp/h2load.txt" >&2; fail "not every keyed check succeeded under the flood"; }
grep -q 'status codes: 300 2xx' "$tmp/h2load.txt" ||
    { cat "$tmp/h2load.txt" >&2; fail "keyed checks got other answers than 200 under the flood"; }
p99=$(awk '{print $3}' "$tmp/h2load.log" | sort -n | awk '{v[NR]=$1} END {print v[int(NR*0.99)]/1000}')
ready=$(curl -s -o /dev/null -w '%{http_code}' "${h2c[@]}" "$plain/readyz")
[ "$ready" = 200 ] || fail "/readyz answered $ready after the flood"
ok "300 keyed checks all 200 under a reset flood (p99 $p99 ms); ready after it"

step "edit the mounted rules: an amendment that fails its own tests is refused"
refusals() { podman logs "$container" 2>&1 | grep -c 'reload refused' || true; }
before=$(refusals)
# Written beside the file and renamed over it, as editors do, so epcsd never reads half a file.
cp "$tmp/refused/deepfake.lua" "$tmp/rules/.deepfake.lua.new"
mv "$tmp/rules/.deepfake.lua.new" "$tmp/rules/deepfake.lua"
deadline=$((SECONDS + 30))
until [ "$(refusals)" -gt "$before" ]; do
    [ $SECONDS -lt $deadline ] || { show_logs; fail "epcsd did not react to the edit within 30 s"; }
    sleep 0.5
done
check "$plain" "${h2c[@]}"
[ "$verdict $ruleset" = "prohibited $baseline" ] ||
    fail "after a refused edit expected prohibited under $baseline, got $verdict under $ruleset"
ok "refused; still prohibited under $baseline"

step "edit the mounted rules: the amendment with its tests is taken live"
# Both files at once: the watcher reloads once the directory has been quiet for a moment.
for file in false_information.lua deepfake.lua; do
    cp "$tmp/accepted/$file" "$tmp/rules/.$file.new"
done
for file in false_information.lua deepfake.lua; do
    mv "$tmp/rules/.$file.new" "$tmp/rules/$file"
done
deadline=$((SECONDS + 30))
while check "$plain" "${h2c[@]}" && [ "$ruleset" = "$baseline" ]; do
    [ $SECONDS -lt $deadline ] || { show_logs; fail "the amendment was not taken within 30 s"; }
    sleep 0.5
done
[ "$ruleset" = "$amended_ruleset" ] || fail "expected ruleset $amended_ruleset, got $ruleset"
[ "$verdict $window_from" = "allowed 2024-03-11" ] ||
    fail "expected allowed with the window from 2024-03-11, got $verdict from $window_from"
ok "now allowed (window from 2024-03-11) under $ruleset: $reason"

step "SIGTERM stops epcsd cleanly"
stop_started=$SECONDS
# (Podman's complaint that it has no systemd to remove health check timers from is no failure.)
podman stop --time 15 "$container" >/dev/null 2>>"$tmp/podman.log" ||
    fail "podman stop failed: $(tail -3 "$tmp/podman.log")"
stopped=$(podman inspect --format '{{.State.ExitCode}}' "$container")
[ "$stopped" = 0 ] || { show_logs; fail "epcsd exited $stopped after SIGTERM"; }
[ $((SECONDS - stop_started)) -lt 10 ] || fail "the stop took $((SECONDS - stop_started)) s"
podman logs "$container" 2>&1 | grep -q 'stopped cleanly' || { show_logs; fail "no 'stopped cleanly' in the log"; }
ok "exit 0 in $((SECONDS - stop_started)) s, 'stopped cleanly'"
# The volume stays: the next container must find the ruleset this one stored.
compose -f docker/compose.yaml down

step "compose up with TLS (docker/compose.tls.yaml), same data volume"
compose -f docker/compose.yaml -f docker/compose.tls.yaml up -d --no-build
wait_healthy
wait_healthy "$proxy"
ok "epcs healthy, and the proxy healthy over TLS"
check "https://127.0.0.1:$port" --http2 --cacert "$tmp/secrets/tls.crt"
[ "$status $version" = "200 2" ] || fail "expected 200 over HTTP/2 (ALPN h2), got $status over HTTP/$version"
[ "$verdict $ruleset" = "allowed $amended_ruleset" ] ||
    fail "over TLS expected allowed under $amended_ruleset, got $verdict under $ruleset"
ok "allowed over TLS with ALPN h2, under $ruleset"
podman exec "$container" test -e "/var/lib/epcs/rulesets/$amended_ruleset" ||
    podman exec "$container" ls /var/lib/epcs/rulesets/ 2>&1 | grep -q "$amended_ruleset" ||
    fail "the data volume lost the stored ruleset $amended_ruleset"
ok "the data volume kept ruleset $amended_ruleset across containers"

step "compose down"
compose -f docker/compose.yaml -f docker/compose.tls.yaml down -v
[ -z "$(podman ps -aq)" ] || fail "containers left after compose down: $(podman ps -a)"
ok "no container left"
echo "-- single-node stage: $((SECONDS - started)) s"

# The cluster: docker/compose.cluster.yaml and its fault tests (docker/test-cluster.sh says which).
# shellcheck source=docker/test-cluster.sh
source docker/test-cluster.sh
