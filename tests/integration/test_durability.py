#!/usr/bin/python3
"""Durability of the decision log on the real epcsd: nothing answered is lost to SIGKILL or a
full disk, epcsd recovers by itself once space is free, a check that fails validation holds
nobody back, and shutdown under load is clean.

Shares the harness of test_api.py. The full-disk tests mount a small tmpfs (root only; they
are skipped otherwise). Run through ctest, or directly:
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


class SigkillTest(DurabilityTest):
    """kill -9 in the middle of load: every decision answered with 200 is in the log after a
    restart on the same data directory, in the default mode and with --audit sync."""

    def sigkill_under_load(self, *flags):
        data = tempfile.mkdtemp(prefix="epcs-test-durability-")
        server = Server("--data", data, *flags)
        load = Load(server)
        try:
            load.start()
            # Long enough for thousands of decisions and many writer groups in flight.
            time.sleep(2.0)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(30)
            load.finish()
            self.assertEqual(load.unexpected, [])
            self.assertEqual(load.refused, [])
            self.assertGreater(len(load.answered), 500, "too little load to prove anything")
            restarted = Server("--data", data, *flags)
            try:
                self.assertAllLogged(restarted, load.answered)
            finally:
                self.assertEqual(restarted.stop(), 0)
                restarted.cleanup()
        finally:
            load.finish()
            server.cleanup()
            shutil.rmtree(data)

    def test_default_mode_loses_nothing_answered(self):
        self.sigkill_under_load()

    def test_sync_mode_loses_nothing_answered(self):
        self.sigkill_under_load("--audit", "sync")



def fill(path):
    """Writes `path` until the file system has no block left; returns its size."""
    written = 0
    with open(path, "wb", buffering=0) as f:
        for block in (1 << 20, 1 << 12):
            chunk = b"\0" * block
            while True:
                try:
                    written += f.write(chunk)
                except OSError:
                    break
    return written


class FullDiskTest(DurabilityTest):
    """The data directory on a small tmpfs, filled up: every check is answered 200 with its
    decision logged or 503 decision_log_unavailable; /readyz says why while nothing can be
    written; once space is free epcsd serves again by itself within 5 s; and every 200 is in
    the log after a restart, also one from a kill -9 while the log could not write."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        self.mount = tempfile.mkdtemp(prefix="epcs-test-full-")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "epcs-test", self.mount],
                       check=True)
        self.addCleanup(shutil.rmtree, self.mount, True)
        self.addCleanup(subprocess.run, ["umount", "-l", self.mount])
        self.data = os.path.join(self.mount, "var")
        self.filler = os.path.join(self.mount, "filler")
        self.answered = {}

    def send(self, server, n, refused):
        """One check or a batch of five: its answers kept, or its 503 counted."""
        if n % 4 == 3:
            documents = [varied_check(n + i) for i in range(5)]
            response = request(server, "POST", "/v1/check/batch",
                               encode({"checks": documents}, MSGPACK), MSGPACK)
            verdicts = response.document["results"] if response.status == 200 else []
        else:
            documents = [varied_check(n)]
            response = request(server, "POST", "/v1/check", encode(documents[0], JSON), JSON)
            verdicts = [response.document] if response.status == 200 else []
        if response.status == 200:
            for document, verdict in zip(documents, verdicts):
                self.assertEqual(verdict["verdict"], expected_verdict(document))
                self.answered[verdict["decision"]] = (document, verdict)
            return
        self.assertError(response, 503, "decision_log_unavailable")
        self.assertRegex(response.data["message"],
                         r"^the decision log (cannot take|could not write) .*(No space left on "
                         r"device|database or disk is full)")
        self.assertIn("retry-after: 1\r\n", response.headers)
        refused.append(response.data["message"])

    def until_refused(self, server, start):
        """Checks until the full disk shows: several 503s in a row."""
        refused, n = [], start
        deadline = time.time() + 30
        while len(refused) < 5:
            self.assertLess(time.time(), deadline, "a full disk never refused a check")
            before = len(refused)
            self.send(server, n, refused)
            if len(refused) == before:
                refused.clear()
            n += 1
        return n

    def assertStalled(self, server):
        ready = request(server, "GET", "/readyz")
        self.assertEqual(ready.status, 503, ready.raw)
        self.assertFalse(ready.data["ready"])
        self.assertEqual(ready.data["decision_log"], "stalled")
        # Whichever write met the full disk first: a page, the index or a worker's journal.
        self.assertRegex(ready.data["reason"],
                         r"^the decision log cannot write decisions\.(pages|db|journal\.[0-9.]+): "
                         r"(No space left on device|database or disk is full); it tries again "
                         r"every 250 ms$")

    def full_disk(self, *flags):
        server = Server("--data", self.data, *flags)
        try:
            n = 0
            for n in range(8):
                self.send(server, n, [])
            fill(self.filler)
            n = self.until_refused(server, n)
            self.assertStalled(server)
            # Still refused at once, and still not ready, while the disk stays full.
            refused = []
            for n in range(n, n + 6):
                self.send(server, n, refused)
            self.assertGreater(len(refused), 0)
            self.assertStalled(server)

            os.unlink(self.filler)
            freed = time.time()
            while request(server, "GET", "/readyz").status != 200:
                self.assertLess(time.time() - freed, 5.0, "not ready 5 s after space was freed")
                time.sleep(0.05)
            ready = request(server, "GET", "/readyz").data
            self.assertEqual(ready["decision_log"], flags[-1] if flags else "async")
            self.assertNotIn("reason", ready)
            for n in range(n + 1, n + 13):
                self.send(server, n, [])
            self.assertLess(time.time() - freed, 5.0 + 30.0)

            # Full again, killed while the log cannot write; restarted with space to spare.
            fill(self.filler)
            n = self.until_refused(server, n + 1)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(30)
        finally:
            server.cleanup()
        os.unlink(self.filler)
        restarted = Server("--data", self.data, *flags)
        try:
            self.assertAllLogged(restarted, self.answered)
            self.assertEqual(request(restarted, "GET", "/readyz").status, 200)
        finally:
            self.assertEqual(restarted.stop(), 0)
            restarted.cleanup()

    def test_default_mode(self):
        self.full_disk()

    def test_sync_mode(self):
        self.full_disk("--audit", "sync")



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


class DirectorySyncTest(DurabilityTest):
    """A file's fsync does not make its directory entry durable: after creating decisions.pages,
    decisions.db and each journal segment, and after deleting segments, epcsd fsyncs the data
    directory itself. Seen in the system calls of the real epcsd (strace)."""

    def traced_server(self, data, trace):
        self.assertIsNotNone(shutil.which("strace"), "scripts/setup.sh installs strace")
        wrapper = os.path.join(data + "-strace")
        with open(wrapper, "w") as f:
            # LeakSanitizer cannot run under ptrace (the ASan build): leaks are the other
            # tests' to find.
            f.write("#!/bin/sh\nexport ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\"\n"
                    "exec strace -f -qq --seccomp-bpf -o %s -e trace=openat,fsync,unlink %s "
                    "\"$@\"\n" % (trace, os.path.abspath(test_api.ARGS.epcsd)))
        os.chmod(wrapper, 0o755)
        real, test_api.ARGS.epcsd = test_api.ARGS.epcsd, wrapper
        try:
            return Server("--data", data)
        finally:
            test_api.ARGS.epcsd = real
            os.unlink(wrapper)

    def test_new_and_deleted_files_sync_the_directory(self):
        scratch = tempfile.mkdtemp(prefix="epcs-test-durability-")
        self.addCleanup(shutil.rmtree, scratch, True)
        data, trace = os.path.join(scratch, "var"), os.path.join(scratch, "trace")
        server = self.traced_server(data, trace)
        try:
            for n in range(3):
                self.assertEqual(request(server, "POST", "/v1/check",
                                         encode(varied_check(n), JSON), JSON).status, 200)
            # SIGTERM to epcsd itself, strace's child; strace exits with its status.
            pid = server.process.pid
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                os.kill(int(f.read().split()[0]), signal.SIGTERM)
            self.assertEqual(server.stop(), 0)
        finally:
            server.cleanup()
        with open(trace) as f:
            calls = f.read().splitlines()
        directory_fds, synced, changed = set(), [], []
        quoted = re.escape('"%s' % data)
        for at, call in enumerate(calls):
            opened = re.search(r'openat\(AT_FDCWD, %s", [^)]*O_DIRECTORY[^)]*\) = (\d+)' % quoted,
                               call)
            if opened:
                directory_fds.add(opened.group(1))
            fsync = re.search(r"fsync\((\d+)\) += 0", call)
            if fsync and fsync.group(1) in directory_fds:
                synced.append(at)
            made = re.search(r'openat\(AT_FDCWD, %s/(decisions\.(?:pages|db|journal\.[0-9.]+))", '
                             r'[^)]*O_CREAT[^)]*\) = \d+' % quoted, call)
            gone = re.search(r'unlink\(%s/(decisions\.journal\.[0-9.]+)"\) = 0' % quoted, call)
            if made or gone:
                changed.append((at, (made or gone).group(1), "created" if made else "deleted"))
        for at, name, what in changed:
            self.assertTrue([s for s in synced if s > at],
                            "%s %s, and the directory never fsync'd after" % (name, what))
        kinds = {(name.split(".")[1], what) for _, name, what in changed}
        self.assertEqual(kinds, {("pages", "created"), ("db", "created"),
                                 ("journal", "created"), ("journal", "deleted")})


if __name__ == "__main__":
    test_api.run_suite()
