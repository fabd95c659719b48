# shellcheck shell=bash disable=SC2154 # $tmp, $image, $body...: docker/test.sh's
# The cluster stage of docker/test.sh, which sources this file after its single-node stage and
# gives it its helpers (step, ok, fail, run_once), its temporary directory $tmp,
# the images it built ($image, $proxy_image) and a podman that uses its private store.
#
# Builds the PostgreSQL image, runs docker/compose.cluster.yaml (a primary and a synchronous
# standby, two epcsd replicas on them with --store postgresql://pg1,pg2/..., HAProxy in front)
# and its fault tests, each printing its figures:
#   - a replica killed with SIGKILL under h2load through the proxy: failed requests (0);
#   - the primary stopped and started again, and separately paused, under load: every check
#     and filing answered 200/201 or an epcs 503 with its code, never a 500, never a client
#     timeout; the replicas' /readyz during and after; recovery without anyone's help;
#   - a ruleset activated on replica A served by replica B within 250 ms; a stale epoch 409;
#   - the standby promoted (pg_promote) while rulesets are activated and reports filed: the
#     replicas find the new primary through the multi-host URI, and every activation
#     acknowledged before, during and after is in the history.
#
# Some claims need parts of epcs that land separately. Each such check is a function that does
# the real verification; it runs when the replicas show they have the part (asked of each
# replica directly: docker/cluster-load.py probe), and is otherwise skipped with the reason.
# A part named in EPCS_CLUSTER_REQUIRE (by default every part that has landed) fails the stage
# when a replica lacks it, instead of skipping:
#   decision-log    every decision id answered 2xx is in the log, whichever replica is asked
#   cases           every Idempotency-Key maps to exactly one report, across replicas
#   readiness       /readyz false while the store is down, true after
#   outage-reads    reads of the rule store during an outage answer 503, never 500 or a hang
EPCS_CLUSTER_REQUIRE=${EPCS_CLUSTER_REQUIRE-decision-log cases readiness outage-reads}

cluster_started=$SECONDS
cproject=epcs-cluster-test
cnetwork=${cproject}_default
networks+=("$cnetwork")
pg_image=localhost/epcs-postgres:test
pg1=${cproject}_pg1_1 pg2=${cproject}_pg2_1
epcs1=${cproject}_epcs1_1 epcs2=${cproject}_epcs2_1
cproxy=${cproject}_proxy_1
load=(/usr/bin/python3 docker/cluster-load.py)
cluster_ran=()
cluster_skipped=()

ran() {
    cluster_ran+=("$1")
    ok "$1: $2"
}
skipped() {
    cluster_skipped+=("$1: $2")
    echo "skipped: $1: $2"
}
required() { [[ " $EPCS_CLUSTER_REQUIRE " == *" $1 "* ]]; }

cluster_logs() {
    local c
    for c in "$pg1" "$pg2" "$epcs1" "$epcs2" "$cproxy"; do
        echo "--- $c (last 15 lines) ---" >&2
        podman logs "$c" 2>&1 | grep -v '"path":"/readyz"' | tail -15 >&2 || true
    done
}
cfail() {
    cluster_logs
    fail "$@"
}
ccompose() {
    podman-compose -p "$cproject" -f docker/compose.cluster.yaml "$@" >>"$tmp/cluster-compose.log" 2>&1 ||
        { tail -30 "$tmp/cluster-compose.log" >&2; cfail "podman-compose $* (cluster) failed (log above)"; }
}
ip_of() { podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
# SQL on a database node, as postgres over its socket.
psql_on() { podman exec "$1" psql -Atq -v ON_ERROR_STOP=1 -d epcs -c "$2"; }
http_status() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" || true; }

# Until `node` is a primary with a synchronous (quorum) standby streaming: its name.
wait_sync_standby() {
    local node=$1 deadline=$((SECONDS + 90)) standby
    until standby=$(psql_on "$node" "SELECT application_name FROM pg_stat_replication
            WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum') LIMIT 1" 2>/dev/null) &&
        [ -n "$standby" ]; do
        [ $SECONDS -lt $deadline ] || cfail "no synchronous standby streams from $node within 90 s"
        sleep 1
    done
    echo "$standby"
}

# Both replicas' /readyz, polled every 200 ms into FILE as "seconds a b" until STOP exists (or
# the stage is gone: a failure's cleanup removes $tmp), 5 minutes at most.
watch_readiness() {
    local out=$1 stop=$2 t0=$SECONDS
    while [ ! -e "$stop" ] && [ -d "$tmp" ] && [ $((SECONDS - t0)) -lt 300 ]; do
        echo "$((SECONDS - t0)) $(http_status "$a_url/readyz") $(http_status "$b_url/readyz")" >>"$out"
        sleep 0.2
    done
}

# Until both replicas' /readyz is 200 (at most `limit` seconds): the seconds it took.
wait_ready() {
    local limit=$1 t0=$SECONDS
    until [ "$(http_status "$a_url/readyz")" = 200 ] && [ "$(http_status "$b_url/readyz")" = 200 ]; do
        [ $((SECONDS - t0)) -lt "$limit" ] || return 1
        sleep 0.2
    done
    echo $((SECONDS - t0))
}

# A load's figures: no check or filing answered other than 2xx or an epcs 503, no client
# timeout, no broken connection.
judge_load() {
    local what=$1 file=$2
    /usr/bin/python3 - "$file" "$what" <<'EOF' || cfail "$what: answers other than 2xx or an epcs 503 with its code (above)"
import json, sys
s = json.load(open(sys.argv[1]))
bad = {k: v for k, v in s["bad_by_kind"].items() if k in ("check", "report")}
if bad or s["answers"] == 0:
    for u in s["unexpected"][:5]:
        print("  %s" % json.dumps(u)[:300], file=sys.stderr)
    for e in s["transport_error_texts"][:5]:
        print("  transport: %s" % e, file=sys.stderr)
    sys.exit("%s: %d answers; bad checks and filings: %s" % (sys.argv[2], s["answers"], bad))
EOF
}

# The rule store's reads during an outage (GET /v1/rules/versions in the load): 503, never 500
# or a hang. Judged, and printed, in any case; fails the stage only once required.
judge_outage_reads() {
    local what=$1 file=$2 bad
    bad=$(/usr/bin/python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["bad_by_kind"].get("rules", 0))' "$file")
    if [ "$bad" = 0 ]; then
        ran "outage-reads ($what)" "every rule store read answered 200 or an epcs 503"
    elif required outage-reads; then
        cfail "$what: $bad rule store reads answered 500 or not at all (EPCS_CLUSTER_REQUIRE has outage-reads)"
    else
        skipped "outage-reads ($what)" "NOT MET: $bad reads of GET /v1/rules/versions answered 500 or timed out; not required yet (add outage-reads to EPCS_CLUSTER_REQUIRE once it holds)"
    fi
}

# What the replicas share: the probe's "PART yes|no WHY" lines.
supports() { grep -q "^$1 yes" "$tmp/cluster-probe.txt"; }
why_not() { sed -n "s/^$1 no //p" "$tmp/cluster-probe.txt"; }
# gated PART CLAIM FUNCTION ARGS...: runs the check when the replicas have the part.
gated() {
    local part=$1 claim=$2
    shift 2
    if supports "$part"; then
        "$@" || cfail "$claim (output above)"
        ran "$part" "$claim"
    elif required "$part"; then
        cfail "$claim: EPCS_CLUSTER_REQUIRE names $part, but the replicas do not have it: $(why_not "$part")"
    else
        skipped "$part" "$claim: not checked, the replicas do not share it yet ($(why_not "$part"))"
    fi
}
check_decisions_in_log() {
    "${load[@]}" decisions "$proxy_url" "$load_token" "$1"
}
check_one_report_per_key() {
    "${load[@]}" reports "$proxy_url" "$load_token" "$1"
}

# --- images, secrets, up ---------------------------------------------------------------------

step "cluster: build the PostgreSQL image (docker/postgres/Dockerfile)"
build_started=$SECONDS
if ! podman build --format docker --pull=never --network host \
    -f docker/postgres/Dockerfile -t "$pg_image" . >"$tmp/build-postgres.log" 2>&1; then
    tail -40 "$tmp/build-postgres.log" >&2
    fail "podman build of the PostgreSQL image failed (log above)"
fi
pg_version=$(run_once "$pg_image" postgres --version 2>&1) || true
[[ $pg_version == "postgres (PostgreSQL) 15."* ]] || fail "the PostgreSQL image does not run PostgreSQL 15: '$pg_version'"
ok "PostgreSQL image in $((SECONDS - build_started)) s: $pg_version, runs as $(podman image inspect --format '{{.Config.User}}' "$pg_image")"

step "cluster: database passwords, certificate, rules"
csecrets=$tmp/cluster-secrets
install -d -o 10001 -g 10001 -m 0700 "$csecrets"
printf '*:*:epcs:epcs:%s\n' "$(openssl rand -hex 24)" >"$csecrets/pgpass_epcs"
printf '*:*:*:replicator:%s\n' "$(openssl rand -hex 24)" >"$csecrets/pgpass_replication"
cp "$tmp/secrets/tls.crt" "$tmp/secrets/tls.key" "$csecrets/"
chown 10001:10001 "$csecrets"/*
chmod 0600 "$csecrets"/*
cp -r lua_rules "$tmp/cluster-rules"
ok "two role passwords (pgpass files, uid 10001, 0600), the test certificate"

cport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ctls=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export EPCS_IMAGE=$image EPCS_PROXY_IMAGE=$proxy_image EPCS_POSTGRES_IMAGE=$pg_image
export EPCS_PUBLISH=127.0.0.1:$cport EPCS_PUBLISH_TLS=127.0.0.1:$ctls
export EPCS_RULES=$tmp/cluster-rules
export EPCS_TLS_CERT=$csecrets/tls.crt EPCS_TLS_KEY=$csecrets/tls.key
export EPCS_PGPASS_EPCS=$csecrets/pgpass_epcs EPCS_PGPASS_REPLICATION=$csecrets/pgpass_replication
proxy_url=http://127.0.0.1:$cport

step "cluster: up (docker/compose.cluster.yaml): primary, synchronous standby, two replicas, proxy"
up_started=$SECONDS
ccompose up -d --no-build pg1 pg2
standby=$(wait_sync_standby "$pg1")
[ "$standby" = pg2 ] || cfail "expected pg2 as pg1's synchronous standby, got '$standby'"
[ "$(psql_on "$pg2" 'SELECT pg_is_in_recovery()')" = t ] || cfail "pg2 is not in recovery (not a standby)"
ok "pg1 primary; pg2 cloned from it (pg_basebackup) and streaming as its synchronous standby ($(psql_on "$pg1" 'SHOW synchronous_standby_names'))"
# The keys are the cluster's, in the database: made by the image's epcsd on the compose network.
store_uri=$(sed -n "s/.*--store '\([^']*\)'.*/\1/p" docker/compose.cluster.yaml)
[[ $store_uri == postgresql://* ]] || cfail "no --store URI found in docker/compose.cluster.yaml"
new_key() {
    podman run --rm --no-healthcheck --network "$cnetwork" \
        -v "$csecrets/pgpass_epcs:/run/secrets/pgpass_epcs:ro" -e PGPASSFILE=/run/secrets/pgpass_epcs \
        "$image" epcsd keys create --store "$store_uri" "$@" 2>>"$tmp/keys.log" ||
        cfail "epcsd keys create --store $* failed: $(tail -3 "$tmp/keys.log")"
}
staff_token=$(new_key --partner test --role staff)
# A platform partner, so that reports naming it are accepted; and a staff key whose rate
# leaves the load unlimited (the default 1000/s would answer 429s).
new_key --partner naver --role partner >/dev/null
load_token=$(new_key --partner load --role staff --rate 1000000)
[[ $staff_token =~ ^epcs_[0-9a-f]+_[0-9a-f]+$ ]] || cfail "epcsd keys create printed '$staff_token', not a token"
ok "three API keys in the database (epcsd keys create --store, on the compose network)"
ccompose up -d --no-build
# Until the container's own health check passes (Podman runs none without systemd).
cluster_healthy() {
    local deadline=$((SECONDS + 60))
    until podman healthcheck run "$1" >/dev/null 2>&1; do
        [ "$(podman inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" = true ] ||
            cfail "the container $1 is not running"
        [ $SECONDS -lt $deadline ] || cfail "no healthy answer from $1's health check within 60 s"
        sleep 1
    done
}
for c in "$epcs1" "$epcs2" "$cproxy"; do
    cluster_healthy "$c"
done
ok "replicas and proxy healthy on /readyz in $((SECONDS - up_started)) s"
for c in "$pg1" "$pg2" "$epcs1" "$epcs2"; do
    [ -z "$(podman port "$c")" ] || cfail "$c publishes a port: $(podman port "$c")"
done
[ "$(podman port "$cproxy" | sort | tr '\n' ' ')" = "8080/tcp -> 127.0.0.1:$cport 8443/tcp -> 127.0.0.1:$ctls " ] ||
    cfail "expected the proxy on 127.0.0.1:$cport and :$ctls, got: $(podman port "$cproxy")"
ok "only the proxy is published (h2c/HTTP/1.1 on $cport, TLS on $ctls); no replica's or database's port is"
a_url=http://$(ip_of "$epcs1"):8080
b_url=http://$(ip_of "$epcs2"):8080

printf '%s' "$body" >"$tmp/check.json"
# through URL CURL-ARGS...: the status and HTTP version of a check through the proxy.
through() {
    local url=$1
    shift
    curl -s -o /dev/null -w '%{http_code} %{http_version}' "$@" "$url/v1/check" \
        -H 'content-type: application/json' -H "authorization: Bearer $staff_token" -d "$body" || true
}
[ "$(through "$proxy_url" --http2-prior-knowledge)" = "200 2" ] || cfail "no 200 over h2c through the proxy"
[ "$(through "$proxy_url" --http1.1)" = "200 1.1" ] || cfail "no 200 over HTTP/1.1 through the proxy"
[ "$(through "https://127.0.0.1:$ctls" --http2 --cacert "$csecrets/tls.crt")" = "200 2" ] ||
    cfail "no 200 over TLS with ALPN h2 through the proxy"
ok "checks through the proxy: h2c and HTTP/1.1 on one port, TLS with ALPN h2 on the other"
# Which replica answered is in the access log: both must have had checks from the proxy.
h2load -n 200 -c 2 -m 4 -d "$tmp/check.json" -H 'content-type: application/json' \
    -H "authorization: Bearer $load_token" "$proxy_url/v1/check" >"$tmp/cluster-spread.txt" 2>&1 ||
    cfail "h2load failed: $(tail -3 "$tmp/cluster-spread.txt")"
for c in "$epcs1" "$epcs2"; do
    served=$(podman logs "$c" 2>&1 | grep -c '"path":"/v1/check","status":200.*"protocol":"HTTP/2"' || true)
    [ "$served" -gt 0 ] || cfail "$c answered no check over HTTP/2 from the proxy"
done
ok "both replicas answer checks, over h2 from the proxy; their /readyz is its health check"

"${load[@]}" probe "$a_url" "$b_url" "$staff_token" >"$tmp/cluster-probe.txt" ||
    cfail "the probe of the replicas failed: $(cat "$tmp/cluster-probe.txt")"
echo "what the replicas share (asked of each directly):"
sed 's/^/  /' "$tmp/cluster-probe.txt"

step "cluster: no replica ready: the proxy answers epcs's 503 not_ready, in JSON and msgpack"
podman pause "$epcs1" "$epcs2" >/dev/null
deadline=$((SECONDS + 15))
until [ "$(http_status "$proxy_url/healthz")" = 503 ]; do
    [ $SECONDS -lt $deadline ] || { podman unpause "$epcs1" "$epcs2" >/dev/null; cfail "the proxy still sends to paused replicas after 15 s"; }
    sleep 0.5
done
for media in application/json application/msgpack; do
    rm -f "$tmp/headers.txt" "$tmp/not-ready.bin"
    rc=0
    curl -sS -D "$tmp/headers.txt" -o "$tmp/not-ready.bin" --http2-prior-knowledge "$proxy_url/v1/check" \
        -H "content-type: $media" -H "accept: $media" -H "authorization: Bearer $staff_token" \
        --data-binary @"$tmp/check.json" 2>"$tmp/curl.err" || rc=$?
    /usr/bin/python3 - "$tmp/headers.txt" "$tmp/not-ready.bin" "$media" "$rc" "$tmp/curl.err" <<'EOF' ||
import json, sys
import msgpack
assert sys.argv[4] == "0", "curl exit %s: %s" % (sys.argv[4], open(sys.argv[5]).read())
headers = open(sys.argv[1]).read().lower()
data = open(sys.argv[2], "rb").read()
body = msgpack.unpackb(data) if sys.argv[3].endswith("msgpack") else json.loads(data)
assert headers.startswith("http/2 503"), headers
assert "content-type: %s" % sys.argv[3] in headers and "retry-after: 1" in headers, headers
assert body["error"] == "not_ready" and body["message"], body
EOF
        { podman unpause "$epcs1" "$epcs2" >/dev/null; cfail "the proxy's answer with no replica ready is not epcs's 503 not_ready in $media"; }
done
podman unpause "$epcs1" "$epcs2" >/dev/null
wait_ready 30 >/dev/null || cfail "the replicas were not ready again within 30 s of being unpaused"
deadline=$((SECONDS + 15))
until [ "$(http_status "$proxy_url/healthz")" = 200 ]; do
    [ $SECONDS -lt $deadline ] || cfail "the proxy did not take the replicas back within 15 s"
    sleep 0.5
done
ok "503 not_ready with retry-after: 1 in the format asked for; served again once they answer"

step "cluster: a reset flood through the proxy while a keyed client is served"
flood_pids=()
for n in 1 2; do
    /usr/bin/python3 tests/integration/h2_flood.py "$cport" "$staff_token" 6 >"$tmp/cflood.$n.json" 2>&1 &
    flood_pids+=($!)
done
sleep 0.5
h2load -n 300 -c 1 -m 1 -d "$tmp/check.json" -H 'content-type: application/json' \
    -H "authorization: Bearer $staff_token" --log-file "$tmp/cflood-h2load.log" "$proxy_url/v1/check" \
    >"$tmp/cflood-h2load.txt" 2>&1 || cfail "h2load failed: $(tail -3 "$tmp/cflood-h2load.txt")"
wait "${flood_pids[@]}" || cfail "the flood did not run: $(cat "$tmp"/cflood.*.json)"
grep -q 'status codes: 300 2xx' "$tmp/cflood-h2load.txt" ||
    { cat "$tmp/cflood-h2load.txt" >&2; cfail "keyed checks got other answers than 200 under the flood"; }
p99=$(awk '{print $3}' "$tmp/cflood-h2load.log" | sort -n | awk '{v[NR]=$1} END {print v[int(NR*0.99)]/1000}')
ok "300 keyed checks all 200 under a reset flood of two clients (p99 $p99 ms), h2 to the replicas"

# --- (a) a replica killed -------------------------------------------------------------------

step "cluster fault: SIGKILL a replica under h2load through the proxy"
requests=30000
rm -f "$tmp/stop-a"
"${load[@]}" load "$proxy_url" "$load_token" "$tmp/load-a.json" --stop-file "$tmp/stop-a" \
    --clients 2 --reports-every 5 >"$tmp/load-a.txt" 2>&1 &
load_pid=$!
h2load -n "$requests" -c 4 -m 10 -d "$tmp/check.json" -H 'content-type: application/json' \
    -H "authorization: Bearer $load_token" "$proxy_url/v1/check" >"$tmp/kill-h2load.txt" 2>&1 &
h2load_pid=$!
sleep 2
# The kill must land mid-load, or no retry is proved.
kill -0 "$h2load_pid" 2>/dev/null || cfail "h2load finished its $requests checks within 2 s, before the kill: raise requests"
restarts=$(podman inspect --format '{{.RestartCount}}' "$epcs1")
killed_pid=$(podman inspect --format '{{.State.Pid}}' "$epcs1")
# From the host, as a crash would: epcsd is PID 1 of its namespace, where SIGKILL cannot reach it.
kill -KILL "$killed_pid"
killed_at=$SECONDS
sleep 1
kill -0 "$h2load_pid" 2>/dev/null || cfail "h2load finished within a second of the kill: raise requests"
wait "$h2load_pid" || true
touch "$tmp/stop-a"
wait "$load_pid" || cfail "the load client failed: $(cat "$tmp/load-a.txt")"
read -r total done_ succeeded failed errored timeouts < <(sed -n \
    's/^requests: \([0-9]*\) total, [0-9]* started, \([0-9]*\) done, \([0-9]*\) succeeded, \([0-9]*\) failed, \([0-9]*\) errored, \([0-9]*\) timeout$/\1 \2 \3 \4 \5 \6/p' \
    "$tmp/kill-h2load.txt")
[ -n "${total:-}" ] || { cat "$tmp/kill-h2load.txt" >&2; cfail "no figures from h2load"; }
echo "h2load: $requests checks, replica epcs1 killed 2 s in: $done_ done, $succeeded succeeded, $failed failed, $errored errored, $timeouts timed out; $(grep '^status codes' "$tmp/kill-h2load.txt")"
echo "load client (checks and keyed filings): $(cat "$tmp/load-a.txt")"
if [ "$failed $errored $timeouts" != "0 0 0" ] || [ "$succeeded" != "$requests" ]; then
    cfail "with the proxy's retries no check may fail when a replica dies: $failed failed, $errored errored, $timeouts timed out"
fi
judge_load "SIGKILL" "$tmp/load-a.json"
ran "SIGKILL under load" "0 of $requests h2load checks failed, and no check or filing of the load client"
deadline=$((SECONDS + 60))
until [ "$(podman inspect --format '{{.RestartCount}} {{.State.Running}}' "$epcs1")" = "$((restarts + 1)) true" ]; do
    [ $SECONDS -lt $deadline ] || cfail "Podman did not restart the killed replica (restart: unless-stopped) within 60 s"
    sleep 0.5
done
wait_ready 60 >/dev/null || cfail "the restarted replica was not ready within 60 s"
ok "Podman restarted the killed replica by its restart policy; ready again $((SECONDS - killed_at)) s after the kill"
gated decision-log "every decision answered 2xx while a replica died is in the log" \
    check_decisions_in_log "$tmp/load-a.json"
gated cases "every Idempotency-Key filed while a replica died maps to exactly one report" \
    check_one_report_per_key "$tmp/load-a.json"
skipped "sweep" "no sweep step twice: not checked here (it needs requests past their due time, 24 h after filing)"

# --- rulesets: an activation on A, served by B ----------------------------------------------

step "cluster: a ruleset activated on replica A is served by replica B within 250 ms"
# The ruleset a replica serves (GET /v1/rules).
serving() {
    curl -s -m 5 "$1/v1/rules" -H 'accept: application/json' -H "authorization: Bearer $staff_token" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["ruleset"])' 2>/dev/null || true
}
baseline=$(serving "$a_url")
cp -r lua_rules "$tmp/cluster-amended"
python3 docker/amend-rules.py "$tmp/cluster-amended" accepted || cfail "cannot amend lua_rules/"
# A second stored version: the mounted directory amended, as staff would; both replicas load it.
for file in false_information.lua deepfake.lua; do
    cp "$tmp/cluster-amended/$file" "$tmp/cluster-rules/.$file.new"
done
for file in false_information.lua deepfake.lua; do
    mv "$tmp/cluster-rules/.$file.new" "$tmp/cluster-rules/$file"
done
deadline=$((SECONDS + 30))
amended=$baseline
while [ "$amended" = "$baseline" ]; do
    [ $SECONDS -lt $deadline ] || cfail "the amended directory was not taken within 30 s"
    sleep 0.5
    amended=$(serving "$b_url")
done
echo "stored: $baseline (the directory at start), $amended (amended)"
"${load[@]}" follow "$a_url" "$b_url" "$staff_token" "$baseline" || cfail "B did not follow A's activation within 250 ms"
"${load[@]}" follow "$b_url" "$a_url" "$staff_token" "$amended" || cfail "A did not follow B's activation within 250 ms"
ran "rules" "activations by id on either replica served by the other within 250 ms; stale epochs 409"
# Each replica lists both, live and ready, serving what B activated last (beats once a second);
# the run of the replica killed above is silent, not live.
deadline=$((SECONDS + 10))
until listed=$(curl -s -m 5 "$proxy_url/v1/admin/cluster" -H 'accept: application/json' \
    -H "authorization: Bearer $staff_token" | python3 -c '
import json, sys
cluster, wanted = json.load(sys.stdin), sys.argv[1]
rows = [(r["state"], r["ready"], r["ruleset"]) for r in cluster["replicas"] if r["state"] == "live"]
assert cluster["live"] == 2 and rows == [("live", True, wanted)] * 2, cluster
print(", ".join("run %d on %s" % (r["run"], r["host"]) for r in cluster["replicas"]
                if r["state"] == "live"))' "$amended" 2>"$tmp/cluster-list.txt"); do
    [ $SECONDS -lt $deadline ] || cfail "GET /v1/admin/cluster does not list two live replicas serving $amended: $(tail -2 "$tmp/cluster-list.txt")"
    sleep 0.5
done
ok "GET /v1/admin/cluster through the proxy: $listed, live and ready, both serving $amended"

# --- (b) the primary restarted, then paused -------------------------------------------------

# outage NAME COMMANDS...: load and readiness watched while COMMANDS take the primary away and
# give it back; then the judgement.
outage() {
    local name=$1
    shift
    rm -f "$tmp/stop-$name" "$tmp/ready-$name.txt"
    "${load[@]}" load "$proxy_url" "$load_token" "$tmp/load-$name.json" --stop-file "$tmp/stop-$name" \
        --clients 4 --reports-every 5 --rules-reads-every 20 --timeout 15 >"$tmp/load-$name.txt" 2>&1 &
    local lpid=$!
    watch_readiness "$tmp/ready-$name.txt" "$tmp/stop-$name" &
    local wpid=$!
    sleep 2
    local t0=$SECONDS
    "$@"
    local outage_s=$((SECONDS - t0)) recovered standby
    recovered=$(wait_ready 60) || { touch "$tmp/stop-$name"; cfail "$name: the replicas were not ready within 60 s of the primary's return"; }
    standby=$(wait_sync_standby "$pg1")
    [ "$standby" = pg2 ] || cfail "$name: pg2 is not pg1's synchronous standby again (got '$standby')"
    # An activation is a write to the primary: the store works again, found by the replicas.
    local next=$baseline
    [ "$(serving "$a_url")" = "$baseline" ] && next=$amended
    "${load[@]}" follow "$a_url" "$b_url" "$staff_token" "$next" --limit-ms 5000 >"$tmp/after-$name.txt" ||
        { touch "$tmp/stop-$name"; cfail "$name: no activation through the store after recovery: $(cat "$tmp/after-$name.txt")"; }
    sleep 2
    touch "$tmp/stop-$name"
    wait "$lpid" || cfail "$name: the load client failed: $(cat "$tmp/load-$name.txt")"
    wait "$wpid" || true
    local seen
    seen=$(awk '{ a[$2]++; b[$3]++ } END { printf "A:"; for (s in a) printf " %s x%d", s, a[s];
        printf "; B:"; for (s in b) printf " %s x%d", s, b[s] }' "$tmp/ready-$name.txt")
    echo "$name: primary away for ${outage_s} s, pg2 its synchronous standby again after; load: $(cat "$tmp/load-$name.txt")"
    echo "$name: /readyz every 200 ms, $seen; both ready ${recovered} s after the primary's return; then $(cat "$tmp/after-$name.txt")"
    judge_load "$name" "$tmp/load-$name.json"
    ran "$name: answers" "every check and filing answered 2xx or an epcs 503 with its code: no 500, no client timeout (15 s)"
    ran "$name: recovery" "ready, and writing to the store, ${recovered} s after the primary came back, unattended"
    if supports readiness; then
        awk '$2 != 200 { a = 1 } $3 != 200 { b = 1 } END { exit !(a && b) }' "$tmp/ready-$name.txt" ||
            cfail "$name: /readyz of the replicas never turned false while the primary was away"
        ran "readiness ($name)" "/readyz of both replicas false during the outage, true after"
    elif required readiness; then
        cfail "$name: EPCS_CLUSTER_REQUIRE names readiness, but the replicas do not have it: $(why_not readiness)"
    else
        skipped "readiness ($name)" "/readyz false during the outage: not checked, $(why_not readiness)"
    fi
    judge_outage_reads "$name" "$tmp/load-$name.json"
}

stop_start_primary() {
    local t0=$SECONDS
    podman stop --time 10 "$pg1" >/dev/null 2>>"$tmp/podman.log"
    echo "restart: pg1 stopped (fast shutdown) in $((SECONDS - t0)) s; started again 5 s later"
    sleep 5
    podman start "$pg1" >/dev/null 2>>"$tmp/podman.log"
}
# 10 s: a paused database is noticed only once a call to it has waited --store-timeout (5 s).
pause_primary() {
    podman pause "$pg1" >/dev/null
    sleep 10
    podman unpause "$pg1" >/dev/null
}

step "cluster fault: the primary stopped for 5 s and started again, under load"
outage restart stop_start_primary
step "cluster fault: the primary paused for 10 s (podman pause), under load"
outage pause pause_primary

# --- (c) failover ---------------------------------------------------------------------------

step "cluster fault: promote the standby (pg_promote) while activating and filing"
rm -f "$tmp/stop-c"
"${load[@]}" load "$proxy_url" "$load_token" "$tmp/load-c.json" --stop-file "$tmp/stop-c" \
    --clients 3 --reports-every 3 --timeout 15 >"$tmp/load-c.txt" 2>&1 &
lpid=$!
"${load[@]}" activations "$proxy_url" "$staff_token" "$tmp/activations-c.json" "$baseline" "$amended" \
    --stop-file "$tmp/stop-c" >"$tmp/activations-c.txt" 2>&1 &
apid=$!
sleep 3
# The old primary is fenced first (stopped): two writable primaries would split the cluster.
podman stop --time 10 "$pg1" >/dev/null 2>>"$tmp/podman.log"
promote_started=$SECONDS
promoted_at=$(date +%s.%N)
[ "$(psql_on "$pg2" 'SELECT pg_promote()')" = t ] || cfail "pg_promote() on pg2 did not promote it"
# No standby is left to acknowledge commits: until pg1 is back as one, pg2 commits alone (what
# Patroni's synchronous_mode does when the last standby goes), or every commit would wait.
psql_on "$pg2" "ALTER SYSTEM SET synchronous_standby_names = ''" >/dev/null
psql_on "$pg2" 'SELECT pg_reload_conf()' >/dev/null
[ "$(psql_on "$pg2" 'SELECT pg_is_in_recovery()')" = f ] || cfail "pg2 is still in recovery after pg_promote"
# Both replicas connected to the new primary: their addresses among pg2's sessions on epcs.
deadline=$((SECONDS + 30))
a_ip=$(ip_of "$epcs1") b_ip=$(ip_of "$epcs2")
until sessions=$(psql_on "$pg2" "SELECT string_agg(DISTINCT host(client_addr), ' ') FROM pg_stat_activity WHERE datname = 'epcs'") &&
    [[ " $sessions " == *" $a_ip "* && " $sessions " == *" $b_ip "* ]]; do
    [ $SECONDS -lt $deadline ] || cfail "the replicas did not connect to the promoted pg2 within 30 s (sessions from: ${sessions:-none})"
    sleep 0.2
done
reconnected=$((SECONDS - promote_started))
sleep 3
touch "$tmp/stop-c"
wait "$lpid" || cfail "the load client failed: $(cat "$tmp/load-c.txt")"
wait "$apid" || cfail "the activation client failed: $(cat "$tmp/activations-c.txt")"
echo "promote: both replicas connected to pg2 ${reconnected} s after pg_promote; load: $(cat "$tmp/load-c.txt")"
echo "promote: activations through the proxy: $(cat "$tmp/activations-c.txt")"
judge_load "promote" "$tmp/load-c.json"
after=$(/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(sum(1 for a in d["acknowledged"] if a["at"] > float(sys.argv[2])))' "$tmp/activations-c.json" "$promoted_at")
[ "$after" -gt 0 ] || cfail "no activation was acknowledged after the promotion"
"${load[@]}" history "$proxy_url" "$staff_token" "$tmp/activations-c.json" ||
    cfail "an acknowledged activation is missing from the history on the promoted primary"
ran "promote" "replicas on pg2 through the multi-host URI in ${reconnected} s; $after activations acknowledged after it; every acknowledged one in the history"
gated decision-log "every decision answered 2xx across the failover is in the log" \
    check_decisions_in_log "$tmp/load-c.json"
gated cases "every Idempotency-Key filed across the failover maps to exactly one report" \
    check_one_report_per_key "$tmp/load-c.json"

step "cluster: the former primary rejoins as a standby of pg2 (a new clone)"
rejoin_started=$SECONDS
podman rm --force --time 0 "$pg1" >/dev/null 2>>"$tmp/podman.log"
podman volume rm --force "${cproject}_pg1-data" >/dev/null
ccompose up -d --no-build pg1
podman logs "$pg1" 2>&1 | grep -q 'cloning the primary pg2' || { sleep 3; podman logs "$pg1" 2>&1 | grep -q 'cloning the primary pg2'; } ||
    cfail "pg1 did not clone pg2"
psql_on "$pg2" 'ALTER SYSTEM RESET synchronous_standby_names' >/dev/null
psql_on "$pg2" 'SELECT pg_reload_conf()' >/dev/null
standby=$(wait_sync_standby "$pg2")
[ "$standby" = pg1 ] || cfail "expected pg1 as pg2's synchronous standby, got '$standby'"
ok "pg1 cloned from pg2 and streaming as its synchronous standby in $((SECONDS - rejoin_started)) s"

step "cluster: compose down"
ccompose down -v
[ -z "$(podman ps -aq)" ] || fail "containers left after the cluster's compose down: $(podman ps -a)"
echo "cluster checks run: ${#cluster_ran[@]}; skipped: ${#cluster_skipped[@]}"
for item in "${cluster_skipped[@]}"; do
    echo "  skipped: $item"
done
echo "-- cluster stage: $((SECONDS - cluster_started)) s"
