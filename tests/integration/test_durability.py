#!/usr/bin/python3
"""Durability of the decision log on the real epcsd: a check that fails validation holds
nobody back, and shutdown while its writer still has decisions to commit is clean.

Shares the harness of test_api.py. Run through ctest, or directly:
    tests/integration/test_durability.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules --cases ../shared/cases/public.tsv
"""

import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, MSGPACK, EpcsTest, Server, encode, request  # noqa: E402

DEEPFAKE = {
    "election": "na22", "area": "deepfake", "date": "2024-02-15", "actor": {"kind": "voter"},
    "activity": {"kind": "post", "deepfake": True, "purpose": "campaign", "labeled": True}}
# Inside Art. 82-8's window (prohibited) and before it (allowed when labeled), so the log's
# verdicts must match the answers' rather than be all alike.
DATES = ["2024-02-%02d" % day for day in range(1, 29)] + ["2023-12-%02d" % day
                                                           for day in range(1, 29)]


def varied_check(n):
    return dict(DEEPFAKE, date=DATES[n % len(DATES)])


def expected_verdict(document):
    return "prohibited" if document["date"] >= "2024-01-29" else "allowed"


class Load:
    """Client threads, each on its own HTTP/1.1 keep-alive connection, sending single checks
    (JSON) and batches (msgpack) as fast as epcsd answers; every answered decision id is kept
    with the check it answered and the verdict it gave."""

    def __init__(self, server, threads=6, batch=20):
        self.server = server
        self.answered = {}
        self.refused = []
        self.unexpected = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.batch = batch
        self.threads = [threading.Thread(target=self.client, args=(i,)) for i in range(threads)]

    def start(self):
        for thread in self.threads:
            thread.start()

    def finish(self):
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def keep(self, document, verdict):
        with self.lock:
            self.answered[verdict["decision"]] = (document, verdict)

    def answer(self, status, kind, raw):
        document = (json.loads(raw) if kind.startswith(JSON)
                    else test_api.msgpack.unpackb(raw, raw=False))
        return status, document

    def one(self, connection, n):
        document = varied_check(n)
        connection.request("POST", "/v1/check", encode(document, JSON), {"content-type": JSON})
        response = connection.getresponse()
        status, answer = self.answer(response.status, response.getheader("content-type", ""),
                                     response.read())
        if status == 200:
            self.keep(document, answer)
        else:
            self.refuse(status, answer, response.getheader("retry-after"))

    def many(self, connection, n):
        documents = [varied_check(n + i) for i in range(self.batch)]
        connection.request("POST", "/v1/check/batch", encode({"checks": documents}, MSGPACK),
                           {"content-type": MSGPACK, "accept": MSGPACK})
        response = connection.getresponse()
        status, answer = self.answer(response.status, response.getheader("content-type", ""),
                                     response.read())
        if status == 200:
            for document, verdict in zip(documents, answer["results"]):
                self.keep(document, verdict)
        else:
            self.refuse(status, answer, response.getheader("retry-after"))

    def refuse(self, status, answer, retry_after):
        with self.lock:
            if (status == 503 and answer.get("error") == "decision_log_unavailable"
                    and retry_after == "1"):
                self.refused.append(answer)
            else:
                self.unexpected.append((status, answer, retry_after))

    def client(self, index):
        n = index * 7919
        connection = None
        while not self.stop.is_set():
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.server.port,
                                                            timeout=20)
                (self.many if n % 3 == 0 else self.one)(connection, n)
                n += 1
            except (OSError, http.client.HTTPException, ValueError):
                # The server was killed under us: what it answered before is what counts.
                if connection is not None:
                    connection.close()
                connection = None
                if self.server.process.poll() is not None:
                    return
                time.sleep(0.05)
        if connection is not None:
            connection.close()


def logged_decisions(server):
    """Every entry of the decision log by id, read with GET /v1/decisions page by page."""
    stored, query = {}, "/v1/decisions?limit=1000"
    while True:
        response = request(server, "GET", query)
        assert response.status == 200, response.raw
        listed = response.data
        stored.update((d["id"], d) for d in listed["decisions"])
        if listed["next"] is None:
            return stored
        query = "/v1/decisions?limit=1000&after=%d" % listed["next"]


class DurabilityTest(EpcsTest):
    def assertAllLogged(self, server, answered):
        """Every answered decision is in the log with the check and the verdict it answered;
        the latest few are also read one by one with GET /v1/decisions/{id}."""
        stored = logged_decisions(server)
        missing = sorted(set(answered) - set(stored))
        self.assertEqual(missing, [], "%d of %d answered decisions are not in the log"
                         % (len(missing), len(answered)))
        for decision_id, (document, verdict) in answered.items():
            entry = stored[decision_id]
            self.assertEqual(entry["request"], document)
            self.assertEqual(entry["verdict"], verdict["verdict"])
            self.assertEqual(entry["answer"], verdict)
            self.assertEqual(verdict["verdict"], expected_verdict(document))
        for decision_id in sorted(answered)[-10:]:
            shown = request(server, "GET", "/v1/decisions/%d" % decision_id)
            self.assertEqual(shown.status, 200, shown.raw)
            self.assertEqual(shown.data["request"], answered[decision_id][0])
            self.assertEqual(shown.data["answer"], answered[decision_id][1])
            self.assertEqual(shown.data["article"], answered[decision_id][1]["article"])


class ValidationTest(DurabilityTest):
    """--audit sync: a check that fails validation takes no decision id. An id taken is marked
    as on its way until its worker hands it over, and the writer stores in id order, so such
    an id used to hold back every commit of every worker until its worker's turn ended."""

    BAD = [
        ({"election": "na99", "area": "deepfake", "activity": {"kind": "post"}}, 404,
         "unknown_election", "election"),
        (dict(DEEPFAKE, activity={"kind": "post", "deepfake": "yes"}), 422, "invalid_fact",
         "activity.deepfake"),
        (dict(DEEPFAKE, date="2024-02-30"), 422, "invalid_fact", "date"),
        (dict(DEEPFAKE, area="weather"), 404, "unknown_area", "area"),
        (dict(DEEPFAKE, colour="red"), 400, "bad_request", None),
    ]

    def post(self, connection, path, document):
        connection.request("POST", path, encode(document, JSON), {"content-type": JSON})
        response = connection.getresponse()
        return response.status, json.loads(response.read())

    def test_failed_checks_take_no_decision_id(self):
        server = Server("--audit", "sync")
        valid = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        invalid = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
        try:
            ids = []
            for n in range(40):
                status, answer = self.post(valid, "/v1/check", varied_check(n))
                self.assertEqual(status, 200, answer)
                ids.append(answer["decision"])
                document, code, error, field = self.BAD[n % len(self.BAD)]
                status, answer = self.post(invalid, "/v1/check", document)
                self.assertEqual((status, answer["error"], answer.get("field")),
                                 (code, error, field))
                self.assertNotIn("decision", answer)
            # A batch: its failed items take no id either, between and around decided ones.
            items = [self.BAD[0][0], varied_check(1), self.BAD[1][0], self.BAD[2][0],
                     varied_check(2), self.BAD[4][0]]
            status, answer = self.post(invalid, "/v1/check/batch", {"checks": items})
            self.assertEqual(status, 200, answer)
            results = answer["results"]
            self.assertEqual([r.get("error") for r in results],
                             ["unknown_election", None, "invalid_fact", "invalid_fact", None,
                              "bad_request"])
            self.assertEqual([r.get("status") for r in results], [404, None, 422, 422, None, 400])
            ids += [results[1]["decision"], results[4]["decision"]]
            # Every area that covers the activity answers: the id follows the results.
            every_area = {k: v for k, v in DEEPFAKE.items() if k != "area"}
            status, answer = self.post(valid, "/v1/check", every_area)
            self.assertEqual((status, answer["verdict"], list(answer)[-1]),
                             (200, "prohibited", "decision"))
            ids.append(answer["decision"])
            # Now a pipeline of failing checks (50 at a time on one HTTP/2 connection) while
            # valid ones keep coming on another.
            bad = os.path.join(server.data, "bad.json")
            with open(bad, "wb") as f:
                f.write(encode(self.BAD[1][0], JSON))
            pipeline = subprocess.Popen(
                ["h2load", "-n", "3000", "-c", "1", "-m", "50", "-d", bad, "-H",
                 "content-type: " + JSON, server.url("/v1/check")],
                stdout=subprocess.PIPE, text=True)
            slowest = 0.0
            while pipeline.poll() is None or len(ids) < 80:
                started = time.monotonic()
                status, answer = self.post(valid, "/v1/check", varied_check(len(ids)))
                slowest = max(slowest, time.monotonic() - started)
                self.assertEqual(status, 200, answer)
                ids.append(answer["decision"])
            output = pipeline.communicate(timeout=60)[0]
            self.assertIn("3000 total, 3000 started, 3000 done, 0 succeeded, 3000 failed", output)
            self.assertIn("status codes: 0 2xx, 0 3xx, 3000 4xx, 0 5xx", output)
            # Wall clock on a busy machine: only a bound no healthy answer comes near.
            self.assertLess(slowest, 5.0)
            # Every decided check took the next id; no failed one took any.
            self.assertEqual(ids, list(range(ids[0], ids[0] + len(ids))))
            stored = logged_decisions(server)
            self.assertEqual(sorted(stored), ids)
        finally:
            valid.close()
            invalid.close()
            self.assertEqual(server.stop(), 0)
            server.cleanup()


class ShutdownTest(DurabilityTest):
    """SIGTERM with --audit sync while the writer still has decisions to commit: exit status 0
    and not a word from AddressSanitizer (the suite also runs in the ASan build). After a load,
    the writer is kept waiting on the database's lock while clients give up on their held
    answers, so the decisions are committed only after the workers are gone: the writer's commit
    callback used to walk the freed workers then."""

    def test_sigterm_while_the_writer_commits(self):
        data = tempfile.mkdtemp(prefix="epcs-test-durability-")
        server = Server("--data", data, "--audit", "sync")
        load = Load(server, threads=8, batch=20)
        blocker = sqlite3.connect(os.path.join(data, "decisions.db"), isolation_level=None)
        body = os.path.join(data, "batch.msgpack")
        with open(body, "wb") as f:
            f.write(encode({"checks": [varied_check(n) for n in range(20)]}, MSGPACK))
        try:
            load.start()
            time.sleep(1.0)
            load.finish()
            self.assertEqual(load.unexpected, [])
            self.assertGreater(len(load.answered), 100, "too little load to prove anything")
            # The writer waits for this lock (up to 5 s); the clients give up after 1 s.
            blocker.execute("BEGIN IMMEDIATE")
            abandoned = [subprocess.Popen(
                ["curl", "-sS", "--http2-prior-knowledge", "--max-time", "1", "-o", "/dev/null",
                 "-H", "content-type: " + MSGPACK, "--data-binary", "@" + body,
                 server.url("/v1/check/batch")], stderr=subprocess.DEVNULL) for _ in range(8)]
            self.assertEqual([p.wait(30) for p in abandoned], [28] * 8)  # curl: timed out
            server.process.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            self.assertIsNone(server.process.poll(), "epcsd stopped before its writer could")
            blocker.execute("COMMIT")
            status = server.process.wait(60)
            text = server.text()
            for word in ("AddressSanitizer", "runtime error"):
                # The report starts a few lines before the word (a leak's does with its stacks).
                at = text.find(word)
                start = text.rfind('"}\n', 0, at)
                self.assertEqual(at, -1, "epcsd's log says: " + text[start + 3:at + 200])
            self.assertEqual(status, 0, text[-3000:])
            self.assertIn('"msg":"stopped cleanly"', text)
            restarted = Server("--data", data, "--audit", "sync")
            try:
                self.assertAllLogged(restarted, load.answered)
                # The abandoned checks were decided: on record too, though nobody got them.
                self.assertEqual(len(logged_decisions(restarted)), len(load.answered) + 8 * 20)
            finally:
                self.assertEqual(restarted.stop(), 0)
                restarted.cleanup()
        finally:
            blocker.close()
            load.finish()
            server.cleanup()
            shutil.rmtree(data)


if __name__ == "__main__":
    test_api.run_suite()
