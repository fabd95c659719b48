#!/usr/bin/python3
"""Integration tests of what keeps reports and requests honest under abuse and load, on the real
epcsd over HTTP/2: a report's decision and steps in the decision log exactly when the case store
holds them (a refused write, SIGKILL); one posting reported again and again making one case;
partners' reports held for staff, who confirm or dismiss them and set each partner's policy;
report and request reads and exports that never stall an event loop.

Shares the harness of test_api.py and the case helpers of test_cases.py. Run through ctest, or
directly:
    tests/integration/test_cases_hardening.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules --cases ../shared/cases/public.tsv
"""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, EpcsTest, Server, request  # noqa: E402
from test_cases import FALSE_FACT, SLANDER, CaseTest, shifted  # noqa: E402
from test_service import wait_for  # noqa: E402

SEEDED = 100000
# A check on the same worker as the exports: it must keep its pace while they run.
PROBE_RATE = 200
PROBE_SECONDS = 6
PROBE_P99_US = 5000
# The machine is shared with other work: the first of this many measurements that holds passes.
ATTEMPTS = 5


def seed(data, count):
    """`count` reports, each with one open deletion request to naver, written straight into
    the cases.db an epcsd created (its own schema): what months of monitoring leave behind."""
    database = sqlite3.connect(os.path.join(data, "cases.db"))
    start = 1767225600 * 1000000
    answer = b"\x81\xa7verdict\xaaprohibited"
    action = b"\x81\xa4kind\xb0deletion_request"
    with database:
        url = "https://blog.naver.com/seeded/%d"
        database.executemany(
            "INSERT INTO reports(id, filed_us, filed_by, url, posting, platform, election, "
            "category, date, facts, verdict, article, ruleset, decision, answer, status, "
            "updated_us) VALUES(?, ?, 'nec', ?, ?, ?, 'na22', 'false_fact', '2026-01-01', x'80', "
            "'prohibited', '250(2)', 'rs-0123456789abcdef', NULL, ?, 'open', ?)",
            ((n, start + n, url % n, url % n, "kakao" if n % 1000 == 0 else "naver", answer,
              start + n) for n in range(1, count + 1)))
        database.executemany(
            "INSERT INTO reporters(report, partner, at_us, url, facts) "
            "VALUES(?, 'nec', ?, ?, x'80')",
            ((n, start + n, url % n) for n in range(1, count + 1)))
        database.executemany(
            "INSERT INTO requests(id, report, chain, attempt, kind, partner, article, action, "
            "created_us, sent_us, due_us, objection_until_us, status, updated_us) "
            "VALUES(?, ?, ?, 1, 'deletion_request', 'naver', '82-4(3)', ?, ?, ?, ?, ?, 'open', ?)",
            ((n, n, n, action, start + n, start + n, start + n + 86400000000 * 3650,
              start + n + 86400000000 * 3650, start + n) for n in range(1, count + 1)))
    database.close()


def h2load(server, path, seconds, log, rate=None, body=None, realtime=False):
    """Starts h2load on one connection to `server` for `seconds`, one request after another (or
    `rate` a second), logging each request's start, status and microseconds to `log`; with
    `body` (a file) each request is a POST of it. The load's clients run at the lowest
    priority: in service they are on other machines, here they share the two cores with epcsd.
    The probe runs at real-time priority where the machine allows it, so that its own wait for
    a core is not counted against epcsd."""
    command = ["h2load", "-c", "1", "-m", "1", "-D", str(seconds), "--log-file", log]
    if rate is not None:
        command += ["--rps", str(rate)]
    if body is not None:
        command += ["-d", body, "-H", "content-type: application/json"]
    command.append(server.url(path))
    if not realtime:
        command = ["nice", "-n", "19"] + command
    elif subprocess.run(["chrt", "-f", "10", "true"], capture_output=True).returncode == 0:
        command = ["chrt", "-f", "10"] + command
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(test, process, log):
    """(start, status, microseconds) of each request of an h2load run, once it is done."""
    output = process.communicate(timeout=120)[0]
    test.assertEqual(process.returncode, 0, output)
    with open(log) as f:
        return [(int(t), s, int(us)) for t, s, us in (line.split("\t")[:3] for line in f
                                                      if line.strip())], output


class LoopTest(EpcsTest):
    """One worker (--threads 1) with 100,000 reports and requests in its case store."""

    @classmethod
    def setUpClass(cls):
        cls.data = tempfile.mkdtemp(prefix="epcs-test-loop-")
        flags = ("--threads", "1", "--case-sweep", "3600000", "--data", cls.data)
        first = Server(*flags)
        assert first.stop() == 0
        first.cleanup()
        seed(cls.data, SEEDED)
        cls.server = Server(*flags)

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.data)
        assert status == 0, "epcsd exited with %d" % status

    def probe_during_load(self, scratch, attempt):
        """One measurement: exports and listings for PROBE_SECONDS + 2 s, the probe in the
        middle. The probe's latencies (microseconds) of the checks that started while an
        export was underway, the exports' count."""
        body = os.path.join(scratch, "check")
        with open(body, "wb") as f:
            f.write(test_api.encode(CHECK, JSON))
        logs = [os.path.join(scratch, "%s-%d" % (name, attempt))
                for name in ("exports", "listings", "probe")]
        exports = h2load(self.server, EXPORT_PATH, PROBE_SECONDS + 2, logs[0])
        listings = h2load(self.server, LISTING_PATH, PROBE_SECONDS + 2, logs[1])
        time.sleep(1)
        probe = h2load(self.server, "/v1/check", PROBE_SECONDS, logs[2], PROBE_RATE, body, True)
        probed, output = finished(self, probe, logs[2])
        exported, export_output = finished(self, exports, logs[0])
        listed, _ = finished(self, listings, logs[1])
        self.assertEqual({status for _, status, _ in probed}, {"200"}, output)
        self.assertGreaterEqual(len(probed), PROBE_RATE * PROBE_SECONDS * 0.9, output)
        self.assertEqual({status for _, status, _ in exported + listed}, {"200"})
        # Under ASan on a busy machine an export takes seconds: two may be all there is time
        # for, and the probe's checks during them are counted below.
        self.assertGreaterEqual(len(exported), 2, export_output)
        self.assertTrue(listed)
        # Each export was whole: h2load counts the bytes of every answer.
        self.assertIn("%d succeeded, 0 failed, 0 errored" % len(exported), export_output)
        during = sorted(us for start, _, us in probed
                        if any(begin <= start <= begin + took for begin, _, took in exported))
        self.assertGreaterEqual(len(during), len(probed) // 2)
        return during, len(exported)

    # Under ThreadSanitizer an export takes seconds and a check milliseconds: the latency goal
    # is the optimised build's (the other tests here drive the pool under TSan all the same).
    @unittest.skipIf(os.environ.get("EPCS_TSAN") == "1", "a latency goal, not a race")
    def test_exports_and_listings_leave_the_loop_free(self):
        """While 100,000-row CSV exports and a listing filtered down to 100 rows out of 100,000
        run one after another, a check on the same worker answers at p99 under 5 ms, counting
        the checks that started while an export was underway. The machine is shared, so up to
        ATTEMPTS measurements are taken and the first that holds passes; with the exports on the
        loop none does (each export stalls the loop for the better part of a second)."""
        export = fetch(self.server, EXPORT_PATH)
        lines = export.split(b"\r\n")
        self.assertEqual(len(lines), SEEDED + 2)
        self.assertEqual(lines[1].split(b",")[:7],
                         [b"1", b"1", b"deletion_request", b"naver", b"82-4(3)", b"1", b"open"])
        self.assertEqual(lines[SEEDED].split(b",")[0], str(SEEDED).encode())
        listing = test_api.json.loads(fetch(self.server, LISTING_PATH))
        self.assertEqual([r["id"] for r in listing["reports"]],
                         list(range(1000, SEEDED + 1, 1000)))
        measured = []
        with tempfile.TemporaryDirectory() as scratch:
            for attempt in range(ATTEMPTS):
                during, exports = self.probe_during_load(scratch, attempt)
                p99 = during[int(len(during) * 0.99) - 1]
                measured.append("p99 %d us over %d checks during %d exports (slowest %s)"
                                % (p99, len(during), exports, during[-3:]))
                if p99 < PROBE_P99_US:
                    break
        self.assertLess(p99, PROBE_P99_US, "; ".join(measured))


    def test_clients_that_leave_mid_export(self):
        """Clients that hang up while their export is being made: the work finishes, nobody is
        answered, and the worker goes on serving (under ASan: nothing touched after it is
        freed)."""
        for _ in range(5):
            result = subprocess.run(["curl", "-sS", "--max-time", "0.05", "--http2-prior-knowledge",
                                     "-o", "/dev/null", self.server.url(EXPORT_PATH)],
                                    capture_output=True, text=True)
            self.assertEqual(result.returncode, 28, result.stderr)
        self.assertEqual(len(fetch(self.server, EXPORT_PATH).split(b"\r\n")), SEEDED + 2)
        self.assertEqual(test_api.check(self.server, CHECK, JSON).status, 200)

    def test_stop_with_a_write_in_flight(self):
        """SIGTERM while a filing waits in the thread pool for the case store (held here by
        another writer): epcsd waits for it, answers 201 once it is committed, and stops
        cleanly with the report on disk."""
        data = tempfile.mkdtemp(prefix="epcs-test-loop-stop-")
        try:
            server = Server("--threads", "1", "--case-sweep", "3600000", "--data", data)
            blocker = sqlite3.connect(os.path.join(data, "cases.db"), isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            client = subprocess.Popen(
                ["curl", "-sS", "--max-time", "30", "--http2-prior-knowledge", "-o", "/dev/null",
                 "-w", "%{http_code}", "-H", "content-type: application/json", "--data-binary",
                 test_api.json.dumps(REPORT), server.url("/v1/reports")],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(0.3)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            self.assertIsNone(client.poll(), "answered before its write could commit")
            blocker.execute("COMMIT")
            blocker.close()
            out, err = client.communicate(timeout=30)
            status = server.stop()
            log = server.text()
            server.cleanup()
            self.assertEqual((client.returncode, out), (0, "201"), err)
            self.assertEqual(status, 0, log)
            self.assertIn("stopped cleanly", log)
            self.assertNotIn("still open", log)
            database = sqlite3.connect(os.path.join(data, "cases.db"))
            stored = database.execute("SELECT url, status FROM reports").fetchall()
            database.close()
            self.assertEqual(stored, [(REPORT["url"], "open")])
        finally:
            shutil.rmtree(data)


class EvidenceTest(EpcsTest):
    """A report's decision and its case events in the decision log, and only those that the
    case store committed."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server("--case-sweep", "3600000")
        cls.cases_db = os.path.join(cls.server.data, "var", "cases.db")

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        assert status == 0, "epcsd exited with %d" % status

    def call(self, method, path, body=None):
        return request(self.server, method, path,
                       test_api.encode(body, JSON) if body is not None else None,
                       JSON if body is not None else None)

    def log_after(self, after):
        """Every decision-log entry above id `after` but the probes (deepfake checks), once a
        check made now is on disk (every entry handed over before it is then on disk too)."""
        probe = test_api.check(self.server, CHECK, JSON)
        self.assertEqual(probe.status, 200, probe.raw)
        decision = probe.document["decision"]
        entries = []

        def complete():
            entries[:] = self.call("GET", "/v1/decisions?after=%d&limit=1000"
                                   % after).document["decisions"]
            return any(entry["id"] == decision for entry in entries)
        wait_for(complete, "check %d never reached the decision log" % decision)
        return [entry for entry in entries if entry.get("area") != CHECK["area"]]

    def last_id(self):
        probe = test_api.check(self.server, CHECK, JSON)
        self.assertEqual(probe.status, 200, probe.raw)
        return probe.document["decision"]

    def test_a_failed_filing_records_no_decision(self):
        """The case store refuses the write (a trigger stands in for a full disk): 500, and
        neither the report's decision nor any case event is in the decision log. Then the same
        report is filed: its decision and steps are, once each."""
        before = self.last_id()
        database = sqlite3.connect(self.cases_db, isolation_level=None)
        database.execute("CREATE TRIGGER refuse BEFORE INSERT ON reports BEGIN "
                         "SELECT RAISE(ABORT, 'refused by the test'); END")
        report = dict(REPORT, url="https://blog.naver.com/evidence/1")
        refused = self.call("POST", "/v1/reports", report)
        self.assertError(refused, 500, "internal", None, "the case store could not write this")
        self.assertEqual(self.log_after(before), [])
        database.execute("DROP TRIGGER refuse")
        database.close()
        filed = self.call("POST", "/v1/reports", report)
        self.assertEqual(filed.status, 201, filed.raw)
        filed = filed.document
        entries = self.log_after(before)
        steps = [step["decision"] for step in filed["history"]]
        self.assertEqual([entry["id"] for entry in entries], [filed["decision"]] + steps)
        self.assertEqual([entry.get("event") for entry in entries],
                         [None, "report_filed", "request_sent", "request_sent"])
        self.assertEqual(entries[0]["answer"], filed["answer"])
        self.assertEqual(filed["answer"]["decision"], filed["decision"])


    def test_sigkill_loses_no_step_of_the_log(self):
        """Reports filed and answered as fast as they come, then SIGKILL (--audit async: no
        answer waited for the decision log). At the next start every decision and step the
        case store holds is in the decision log, once, in id order."""
        data = tempfile.mkdtemp(prefix="epcs-test-evidence-")
        try:
            flags = ("--case-sweep", "3600000", "--data", data)
            server = Server(*flags)
            filed = []
            for n in range(12):
                response = request(server, "POST", "/v1/reports", test_api.encode(
                    # Without keys the caller is "local": the platform that answers.
                    dict(REPORT, url="https://blog.naver.com/kill/%d" % n, platform="local"),
                    JSON), JSON)
                self.assertEqual(response.status, 201, response.raw)
                filed.append(response.document)
            answered = request(server, "POST", "/v1/requests/%d/response"
                               % filed[-1]["requests"][0]["id"],
                               test_api.encode({"status": "done"}, JSON), JSON)
            self.assertEqual(answered.status, 200, answered.raw)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(30)
            server.cleanup()
            server = Server(*flags)
            try:
                # The last steps' rows were still in the outbox, deleted only with a later step.
                self.assertRegex(server.text(), r"outbox: \d+ step entries a stop left went to "
                                 r"the decision log, \d+ were there already")
                stored = [request(server, "GET", "/v1/reports/%d" % r["id"]).document
                          for r in filed]
                wanted = sorted([r["decision"] for r in stored] +
                                [step["decision"] for r in stored for step in r["history"]])
                self.assertEqual(len(set(wanted)), len(wanted))
                logged = request(server, "GET", "/v1/decisions?after=%d&limit=1000"
                                 % (wanted[0] - 1)).document["decisions"]
                ids = [entry["id"] for entry in logged]
                self.assertEqual(ids, sorted(ids))
                self.assertEqual([i for i in ids if i in set(wanted)], wanted)
                self.assertEqual(server.stop(), 0)
            finally:
                server.cleanup()
        finally:
            shutil.rmtree(data)


class AbuseTest(CaseTest):
    """Keys for platforms, the prosecutors and the commission's staff: the same posting
    reported again and again, and partners naming platforms other than their own."""

    @classmethod
    def setUpClass(cls):
        cls.make_keys()
        cls.server = Server("--keys", cls.keys, "--case-sweep", "100", auth=True)

    def post(self, who, report):
        return self.call(who, "POST", "/v1/reports", report)

    def test_a_posting_reported_again_joins_its_case(self):
        """One posting, the same URL however it is written (scheme and host in any case, a
        default port, a fragment, percent-escapes of plain characters), reported by staff,
        then by a partner, then 50 more times: one report, its reporters each once, one
        deletion request and one referral, and a join is a step of the case."""
        url = "https://blog.naver.com/poster/join-1?q=%7e1"
        filed = self.file("nec", dict(FALSE_FACT, url=url))
        self.assertEqual(filed["posting"], "https://blog.naver.com/poster/join-1?q=~1")
        self.assertEqual(filed["joined"], False)
        again = self.post("kakao", dict(FALSE_FACT, url="HTTPS://Blog.Naver.COM:443/poster/"
                                                         "join-1?q=%7E1#comments"))
        self.assertEqual(again.status, 200, again.raw)
        joined = again.document
        self.assertEqual((joined["id"], joined["joined"]), (filed["id"], True))
        for n in range(50):
            response = self.post("kakao" if n % 2 else "nec", dict(FALSE_FACT, url=url))
            self.assertEqual((response.status, response.document["id"],
                              response.document["joined"]), (200, filed["id"], True))
        whole = self.report(filed["id"])
        self.assertEqual([(r["partner"], r["url"]) for r in whole["reporters"]],
                         [("nec", url), ("kakao", "HTTPS://Blog.Naver.COM:443/poster/join-1"
                                                  "?q=%7E1#comments")])
        self.assertEqual(whole["reporters"][0]["at"], filed["filed_at"])
        self.assertEqual([r["id"] for r in whole["requests"]],
                         [r["id"] for r in filed["requests"]])
        self.assertEqual(self.events(whole["history"]), [
            ("report_filed", None, "open", "nec"),
            ("request_sent", filed["requests"][0]["id"], "open", "epcs"),
            ("request_sent", filed["requests"][1]["id"], "open", "epcs"),
            ("report_joined", None, "open", "kakao")])
        self.assertEqual(whole["history"][3]["detail"], {
            "url": "HTTPS://Blog.Naver.COM:443/poster/join-1?q=%7E1#comments",
            "facts": FALSE_FACT["facts"]})
        listed = self.call("nec", "GET", "/v1/reports?after=%d" % (filed["id"] - 1)).document
        self.assertEqual([r["id"] for r in listed["reports"] if r["url"] == url], [filed["id"]])
        # The join is in the decision log, once, as the case's next step.
        step = self.logged([whole["history"][3]["decision"]])[0]
        self.assertEqual((step["event"], step["partner"], step["subject"]),
                         ("report_joined", "kakao", filed["id"]))
        # The partner that joined reads the report as its own, with itself as reporter.
        mine = self.call("kakao", "GET", "/v1/reports/%d" % filed["id"]).document
        self.assertEqual([r["partner"] for r in mine["reporters"]], ["kakao"])
        self.assertEqual(mine["reporter_count"], 2)
        self.assertIn(filed["id"], [r["id"] for r in self.call(
            "kakao", "GET", "/v1/reports?reporter=kakao&after=%d" % (filed["id"] - 1))
            .document["reports"]])

    def test_another_category_or_election_is_another_case(self):
        url = "https://blog.naver.com/poster/join-2"
        first = self.file("nec", dict(FALSE_FACT, url=url))
        slander = self.file("nec", dict(SLANDER, url=url, platform="naver"))
        other_election = self.file("nec", dict(FALSE_FACT, url=url, election="pres21",
                                               date="2025-05-01"))
        self.assertEqual(len({first["id"], slander["id"], other_election["id"]}), 3)

    def test_a_partners_report_is_held_for_staff(self):
        """kakao reports a posting on naver: the requests are held, out of naver's queue and
        of the sweep, until staff confirm (due time and objection period from then on)."""
        filed = self.file("kakao", dict(FALSE_FACT, url="https://blog.naver.com/held/1"))
        self.assertEqual(filed["status"], "held")
        whole = self.report(filed["id"])
        deletion, referral = whole["requests"]
        self.assertEqual([(r["status"], r["due"], r["objection_until"], r["sent"])
                          for r in whole["requests"]],
                         [("held", None, None, None), ("held", None, None, None)])
        self.assertEqual(self.events(whole["history"]), [
            ("report_filed", None, "held", "kakao"),
            ("request_held", deletion["id"], "held", "epcs"),
            ("request_held", referral["id"], "held", "epcs")])
        after = "?status=all&after=%d" % (deletion["id"] - 1)
        self.assertEqual(self.queue("naver", after)["requests"], [])
        self.assertEqual(self.queue("prosecutors", after)["requests"], [])
        self.assertError(self.call("naver", "GET", "/v1/requests/%d" % deletion["id"]), 404,
                         "unknown_request", "id", "no request %d in your queue" % deletion["id"])
        self.assertError(self.answer("naver", deletion["id"], {"status": "done"}), 404,
                         "unknown_request", "id", "no request %d in your queue" % deletion["id"])
        # A partner cannot confirm, not even its own report.
        self.assertError(self.call("kakao", "POST", "/v1/reports/%d/confirm" % filed["id"]), 403,
                         "forbidden")
        time.sleep(0.3)
        self.assertEqual([r["status"] for r in self.report(filed["id"])["requests"]],
                         ["held", "held"])
        confirmed = self.call("nec", "POST", "/v1/reports/%d/confirm" % filed["id"],
                              {"reason": "checked against the original"})
        self.assertEqual(confirmed.status, 200, confirmed.raw)
        report = confirmed.document
        self.assertEqual(report["status"], "open")
        deletion, referral = report["requests"]
        self.assertEqual((deletion["status"], deletion["created"] < deletion["sent"]),
                         ("open", True))
        self.assertEqual(deletion["due"], shifted(deletion["sent"], 24 * 3600))
        self.assertEqual(deletion["objection_until"], shifted(deletion["sent"], 3 * 24 * 3600))
        self.assertEqual(self.events(report["history"])[3:], [
            ("report_confirmed", None, "open", "nec"),
            ("request_sent", deletion["id"], "open", "nec"),
            ("request_sent", referral["id"], "open", "nec")])
        self.assertEqual(report["history"][3]["detail"], {"reason": "checked against the "
                                                                    "original"})
        self.assertEqual([r["id"] for r in self.queue("naver", after)["requests"]],
                         [deletion["id"]])
        self.assertError(self.call("nec", "POST", "/v1/reports/%d/confirm" % filed["id"]), 409,
                         "report_not_held", "id",
                         "report %d holds no requests for confirmation: it is open"
                         % filed["id"])

    def test_staff_dismiss_held_requests(self):
        filed = self.file("kakao", dict(SLANDER, url="https://story.kakao.com/held/2",
                                        platform="naver"))
        path = "/v1/reports/%d/dismiss" % filed["id"]
        self.assertError(self.call("nec", "POST", path, {}), 400, "bad_request", "reason",
                         "a dismissal needs a reason")
        self.assertError(self.call("nec", "POST", path, {"reason": ""}), 422, "invalid_fact",
                         "reason", "reason must be text of 1 to 2000 bytes")
        self.assertError(self.call("nec", "POST", path, {"reason": "x", "why": "y"}), 400,
                         "bad_request", None, "unknown field 'why': reason")
        self.assertError(self.call("nec", "POST", path, ["x"]), 400, "bad_request", None,
                         "the review must be a map {reason}")
        self.assertError(self.call("nec", "POST", path, {"reason": 7}), 400, "bad_request",
                         "reason", "reason must be a string")
        self.assertError(self.call("nec", "POST", path, {"reason": "x" * 2001}), 422,
                         "invalid_fact", "reason", "reason must be text of 1 to 2000 bytes")
        self.assertError(self.call("nec", "POST", "/v1/reports/abc/dismiss", {"reason": "x"}),
                         400, "bad_request", "id",
                         "a report id is a whole number, as POST /v1/reports gave it")
        self.assertError(self.call("nec", "POST", "/v1/reports/99999999/confirm"), 404,
                         "unknown_report", "id", "no report 99999999")
        self.assertError(self.call("nec", "GET", path), 405, "method_not_allowed")
        self.assertError(self.call("daum", "POST", path, {"reason": "x"}), 403, "forbidden")
        # None of it changed the report.
        self.assertEqual(self.report(filed["id"])["status"], "held")
        dismissed = self.call("nec", "POST", path, {"reason": "satire, not a statement of fact"})
        self.assertEqual(dismissed.status, 200, dismissed.raw)
        report = dismissed.document
        self.assertEqual((report["status"], [r["status"] for r in report["requests"]]),
                         ("dismissed", ["dismissed", "dismissed"]))
        self.assertEqual(self.events(report["history"])[3:], [
            ("report_dismissed", None, "dismissed", "nec"),
            ("request_dismissed", report["requests"][0]["id"], "dismissed", "nec"),
            ("request_dismissed", report["requests"][1]["id"], "dismissed", "nec")])
        self.assertEqual(report["history"][3]["detail"],
                         {"reason": "satire, not a statement of fact"})
        self.assertError(self.call("nec", "POST", "/v1/reports/%d/confirm" % filed["id"]), 409,
                         "report_not_held", "id",
                         "report %d holds no requests for confirmation: it is dismissed"
                         % filed["id"])
        # Reported again by anyone, a dismissed posting stays dismissed.
        again = self.post("daum", dict(SLANDER, url="https://story.kakao.com/held/2",
                                       platform="naver"))
        self.assertEqual((again.status, again.document["status"]), (200, "dismissed"))

    def test_staff_joining_a_held_report_sends_it(self):
        filed = self.file("kakao", dict(FALSE_FACT, url="https://blog.naver.com/held/3"))
        self.assertEqual(filed["status"], "held")
        joined = self.post("nec", dict(FALSE_FACT, url="https://blog.naver.com/held/3"))
        self.assertEqual(joined.status, 200, joined.raw)
        self.assertEqual((joined.document["status"],
                          [r["status"] for r in joined.document["requests"]]),
                         ("open", ["open", "open"]))
        self.assertEqual([e[0] for e in self.events(joined.document["history"])], [
            "report_filed", "request_held", "request_held", "report_joined", "report_confirmed",
            "request_sent", "request_sent"])

    def test_partner_policy(self):
        """Staff read and set whether a partner's reports send at once or are held; each change
        is in the decision log with who made it."""
        self.assertEqual(self.call("nec", "GET", "/v1/admin/partners/zum").document,
                         {"partner": "zum", "reports": "hold", "default": True, "set_at": None,
                          "set_by": None})
        changed = self.call("nec", "PUT", "/v1/admin/partners/zum", {"reports": "send"})
        self.assertEqual(changed.status, 200, changed.raw)
        policy = changed.document
        self.assertEqual({k: policy[k] for k in ("partner", "reports", "default", "set_by")},
                         {"partner": "zum", "reports": "send", "default": False,
                          "set_by": "nec"})
        self.assertEqual(self.call("nec", "GET", "/v1/admin/partners/zum").document, policy)
        filed = self.file("zum", dict(FALSE_FACT, url="https://blog.naver.com/sent/1"))
        self.assertEqual((filed["status"], self.report(filed["id"])["requests"][0]["status"]),
                         ("open", "open"))
        entries = self.call("nec", "GET", "/v1/decisions?partner=zum&limit=1000").document
        events = [e for e in entries["decisions"] if e.get("event") == "partner_policy_set"]
        self.assertEqual([(e["subject"], e["detail"]) for e in events],
                         [(0, {"partner": "zum", "reports": "send", "previous": "hold",
                               "by": "nec"})])
        # The same again is no change: nothing more is logged.
        self.assertEqual(self.call("nec", "PUT", "/v1/admin/partners/zum",
                                   {"reports": "send"}).document, policy)
        for method, path, body, status, code, field, message in [
                ("PUT", "/v1/admin/partners/zum", {"reports": "maybe"}, 422, "invalid_fact",
                 "reports", "reports must be send or hold"),
                ("PUT", "/v1/admin/partners/zum", {}, 400, "bad_request", "reports",
                 "reports is required: send or hold"),
                ("PUT", "/v1/admin/partners/zum", {"reports": "send", "x": 1}, 400,
                 "bad_request", None, "unknown field 'x': reports"),
                ("PUT", "/v1/admin/partners/zum", ["send"], 400, "bad_request", None,
                 "the policy must be a map {reports}"),
                ("GET", "/v1/admin/partners/Not%20One", None, 400, "bad_request", "id",
                 "a partner id is 1-63 of a-z 0-9 _ - ."),
                ("GET", "/v1/admin/partners/nobody", None, 404, "unknown_partner", "id",
                 "no API key belongs to partner 'nobody'"),
                ("DELETE", "/v1/admin/partners/zum", None, 405, "method_not_allowed", None,
                 None)]:
            with self.subTest(method=method, path=path, body=body):
                self.assertError(self.call("nec", method, path, body), status, code, field,
                                 message)
        self.assertError(self.call("kakao", "PUT", "/v1/admin/partners/kakao",
                                   {"reports": "send"}), 403, "forbidden")
        self.assertError(self.call("kakao", "GET", "/v1/admin/partners/kakao"), 403,
                         "forbidden")


def fetch(server, path):
    """GET `path` with curl; the body of a 200 answer."""
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "body")
        result = subprocess.run(["curl", "-sS", "--max-time", "60", "--http2-prior-knowledge",
                                 "-o", out, "-w", "%{http_code}", server.url(path)],
                                capture_output=True, text=True)
        assert result.returncode == 0 and result.stdout == "200", result.stdout + result.stderr
        with open(out, "rb") as f:
            return f.read()


REPORT = {"url": "https://blog.naver.com/stop/1", "platform": "naver", "election": "na22",
          "category": "false_fact", "date": "2024-03-01",
          "facts": {"intent": "to_defeat", "target": "candidate"}}
EXPORT_PATH = "/v1/partners/me/requests?partner=naver&status=all&format=csv"
LISTING_PATH = "/v1/reports?platform=kakao&status=open&limit=1000"
CHECK = {"election": "na22", "area": "deepfake", "date": "2024-02-15",
         "activity": {"kind": "post", "deepfake": True, "purpose": "campaign",
                      "labeled": True}}


if __name__ == "__main__":
    test_api.run_suite()
