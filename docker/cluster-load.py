#!/usr/bin/python3
"""Load and verification for docker/test.sh's cluster stage: clients of the proxy that record
every answer, and the checks of what the cluster must have kept afterwards.

    cluster-load.py load URL TOKEN OUT [--seconds S | --stop-file F] [--clients N]
                         [--reports-every K] [--rules-reads-every R] [--timeout S]
        Clients (threads, each with one HTTP/1.1 keep-alive connection to the proxy) post
        checks, alternately in JSON and msgpack, and every K-th request a report carrying an
        Idempotency-Key (0: none), and every R-th a read of the rule store (GET
        /v1/rules/versions; 0: none). Runs for S seconds, or until file F exists. Writes OUT (JSON):
        counts by status and error code, the answers that are neither 2xx nor an epcs 503 with
        its code, the slowest answer, client timeouts, and every decision and filing answered
        2xx. Prints one line of figures. Exit 0 whatever the answers were: the caller judges.

    cluster-load.py decisions URL TOKEN IN
        Every decision IN says was answered 2xx is in the log: GET /v1/decisions/{id} gives the
        decision with the date and request the check sent. Exit 1 naming the missing ones.

    cluster-load.py reports URL TOKEN IN
        Every Idempotency-Key IN says was answered 2xx maps to exactly one report: the filing
        sent again with its key (the same bytes) gives the same report back, marked
        idempotent-replayed, and the store lists exactly one report of the posting. Exit 1
        naming the ones that do not.

    cluster-load.py follow URL_A URL_B TOKEN RULESET
        Activates stored RULESET on replica A (POST /v1/admin/rules/activate with the epoch A
        serves) and times how long replica B takes to serve it at the new epoch, polling B's
        GET /v1/rules over one connection; then asks B to activate it again on the old epoch,
        which must be refused (409 stale_epoch). Prints the figures; exit 1 when A does not
        activate, B does not follow within 5 s, or the stale epoch is not refused.

    cluster-load.py activations URL TOKEN OUT RULESET RULESET --stop-file F
        Activates the two stored rulesets in turn through URL until file F exists, each on the
        epoch the last answer gave, and writes OUT: every activation answered 200, and the
        answers that were not.

    cluster-load.py history URL TOKEN IN
        Every activation IN says was answered 200 is in the activation history (GET
        /v1/rules/versions), in order. Exit 1 naming the missing ones.

    cluster-load.py probe URL_A URL_B TOKEN
        What the running replicas share, asked of each directly; one line per part,
        "PART yes|no WHY": decision-log (a decision answered by A is B's GET
        /v1/decisions/{id}), cases (B answers the same filing with A's key by A's answer,
        marked idempotent-replayed, and the key with another body is 422 on A), readiness
        (/readyz says how the store is: a "store" member).

URL is the proxy's or a replica's (http://HOST:PORT); TOKEN a staff key. Uses Debian's
python3-msgpack.
"""

import argparse
import datetime
import http.client
import json
import os
import socket
import sys
import threading
import time
import urllib.parse
import uuid

import msgpack

JSON = "application/json"
MSGPACK = "application/msgpack"
# What epcs answers with 503 and its code; anything else on 503 (an HTML page, no body) is not
# epcs's answer.
EPCS_503_CODES = {"not_ready", "decision_log_unavailable", "store_unavailable"}
CAMPAIGN_DAY = datetime.date(2024, 1, 11)


def check_body(n):
    """A deepfake check for one of the 90 days of the na22 campaign window: a day per request,
    so that the decision the log gives back for an id can be told from another's."""
    date = (CAMPAIGN_DAY + datetime.timedelta(days=n % 90)).isoformat()
    return {"election": "na22", "area": "deepfake", "date": date, "actor": {"kind": "voter"},
            "activity": {"kind": "post", "deepfake": True, "purpose": "campaign",
                         "labeled": True}}


def report_body(run, n):
    return {"url": "https://blog.naver.com/epcs-cluster-test/%s/%d" % (run, n),
            "platform": "naver", "election": "na22", "category": "false_fact",
            "date": "2024-03-01",
            "facts": {"intent": "to_defeat", "target": "candidate", "poster_identified": True}}


def decode(content_type, data):
    if not data:
        return None
    try:
        if content_type.startswith(MSGPACK):
            return msgpack.unpackb(data, raw=False)
        if content_type.startswith(JSON):
            return json.loads(data)
    except ValueError:
        return None
    return None


class Client:
    """One keep-alive HTTP/1.1 connection, made again after a transport failure."""

    def __init__(self, url, token, timeout):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.token = token
        self.timeout = timeout
        self.conn = None
        # The last answer's headers, lower-cased names.
        self.headers = {}
        self.used = False
        self.stale_retries = 0
        self.error = None

    def request(self, method, path, document=None, media=JSON, headers=None):
        """(status, content type, decoded body or None, seconds); status None on a transport
        failure, "timeout" when the answer did not come within the client's timeout."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        all_headers = {"authorization": "Bearer " + self.token, "accept": media}
        body = None
        if document is not None:
            body = msgpack.packb(document) if media == MSGPACK else json.dumps(document).encode()
            all_headers["content-type"] = media
        all_headers.update(headers or {})
        started = time.monotonic()
        self.error = None
        # A kept-alive connection the proxy closed just as the request went out fails before
        # any answer: HTTP/1.1 lets a client send it again on a new connection (RFC 9112
        # 9.3.1), once. Counted, so the figures show it.
        for attempt in (1, 2):
            reused = self.used
            try:
                self.conn.request(method, path, body, all_headers)
                response = self.conn.getresponse()
                data = response.read()
                self.used = True
                break
            except socket.timeout:
                self.close()
                return "timeout", "", None, time.monotonic() - started
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                self.close()
                if reused and attempt == 1:
                    self.stale_retries += 1
                    self.conn = http.client.HTTPConnection(self.host, self.port,
                                                           timeout=self.timeout)
                    continue
                self.error = "%s: %s (%s connection)" % (type(e).__name__, e,
                                                         "reused" if reused else "new")
                return None, "", None, time.monotonic() - started
            except (OSError, http.client.HTTPException) as e:
                self.close()
                self.error = "%s: %s" % (type(e).__name__, e)
                return None, "", None, time.monotonic() - started
        if response.getheader("connection", "").lower() == "close":
            self.close()
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        content_type = response.getheader("content-type", "")
        return response.status, content_type, decode(content_type, data), \
            time.monotonic() - started

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.used = False


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.by_status = {}
        self.by_error = {}
        self.unexpected = []
        self.timeouts = 0
        self.transport_errors = 0
        self.bad_by_kind = {}
        self.errors = []
        self.stale_retries = 0
        self.slowest = 0.0
        self.decisions = []
        self.filings = []

    def answer(self, kind, status, document, seconds, error=None):
        with self.lock:
            if error is not None and len(self.errors) < 10:
                self.errors.append("%s: %s" % (kind, error))
            self.slowest = max(self.slowest, seconds)
            if status == "timeout" or status is None:
                if status == "timeout":
                    self.timeouts += 1
                else:
                    self.transport_errors += 1
                self.bad_by_kind[kind] = self.bad_by_kind.get(kind, 0) + 1
                return
            self.by_status[str(status)] = self.by_status.get(str(status), 0) + 1
            code = document.get("error") if isinstance(document, dict) else None
            if status >= 300:
                key = "%d %s" % (status, code)
                self.by_error[key] = self.by_error.get(key, 0) + 1
            epcs_503 = status == 503 and code in EPCS_503_CODES and "message" in document
            if not (200 <= status < 300 or epcs_503):
                self.bad_by_kind[kind] = self.bad_by_kind.get(kind, 0) + 1
                if len(self.unexpected) < 20:
                    self.unexpected.append({"kind": kind, "status": status,
                                            "body": document if document is not None
                                            else "(none)"})


def run_load(args):
    tally = Tally()
    stop = threading.Event()
    run = uuid.uuid4().hex[:12]
    counter = iter(range(10 ** 9))
    counter_lock = threading.Lock()

    def next_n():
        with counter_lock:
            return next(counter)

    def client_loop():
        client = Client(args.url, args.token, args.timeout)
        while not stop.is_set():
            n = next_n()
            media = MSGPACK if n % 2 else JSON
            if args.rules_reads_every and n % args.rules_reads_every == 1:
                # A staff read of the rule store: the database's, behind the replica.
                status, _, document, seconds = client.request("GET", "/v1/rules/versions",
                                                              media=media)
                tally.answer("rules", status, document, seconds, client.error)
            elif args.reports_every and n % args.reports_every == 0:
                body = report_body(run, n)
                key = "%s-%d" % (run, n)
                status, _, document, seconds = client.request(
                    "POST", "/v1/reports", body, media, {"idempotency-key": key})
                tally.answer("report", status, document, seconds, client.error)
                if isinstance(status, int) and 200 <= status < 300:
                    with tally.lock:
                        tally.filings.append({"key": key, "body": body, "media": media,
                                              "status": status, "report": document.get("id")})
            else:
                body = check_body(n)
                status, _, document, seconds = client.request("POST", "/v1/check", body, media)
                tally.answer("check", status, document, seconds, client.error)
                if isinstance(status, int) and 200 <= status < 300:
                    with tally.lock:
                        tally.decisions.append({"id": document.get("decision"), "check": body})
            if status is None or status == "timeout":
                time.sleep(0.05)
        client.close()
        with tally.lock:
            tally.stale_retries += client.stale_retries

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(args.clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    while True:
        time.sleep(0.1)
        if args.stop_file and os.path.exists(args.stop_file):
            break
        if args.seconds and time.monotonic() - started >= args.seconds:
            break
    stop.set()
    for thread in threads:
        thread.join(args.timeout + 5)
    elapsed = time.monotonic() - started
    summary = {
        "seconds": round(elapsed, 1),
        "answers": sum(tally.by_status.values()),
        "by_status": tally.by_status,
        "by_error": tally.by_error,
        "unexpected": tally.unexpected,
        "bad_by_kind": tally.bad_by_kind,
        "transport_error_texts": tally.errors,
        "stale_keepalive_resends": tally.stale_retries,
        "timeouts": tally.timeouts,
        "transport_errors": tally.transport_errors,
        "slowest_ms": round(tally.slowest * 1000),
        "decisions": tally.decisions,
        "filings": tally.filings,
    }
    with open(args.out, "w") as f:
        json.dump(summary, f)
    print("%d answers in %.1f s (%s; errors %s); neither 2xx nor an epcs 503, by kind: %s; "
          "client timeouts (%d s) %d, transport errors %d; %d resent after a kept-alive "
          "connection closed; slowest %d ms; %d decisions and %d filings answered 2xx"
          % (summary["answers"], elapsed, json.dumps(tally.by_status, sort_keys=True),
             json.dumps(tally.by_error, sort_keys=True),
             json.dumps(tally.bad_by_kind, sort_keys=True), args.timeout, tally.timeouts,
             tally.transport_errors, tally.stale_retries, summary["slowest_ms"],
             len(tally.decisions),
             len(tally.filings)))
    return 0


def verify_decisions(args):
    with open(args.input) as f:
        decisions = json.load(f)["decisions"]
    client = Client(args.url, args.token, 10)
    missing = []
    for decision in decisions:
        status, _, document, _ = client.request("GET", "/v1/decisions/%s" % decision["id"])
        if status != 200 or document.get("id") != decision["id"] or \
                document.get("date") != decision["check"]["date"] or \
                document.get("request") != decision["check"]:
            got = {k: document.get(k) for k in ("id", "date", "event")} \
                if isinstance(document, dict) else document
            missing.append({"id": decision["id"], "date": decision["check"]["date"],
                            "status": status, "got": got})
    print("%d of %d decisions answered 2xx are in the log" % (len(decisions) - len(missing),
                                                             len(decisions)))
    for item in missing[:10]:
        print("  not in the log as answered: %s" % json.dumps(item), file=sys.stderr)
    return 1 if missing or not decisions else 0


def all_reports(client):
    """Every report the store lists, as {posting url: [report ids]}."""
    by_url = {}
    after = None
    while True:
        path = "/v1/reports?limit=1000" + ("&after=%s" % after if after is not None else "")
        status, _, document, _ = client.request("GET", path)
        if status != 200:
            raise SystemExit("GET %s answered %s: %s" % (path, status, document))
        for report in document["reports"]:
            by_url.setdefault(report["url"], []).append(report["id"])
        after = document.get("next")
        if after is None:
            return by_url


def verify_reports(args):
    with open(args.input) as f:
        filings = json.load(f)["filings"]
    client = Client(args.url, args.token, 10)
    wrong = []
    for filing in filings:
        # The same bytes as the first time (the key holds the body's digest).
        status, _, document, _ = client.request("POST", "/v1/reports", filing["body"],
                                                filing["media"],
                                                {"idempotency-key": filing["key"]})
        replayed = client.headers.get("idempotent-replayed") == "true"
        if status != filing["status"] or not isinstance(document, dict) or \
                document.get("id") != filing["report"] or not replayed:
            again = {k: document.get(k) for k in ("id", "joined", "error")} \
                if isinstance(document, dict) else {"body": document}
            again["idempotent-replayed"] = replayed
            wrong.append({"key": filing["key"], "first": [filing["status"], filing["report"]],
                          "again": [status, again]})
    listed = all_reports(client)
    for filing in filings:
        ids = listed.get(filing["body"]["url"], [])
        if ids != [filing["report"]]:
            wrong.append({"key": filing["key"], "report": filing["report"], "listed": ids})
    print("%d Idempotency-Keys answered 2xx: %d sent again gave another answer or report, "
          "%d postings not listed as exactly their one report"
          % (len(filings), sum(1 for w in wrong if "again" in w),
             sum(1 for w in wrong if "listed" in w)))
    for item in wrong[:10]:
        print("  %s" % json.dumps(item), file=sys.stderr)
    return 1 if wrong or not filings else 0


def rules_of(client):
    status, _, document, _ = client.request("GET", "/v1/rules")
    return document if status == 200 else {"ruleset": None, "epoch": None, "status": status}


def activate(client, ruleset, epoch):
    return client.request("POST", "/v1/admin/rules/activate", {"ruleset": ruleset, "epoch": epoch})


def follow(args):
    a = Client(args.url_a, args.token, 10)
    b = Client(args.url_b, args.token, 10)
    before = rules_of(a)
    status, _, answer, _ = activate(a, args.ruleset, before["epoch"])
    activated = time.monotonic()
    if status != 200 or answer.get("status") != "activated":
        print("replica A did not activate %s on epoch %s: %s %s"
              % (args.ruleset, before["epoch"], status, answer))
        return 1
    epoch = answer["epoch"]
    while True:
        rules = rules_of(b)
        waited = time.monotonic() - activated
        if rules["ruleset"] == args.ruleset and rules["epoch"] == epoch:
            break
        if waited > 5:
            print("replica B still serves %s at epoch %s 5 s after A activated %s at %d"
                  % (rules["ruleset"], rules["epoch"], args.ruleset, epoch))
            return 1
        time.sleep(0.002)
    status, _, stale, _ = activate(b, before["ruleset"], before["epoch"])
    print("A activated %s (epoch %s -> %d); B served it %.0f ms later; B asked to activate %s "
          "on the stale epoch %s: %s %s" % (args.ruleset, before["epoch"], epoch, waited * 1000,
                                            before["ruleset"], before["epoch"], status,
                                            stale.get("error") if stale else None))
    if waited > args.limit_ms / 1000.0:
        print("B took longer than %d ms" % args.limit_ms)
        return 1
    return 0 if status == 409 and stale.get("error") == "stale_epoch" else 1


def activations(args):
    client = Client(args.url, args.token, 10)
    acknowledged, others = [], {}
    rules = rules_of(client)
    epoch, serving = rules["epoch"], rules["ruleset"]
    while not os.path.exists(args.stop_file):
        target = args.rulesets[1] if serving == args.rulesets[0] else args.rulesets[0]
        status, _, answer, _ = activate(client, target, epoch)
        if status == 200 and answer.get("status") == "activated":
            acknowledged.append({"to": target, "epoch": answer["epoch"],
                                 "at": time.time()})
            epoch, serving = answer["epoch"], target
        else:
            code = "%s %s" % (status, answer.get("error") if isinstance(answer, dict) else None)
            others[code] = others.get(code, 0) + 1
            if status == 409:
                rules = rules_of(client)
                epoch, serving = rules["epoch"], rules["ruleset"]
            time.sleep(0.2)
        time.sleep(0.1)
    with open(args.out, "w") as f:
        json.dump({"acknowledged": acknowledged, "others": others}, f)
    print("%d activations answered 200; other answers: %s"
          % (len(acknowledged), json.dumps(others, sort_keys=True)))
    return 0


def history(args):
    with open(args.input) as f:
        acknowledged = json.load(f)["acknowledged"]
    client = Client(args.url, args.token, 10)
    status, _, document, _ = client.request("GET", "/v1/rules/versions")
    if status != 200:
        print("GET /v1/rules/versions answered %s: %s" % (status, document))
        return 1
    recorded = [entry["to"] for entry in document["activations"]]
    # The activations acknowledged are the history's last ones, in order (epoch n is the
    # history's n-th entry).
    missing = [a for a in acknowledged
               if a["epoch"] > len(recorded) or recorded[a["epoch"] - 1] != a["to"]]
    print("%d of %d activations answered 200 are in the history (%d entries)"
          % (len(acknowledged) - len(missing), len(acknowledged), len(recorded)))
    for item in missing[:10]:
        print("  missing: %s" % json.dumps(item), file=sys.stderr)
    return 1 if missing or not acknowledged else 0


def probe(args):
    a = Client(args.url_a, args.token, 10)
    b = Client(args.url_b, args.token, 10)
    # A day outside the campaign window that the load never asks about.
    check = dict(check_body(0), date="2023-12-31")
    status, _, answer, _ = a.request("POST", "/v1/check", check)
    if status != 200 or "decision" not in answer:
        print("decision-log no A answered the probe check %s: %s" % (status, answer))
    else:
        status, _, logged, _ = b.request("GET", "/v1/decisions/%s" % answer["decision"])
        if status == 200 and logged.get("request") == check:
            print("decision-log yes B's log has A's decision %s" % answer["decision"])
        else:
            print("decision-log no B's GET /v1/decisions/%s is %s%s, not A's decision"
                  % (answer["decision"], status,
                     " (another decision by that id)" if status == 200 else ""))
    run = uuid.uuid4().hex[:12]
    body, key = report_body("probe-" + run, 0), "probe-" + run
    status_a, _, first, _ = a.request("POST", "/v1/reports", body, JSON, {"idempotency-key": key})
    status_b, _, again, _ = b.request("POST", "/v1/reports", body, JSON, {"idempotency-key": key})
    replayed = b.headers.get("idempotent-replayed") == "true"
    other = report_body("probe-" + run, 1)
    status_o, _, refused, _ = a.request("POST", "/v1/reports", other, JSON,
                                        {"idempotency-key": key})
    # The whole answer, not the id alone: two case stores of their own number their first
    # reports alike.
    same = status_a == 201 and status_b == 201 and again == first and replayed
    if same and status_o == 422:
        print("cases yes B gave A's first answer (report %s, idempotent-replayed) to the same "
              "key; another body with it is 422" % first.get("id"))
    else:
        print("cases no filing on A: %s (report %s); the same key on B: %s (report %s, %s, "
              "idempotent-replayed %s); the key with another body on A: %s"
              % (status_a, first.get("id") if isinstance(first, dict) else None, status_b,
                 again.get("id") if isinstance(again, dict) else None,
                 "the same answer" if again == first else "another answer",
                 "true" if replayed else "absent", status_o))
    status, _, ready, _ = a.request("GET", "/readyz")
    if isinstance(ready, dict) and "store" in ready:
        print("readiness yes /readyz says store: %s" % ready["store"])
    else:
        print("readiness no /readyz has no store member: %s" % sorted(ready or {}))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    load = sub.add_parser("load")
    load.add_argument("url")
    load.add_argument("token")
    load.add_argument("out")
    load.add_argument("--seconds", type=float, default=0)
    load.add_argument("--stop-file")
    load.add_argument("--clients", type=int, default=4)
    load.add_argument("--reports-every", type=int, default=0)
    load.add_argument("--rules-reads-every", type=int, default=0)
    load.add_argument("--timeout", type=float, default=15)
    for name in ("decisions", "reports", "history"):
        verify = sub.add_parser(name)
        verify.add_argument("url")
        verify.add_argument("token")
        verify.add_argument("input")
    probes = sub.add_parser("probe")
    probes.add_argument("url_a")
    probes.add_argument("url_b")
    probes.add_argument("token")
    follows = sub.add_parser("follow")
    follows.add_argument("url_a")
    follows.add_argument("url_b")
    follows.add_argument("token")
    follows.add_argument("ruleset")
    follows.add_argument("--limit-ms", type=int, default=250)
    switches = sub.add_parser("activations")
    switches.add_argument("url")
    switches.add_argument("token")
    switches.add_argument("out")
    switches.add_argument("rulesets", nargs=2)
    switches.add_argument("--stop-file", required=True)
    args = parser.parse_args()
    if args.command == "load":
        if not args.seconds and not args.stop_file:
            parser.error("load needs --seconds or --stop-file")
        return run_load(args)
    commands = {"decisions": verify_decisions, "reports": verify_reports, "history": history,
                "follow": follow, "activations": activations, "probe": probe}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
