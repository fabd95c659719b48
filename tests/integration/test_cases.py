#!/usr/bin/python3
"""Integration tests of reports and the requests they cause, on the real epcsd over HTTP/2:
filing (monitoring staff and partners), the partners' queues and answers, isolation between
partners, the staff's lists and CSV export, overdue requests, second requests and escalation
to the prosecutors under amended due times, restarts in the middle (SIGKILL and SIGTERM), bad
input, and every step in GET /v1/decisions.

Shares the harness of test_api.py. Run through ctest, or directly:
    tests/integration/test_cases.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules --cases ../shared/cases/public.tsv
"""

import datetime
import os
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, MSGPACK, EpcsTest, Server, encode, request  # noqa: E402
from test_service import bearer, create_key, key_id, wait_for  # noqa: E402

PENALTY_OVERDUE = "Art. 261(6)4: administrative fine of up to KRW 3 million"
PENALTY_TWICE = ("Art. 256(3)1(e): imprisonment of up to 2 years or a fine of up to KRW 4 "
                 "million")
PENALTY_250_2 = ("Art. 250(2): imprisonment of up to 7 years or a fine of KRW 5 million to "
                 "30 million")
PENALTY_251 = "Art. 251: imprisonment of up to 3 years or a fine of up to KRW 5 million"
ESCALATION = {"after": 2, "kind": "referral", "form": "accusation", "to": "prosecutors",
              "article": "256(3)1(e)", "penalty": PENALTY_TWICE}


def deletion_action(due_hours=24, objection_days=3):
    """The deletion request lua_rules/false_information.lua asks for, as its verdicts carry it."""
    return {"kind": "deletion_request", "to": "platform", "article": "82-4(3)",
            "due_hours": due_hours, "objection_days": objection_days,
            "overdue": {"article": "261(6)4", "penalty": PENALTY_OVERDUE},
            "escalation": ESCALATION}


def referral_action(article, penalty):
    """The referral of a posting whose poster the commission knows: an accusation."""
    return {"kind": "referral", "form": "accusation", "to": "prosecutors", "article": article,
            "due_hours": 24, "penalty": penalty}


FALSE_FACT = {"url": "https://blog.naver.com/poster/223", "platform": "naver", "election": "na22",
              "category": "false_fact", "date": "2024-03-01",
              "facts": {"intent": "to_defeat", "target": "candidate", "poster_identified": True}}
SLANDER = {"url": "https://story.kakao.com/x/9", "platform": "kakao", "election": "na22",
           "category": "slander", "date": "2024-03-05",
           "facts": {"target": "candidate", "true_facts": False, "public_interest": True,
                     "poster_identified": True}}

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

POSTINGS = iter(range(1, 1 << 30))


def fresh(report, **changes):
    """`report` about a posting of its own: one posting reported again joins its report, and
    these tests are about the life of one report each."""
    return dict(report, url="%s/%d" % (report["url"], next(POSTINGS)), **changes)


def instant(text):
    return datetime.datetime.strptime(text, TIME_FORMAT)


def shifted(text, seconds):
    return (instant(text) + datetime.timedelta(seconds=seconds)).strftime(TIME_FORMAT)


def fast_rules(directory):
    """The bundled rules as commission staff would amend them for a drill: deletion requests
    due in 3 seconds, objections within 1 second. Returns the directory."""
    test_api.copy_rules(directory)
    path = os.path.join(directory, "false_information.lua")
    with open(path) as f:
        source = f.read()
    for old, new in [('deletion_due_hours = {\n        {from = "2004-03-12", value = 24,',
                      'deletion_due_hours = {\n        {from = "2004-03-12", value = 3 / 3600,'),
                     ("local OBJECTION_DAYS = 3", "local OBJECTION_DAYS = 1 / 86400"),
                     # The file's own test spells the deletion request out.
                     ("due_hours = 24, objection_days = 3,",
                      "due_hours = 3 / 3600, objection_days = 1 / 86400,")]:
        assert source.count(old) == 1, "false_information.lua no longer holds %r" % old
        source = source.replace(old, new)
    with open(path, "w") as f:
        f.write(source)
    return directory


class CaseTest(EpcsTest):
    """Keys for four platforms, the prosecutors and the commission's monitoring staff."""

    @classmethod
    def make_keys(cls):
        cls.scratch = tempfile.mkdtemp(prefix="epcs-test-cases-")
        cls.keys = os.path.join(cls.scratch, "keys")
        cls.tokens = {partner: create_key(cls.keys, partner, role) for partner, role in
                      [("naver", "partner"), ("kakao", "partner"), ("prosecutors", "partner"),
                       ("nec", "staff"), ("daum", "partner"), ("zum", "partner"),
                       ("dcinside", "partner")]}

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.scratch)
        assert status == 0, "epcsd exited with %d" % status

    def call(self, who, method, path, body=None, kind=JSON, accept=None, server=None,
             extra=()):
        return request(server or self.server, method, path,
                       encode(body, kind) if body is not None else None,
                       kind if body is not None else None, accept=accept,
                       extra=list(bearer(self.tokens[who])) + list(extra))

    def file(self, who, report, kind=JSON, server=None):
        response = self.call(who, "POST", "/v1/reports", report, kind, server=server)
        self.assertEqual(response.status, 201, response.raw)
        self.assertEqual(response.version, "2")
        self.assertEqual(response.content_type, kind)
        return response.document

    def report(self, report_id, server=None):
        response = self.call("nec", "GET", "/v1/reports/%d" % report_id, server=server)
        self.assertEqual(response.status, 200, response.raw)
        return response.document

    def queue(self, who, query="", accept=None, server=None):
        response = self.call(who, "GET", "/v1/partners/me/requests" + query, accept=accept,
                             server=server)
        self.assertEqual(response.status, 200, response.raw)
        return response.document

    def answer(self, who, request_id, body, kind=JSON, server=None):
        return self.call(who, "POST", "/v1/requests/%d/response" % request_id, body, kind,
                         server=server)

    def events(self, history):
        return [(step["event"], step["request"], step["status"], step["by"]) for step in history]

    def logged(self, ids, server=None):
        """The decision-log entries with these ids, once all of them are on disk."""
        wanted = set(ids)
        found = {}

        def complete():
            response = self.call("nec", "GET", "/v1/decisions?after=%d&limit=1000"
                                 % (min(wanted) - 1), server=server)
            self.assertEqual(response.status, 200, response.raw)
            for entry in response.document["decisions"]:
                if entry["id"] in wanted:
                    found[entry["id"]] = entry
            return len(found) == len(wanted)
        wait_for(complete, "steps missing from the decision log: %s" % (wanted - set(found)))
        return [found[i] for i in sorted(wanted)]


class CaseFlowTest(CaseTest):
    """The bundled rules: deletion requests due in 24 hours, objections within 3 days."""

    @classmethod
    def setUpClass(cls):
        cls.make_keys()
        cls.server = Server("--keys", cls.keys, auth=True)

    def test_whole_flow(self):
        """Staff file a report in msgpack; the platform and the prosecutors pull their queues
        and answer (objection, data submitted); the report closes; every step is logged."""
        report = fresh(FALSE_FACT)
        filed = self.file("nec", report, MSGPACK)
        report_id, created = filed["id"], filed["filed_at"]
        self.assertRegex(created, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        self.assertRegex(filed["ruleset"], r"^rs-[0-9a-f]{16}$")
        answer = filed["answer"]
        self.assertEqual({k: answer[k] for k in ("verdict", "area", "article", "deadline",
                                                  "penalty", "actions", "decision")},
                         {"verdict": "prohibited", "area": "false_information",
                          "article": "250(2)", "deadline": "2024-04-10", "penalty": PENALTY_250_2,
                          "actions": [deletion_action(),
                                      referral_action("250(2)", PENALTY_250_2)],
                          "decision": filed["decision"]})
        deletion_id, referral_id = [r["id"] for r in filed["requests"]]
        self.assertEqual(referral_id, deletion_id + 1)
        posting = {"url": report["url"], "platform": "naver", "election": "na22",
                   "category": "false_fact"}
        deletion = dict(posting, id=deletion_id, report=report_id, kind="deletion_request",
                        to="naver", article="82-4(3)", attempt=1, status="open", created=created,
                        sent=created, due=shifted(created, 24 * 3600),
                        objection_until=shifted(created, 3 * 24 * 3600), follows=None,
                        action=deletion_action(), answer=None)
        referral = dict(posting, id=referral_id, report=report_id, kind="referral",
                        to="prosecutors", article="250(2)", attempt=1, status="open",
                        created=created, sent=created, due=shifted(created, 24 * 3600),
                        objection_until=None,
                        follows=None, action=referral_action("250(2)", PENALTY_250_2),
                        answer=None)
        summary = {"id": report_id, "status": "open", "filed_at": created, "filed_by": "nec",
                   "url": report["url"], "platform": "naver", "election": "na22",
                   "category": "false_fact", "date": "2024-03-01", "verdict": "prohibited",
                   "article": "250(2)", "ruleset": filed["ruleset"],
                   "decision": filed["decision"], "updated_at": created, "request_count": 2,
                   "posting": report["url"], "reporter_count": 1}
        history = filed.pop("history")
        self.assertEqual(filed, dict(summary, joined=False, facts=FALSE_FACT["facts"],
                                     answer=answer, requests=[deletion, referral],
                                     reporters=[{"partner": "nec", "at": created,
                                                 "url": report["url"]}]))
        self.assertEqual(self.events(history), [
            ("report_filed", None, "open", "nec"), ("request_sent", deletion_id, "open", "epcs"),
            ("request_sent", referral_id, "open", "epcs")])
        self.assertEqual(history[0]["detail"], {
            "url": report["url"], "platform": "naver", "category": "false_fact",
            "date": "2024-03-01", "verdict": "prohibited", "article": "250(2)",
            "decision": filed["decision"]})
        self.assertEqual(history[1]["detail"], {
            "report": report_id, "kind": "deletion_request", "to": "naver",
            "article": "82-4(3)", "attempt": 1, "due": deletion["due"]})

        # The platform pulls its queue, in either encoding; only what is addressed to it.
        for accept in (MSGPACK, JSON):
            mine = self.queue("naver", "?status=open&after=%d" % (deletion_id - 1), accept)
            self.assertEqual(mine, {"requests": [deletion], "next": None})
        self.assertEqual(self.queue("kakao", "?status=all&after=%d" % (deletion_id - 1)),
                         {"requests": [], "next": None})

        # Another platform cannot answer it: the same 404 as for a request that does not exist.
        for who, request_id in (("kakao", deletion_id), ("naver", referral_id),
                                ("naver", 987654321)):
            self.assertError(self.answer(who, request_id, {"status": "done"}), 404,
                             "unknown_request", "id", "no request %d in your queue" % request_id)

        # The platform objects (within 3 days, with a reason); a second answer is refused.
        self.assertError(self.answer("naver", deletion_id, {"status": "objection"}), 400,
                         "bad_request", "reason", "an objection needs a reason")
        objected = self.answer("naver", deletion_id,
                               {"status": "objection", "reason": "풍자 게시물입니다 (satire)"},
                               MSGPACK)
        self.assertEqual(objected.status, 200, objected.raw)
        answered_at = objected.document["answer"]["at"]
        self.assertEqual(objected.document, dict(
            deletion, status="objected",
            answer={"status": "objected", "at": answered_at,
                    "reason": "풍자 게시물입니다 (satire)"}))
        self.assertError(self.answer("naver", deletion_id, {"status": "done"}), 409,
                         "request_closed", "id",
                         "request %d is objected already; it takes no further answer"
                         % deletion_id)

        # The prosecutors submit data; with nothing left open the report closes.
        self.assertEqual(self.queue("prosecutors", "?after=%d" % (deletion_id - 1)),
                         {"requests": [referral], "next": None})
        data = {"case": "2024형제1234", "office": "Seoul Central"}
        submitted = self.answer("prosecutors", referral_id,
                                {"status": "data_submitted", "data": data})
        self.assertEqual(submitted.status, 200, submitted.raw)
        self.assertEqual(submitted.document["answer"], {
            "status": "data_submitted", "at": submitted.document["answer"]["at"], "data": data})

        final = self.report(report_id)
        self.assertEqual(final["status"], "closed")
        self.assertEqual(final["updated_at"], submitted.document["answer"]["at"])
        self.assertEqual(self.events(final["history"]), [
            ("report_filed", None, "open", "nec"), ("request_sent", deletion_id, "open", "epcs"),
            ("request_sent", referral_id, "open", "epcs"),
            ("request_answered", deletion_id, "objected", "naver"),
            ("request_answered", referral_id, "data_submitted", "prosecutors"),
            ("report_closed", None, "closed", "epcs")])
        self.assertEqual(final["history"][3]["detail"], {
            "report": report_id, "status": "objected", "reason": "풍자 게시물입니다 (satire)",
            "late": False})

        # The decision, then every step, in the decision log and in that order.
        step_ids = [step["decision"] for step in final["history"]]
        self.assertEqual(step_ids, sorted(step_ids))
        self.assertGreater(step_ids[0], filed["decision"])
        decision, *steps = self.logged([filed["decision"]] + step_ids)
        self.assertEqual({k: decision[k] for k in ("partner", "election", "date", "area",
                                                    "verdict", "article", "request", "answer")},
                         {"partner": "nec", "election": "na22", "date": "2024-03-01",
                          "area": "false_information", "verdict": "prohibited",
                          "article": "250(2)",
                          "request": {"election": "na22", "area": "false_information",
                                      "date": "2024-03-01",
                                      "activity": {"kind": "posting", "category": "false_fact",
                                                   "intent": "to_defeat",
                                                   "target": "candidate",
                                                   "poster_identified": True}},
                          "answer": answer})
        self.assertEqual([(s["event"], s["partner"], s["election"], s["subject"]) for s in steps], [
            ("report_filed", "nec", "na22", report_id),
            ("request_sent", "naver", "na22", deletion_id),
            ("request_sent", "prosecutors", "na22", referral_id),
            ("request_answered", "naver", "na22", deletion_id),
            ("request_answered", "prosecutors", "na22", referral_id),
            ("report_closed", "nec", "na22", report_id)])
        self.assertEqual([s["detail"] for s in steps], [h["detail"] for h in final["history"]])
        # The report's decision replays like any check.
        replay = self.call("nec", "POST", "/v1/decisions/%d/replay" % filed["decision"])
        self.assertEqual(replay.status, 200, replay.raw)
        self.assertTrue(replay.document["same"])

    def test_partner_files_and_platform_complies(self):
        """A partner files in JSON; its requests wait for staff (a partner's report is held
        unless staff set its policy to send); once confirmed the platform answers done; the
        referral keeps it open."""
        filed = self.file("kakao", fresh(SLANDER))
        self.assertEqual((filed["filed_by"], filed["verdict"], filed["article"], filed["status"]),
                         ("kakao", "prohibited", "251", "held"))
        self.assertEqual(filed["answer"]["actions"],
                         [deletion_action(), referral_action("251", PENALTY_251)])
        self.assertEqual([r["status"] for r in filed["requests"]], ["held"])
        confirmed = self.call("nec", "POST", "/v1/reports/%d/confirm" % filed["id"])
        self.assertEqual(confirmed.status, 200, confirmed.raw)
        self.assertEqual(confirmed.document["status"], "open")
        # The filer's report holds its own request; staff see the referral too.
        deletion, = self.call("kakao", "GET", "/v1/reports/%d" % filed["id"]).document["requests"]
        self.assertEqual(deletion["status"], "open")
        self.assertEqual(filed["request_count"], 2)
        referral = self.report(filed["id"])["requests"][1]
        self.assertEqual((deletion["to"], referral["to"]), ("kakao", "prosecutors"))
        done = self.answer("kakao", deletion["id"], {"status": "done"})
        self.assertEqual(done.status, 200, done.raw)
        self.assertEqual(done.document["status"], "done")
        self.assertEqual(done.document["answer"], {"status": "done",
                                                   "at": done.document["answer"]["at"]})
        report = self.report(filed["id"])
        self.assertEqual(report["status"], "open")
        self.assertEqual([r["status"] for r in report["requests"]], ["done", "open"])
        self.assertEqual(self.queue("kakao", "?status=done&after=%d" % (deletion["id"] - 1))
                         ["requests"], [done.document])

    def test_a_retried_filing_or_answer_is_stored_once(self):
        """Idempotency-Key: a retry (same key, same body, same path) gets the first answer and
        stores nothing more; the same key with another request is refused; keys are the
        partner's own."""
        report = fresh(SLANDER)
        key = ["-H", "idempotency-key: filing-%s" % report["url"][-12:]]
        first = self.call("nec", "POST", "/v1/reports", report, JSON, extra=key)
        self.assertEqual(first.status, 201, first.raw)
        self.assertNotIn("idempotent-replayed", first.headers)
        again = self.call("nec", "POST", "/v1/reports", report, JSON, extra=key)
        self.assertEqual(again.status, 201, again.raw)
        self.assertIn("idempotent-replayed: true", again.headers)
        self.assertEqual(again.raw, first.raw)
        filed = first.document
        # One report, one set of requests, one filing in its history.
        stored = self.report(filed["id"])
        self.assertEqual(len(stored["requests"]), len(filed["requests"]))
        self.assertEqual([step["event"] for step in stored["history"]].count("report_filed"), 1)
        listed = self.call("nec", "GET", "/v1/reports?limit=1000").document["reports"]
        self.assertEqual([r["id"] for r in listed if r["url"] == report["url"]], [filed["id"]])
        # The same key with another body: refused, nothing stored.
        other = fresh(SLANDER)
        reused = self.call("nec", "POST", "/v1/reports", other, JSON, extra=key)
        self.assertError(reused, 422, "idempotency_key_reused", "Idempotency-Key",
                         "Idempotency-Key 'filing-%s' was sent before with another request; a "
                         "retry sends the same body to the same path, a new request a new key"
                         % report["url"][-12:])
        listed = self.call("nec", "GET", "/v1/reports?limit=1000").document["reports"]
        self.assertEqual([r for r in listed if r["url"] == other["url"]], [])
        # Another partner's key of the same name is its own.
        theirs = self.call("kakao", "POST", "/v1/reports", other, JSON, extra=key)
        self.assertEqual(theirs.status, 201, theirs.raw)
        # An answer retried: the first answer again, the request answered once.
        request_id = filed["requests"][0]["id"]
        to = filed["requests"][0]["to"]
        answer_key = ["-H", "idempotency-key: answer-1"]
        done = self.call(to, "POST", "/v1/requests/%d/response" % request_id,
                         {"status": "done"}, JSON, extra=answer_key)
        self.assertEqual(done.status, 200, done.raw)
        retried = self.call(to, "POST", "/v1/requests/%d/response" % request_id,
                            {"status": "done"}, JSON, extra=answer_key)
        self.assertEqual((retried.status, retried.raw), (200, done.raw))
        # Without the key, the same answer meets a closed request.
        self.assertEqual(self.answer(to, request_id, {"status": "done"}).status, 409)
        history = self.report(filed["id"])["history"]
        self.assertEqual([(step["event"], step["request"]) for step in history]
                         .count(("request_answered", request_id)), 1)
        # curl sends an empty header as "name;".
        for header in ("idempotency-key;", "idempotency-key: " + "x" * 256,
                       "idempotency-key: tab\there"):
            response = self.call("nec", "POST", "/v1/reports", fresh(SLANDER), JSON,
                                 extra=["-H", header])
            self.assertError(response, 400, "bad_request", "Idempotency-Key",
                             "Idempotency-Key must be 1 to 255 visible ASCII characters")

    def test_reports_that_ask_for_nothing(self):
        allowed = self.file("nec", fresh(SLANDER, facts={"target": "candidate",
                                                        "true_facts": True,
                                                        "public_interest": True}))
        self.assertEqual((allowed["status"], allowed["verdict"], allowed["requests"],
                          allowed["answer"]["exception"]),
                         ("no_action", "allowed", [], "true_and_public_interest"))
        self.assertEqual(self.events(allowed["history"]),
                         [("report_filed", None, "no_action", "nec")])
        unclear = self.file("nec", fresh(FALSE_FACT, facts={}))
        self.assertEqual((unclear["status"], unclear["verdict"], unclear["answer"]["missing"],
                          unclear["facts"]),
                         ("needs_facts", "needs_facts", ["activity.intent", "activity.target"], {}))
        dated = fresh(FALSE_FACT)
        dated.pop("date")
        today = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=9)))
        self.assertEqual(self.file("nec", dated)["date"], today.strftime("%Y-%m-%d"))

    def test_a_case_event_is_not_replayed(self):
        """A step of a case is in the decision log, but has no check to decide again."""
        filed = self.file("nec", fresh(SLANDER))
        event = filed["history"][0]["decision"]
        self.logged([event])
        replay = self.call("nec", "POST", "/v1/decisions/%d/replay" % event)
        self.assertEqual(replay.status, 409, replay.raw)
        self.assertEqual((replay.document["error"], replay.document["field"]),
                         ("not_a_decision", "id"))
        self.assertEqual(replay.document["message"],
                         "%d is a case event, not a decision: there is no check to replay"
                         % event)
        # The report's own decision replays.
        self.assertEqual(self.call("nec", "POST", "/v1/decisions/%d/replay"
                                   % filed["decision"]).status, 200)

    def test_partners_see_only_their_own(self):
        naver, kakao = self.tokens["naver"], self.tokens["kakao"]
        self.assertError(self.call("naver", "GET", "/v1/partners/me/requests?partner=kakao"), 403,
                         "forbidden", "partner",
                         "key %s of partner naver sees its own queue only" % key_id(naver))
        filed = self.file("nec", fresh(SLANDER))
        deletion_id = filed["requests"][0]["id"]
        after = "after=%d" % (deletion_id - 1)
        self.assertEqual([r["id"] for r in self.queue("nec", "?partner=kakao&" + after)
                          ["requests"]], [deletion_id])
        self.assertEqual(self.queue("naver", "?partner=naver&" + after)["requests"], [])
        self.assertError(self.answer("naver", deletion_id, {"status": "done"}), 404,
                         "unknown_request", "id", "no request %d in your queue" % deletion_id)
        # A single request: its partner and staff read it as the queue lists it; to any
        # other partner it does not exist.
        listed = self.queue("kakao", "?" + after)["requests"][0]
        for who in ("kakao", "nec"):
            response = self.call(who, "GET", "/v1/requests/%d" % deletion_id)
            self.assertEqual(response.status, 200, response.raw)
            self.assertEqual(response.document, listed)
        for who in ("naver", "prosecutors"):
            self.assertError(self.call(who, "GET", "/v1/requests/%d" % deletion_id), 404,
                             "unknown_request", "id", "no request %d in your queue" % deletion_id)
        self.assertEqual(self.report(filed["id"])["requests"][0]["status"], "open")
        for path in ("/v1/reports", "/v1/partners/me/requests", "/v1/requests/%d" % deletion_id):
            self.assertError(request(self.server, "GET", path), 401, "unauthorized",
                             "authorization")

    def test_partners_read_the_reports_they_filed(self):
        """A partner lists and reads its own reports, and of each only the requests addressed
        to it: a request to another partner, with its answer, is not the filer's to read."""
        kakao = self.tokens["kakao"]
        by_staff = self.file("nec", fresh(SLANDER))
        own = self.file("kakao", fresh(SLANDER), MSGPACK)
        about_another = self.file("kakao", fresh(FALSE_FACT))
        deletion, referral = self.report(own["id"])["requests"]
        self.assertEqual((deletion["to"], referral["to"]), ("kakao", "prosecutors"))
        after = "?after=%d" % (by_staff["id"] - 1)
        listed = self.call("kakao", "GET", "/v1/reports" + after)
        self.assertEqual(listed.status, 200, listed.raw)
        self.assertEqual([(r["id"], r["filed_by"]) for r in listed.document["reports"]],
                         [(own["id"], "kakao"), (about_another["id"], "kakao")])
        self.assertEqual(self.call("kakao", "GET", "/v1/reports%s&filed_by=kakao" % after)
                         .document, listed.document)
        csv = self.call("kakao", "GET", "/v1/reports%s&format=csv" % after)
        self.assertEqual(csv.status, 200, csv.raw)
        self.assertEqual([line.split(",")[0] for line in csv.raw.decode().split("\r\n")[1:-1]],
                         [str(own["id"]), str(about_another["id"])])
        staff_all = self.call("nec", "GET", "/v1/reports" + after).document["reports"]
        self.assertEqual([r["id"] for r in staff_all],
                         [by_staff["id"], own["id"], about_another["id"]])
        staff_kakao = self.call("nec", "GET", "/v1/reports%s&filed_by=kakao" % after)
        self.assertEqual(staff_kakao.document, listed.document)
        self.assertError(self.call("kakao", "GET", "/v1/reports?filed_by=nec"), 403,
                         "forbidden", "filed_by",
                         "key %s of partner kakao sees the reports it filed or joined only"
                         % key_id(kakao))

        # Its own report, with its own deletion request and not the referral; request_count
        # still counts both.
        whole = self.report(own["id"])
        mine = self.call("kakao", "GET", "/v1/reports/%d" % own["id"])
        self.assertEqual(mine.status, 200, mine.raw)
        expected = dict(whole, requests=[whole["requests"][0]],
                        history=[step for step in whole["history"]
                                 if step["request"] in (None, deletion["id"])])
        self.assertEqual(mine.document, expected)
        # The answer to the filing is the same, and says it made a report of its own.
        self.assertEqual(own, dict(expected, joined=False))
        self.assertEqual(mine.document["request_count"], 2)
        # A partner's report waits for staff before anything is sent.
        self.assertEqual(self.events(mine.document["history"]), [
            ("report_filed", None, "held", "kakao"),
            ("request_held", deletion["id"], "held", "epcs")])
        # A report about a posting on another platform: no request of the filer's, so only the
        # report's own steps.
        theirs = self.call("kakao", "GET", "/v1/reports/%d" % about_another["id"]).document
        self.assertEqual((theirs["requests"], self.events(theirs["history"])),
                         ([], [("report_filed", None, "held", "kakao")]))
        for who, report_id in (("kakao", by_staff["id"]), ("naver", own["id"])):
            self.assertError(self.call(who, "GET", "/v1/reports/%d" % report_id), 404,
                             "unknown_report", "id",
                             "no report %d filed or joined by you" % report_id)

    def test_queue_csv(self):
        """A queue as CSV: the requests' fields but the action and submitted data, the answer as
        answered_at, reason and via; paged with epcs-next like the report export."""
        filed = [self.file("nec", dict(FALSE_FACT, platform="daum",
                                       url="https://cafe.daum.net/x/%d" % n)) for n in (2, 3)]
        first, second = [report["requests"][0] for report in filed]
        reason = 'not "false", see the record'
        objected = self.answer("daum", first["id"], {"status": "objection", "reason": reason})
        self.assertEqual(objected.status, 200, objected.raw)
        answered_at = objected.document["answer"]["at"]

        def line(request, status, answer):
            return ("%d,%d,deletion_request,daum,82-4(3),1,%s,%s,%s,%s,,%s,daum,na22,false_fact,"
                    "%s\r\n" % (request["id"], request["report"], status, request["created"],
                                 request["due"], request["objection_until"], request["url"],
                                 answer))
        header = ("id,report,kind,to,article,attempt,status,created,due,objection_until,follows,"
                  "url,platform,election,category,answered_at,reason,via\r\n")
        rows = [line(first, "objected", '%s,"not ""false"", see the record",' % answered_at),
                line(second, "open", ",,")]
        query = "?status=all&after=%d" % (first["id"] - 1)
        by_query = self.call("daum", "GET", "/v1/partners/me/requests%s&format=csv" % query)
        by_accept = self.call("daum", "GET", "/v1/partners/me/requests" + query,
                              accept="text/csv")
        by_staff = self.call("nec", "GET", "/v1/partners/me/requests%s&partner=daum&format=csv"
                             % query)
        for response in (by_query, by_accept, by_staff):
            self.assertEqual(response.status, 200, response.raw)
            self.assertEqual(response.content_type, "text/csv; charset=utf-8; header=present")
            self.assertEqual(response.raw.decode("utf-8"), header + "".join(rows))
            self.assertNotIn("epcs-next", response.headers)
        page = self.call("daum", "GET", "/v1/partners/me/requests%s&format=csv&limit=1" % query)
        self.assertEqual(page.raw.decode("utf-8"), header + rows[0])
        self.assertIn("epcs-next: %d\r\n" % first["id"], page.headers)
        pending = self.call("daum", "GET", "/v1/partners/me/requests?after=%d&format=csv"
                            % (first["id"] - 1))
        self.assertEqual(pending.raw.decode("utf-8"), header + rows[1])
        self.assertError(self.call("daum", "GET", "/v1/partners/me/requests?format=csv&"
                                   "limit=100001"), 400, "bad_request", "limit",
                         "limit must be a whole number from 1 to 100000")

    def test_csv_cells_are_text(self):
        """A partner's text that a spreadsheet would run as a formula (= + - @, tab, CR first)
        is exported with a leading apostrophe, so it shows as the text it is."""
        reasons = ['=HYPERLINK("http://evil.example","open")', "+1+1", "-2+3", "@SUM(A1:A9)",
                   "\tcmd", "\r=1", "plain, and safe"]
        expected = ['"\'=HYPERLINK(""http://evil.example"",""open"")"', "'+1+1", "'-2+3",
                    "'@SUM(A1:A9)", "'\tcmd", '"\'\r=1"', '"plain, and safe"']
        requests = []
        for n, reason in enumerate(reasons):
            filed = self.file("nec", dict(FALSE_FACT, platform="dcinside",
                                          url="https://gall.dcinside.com/formula/%d" % n))
            deletion = filed["requests"][0]
            done = self.answer("dcinside", deletion["id"], {"status": "done", "reason": reason})
            self.assertEqual(done.status, 200, done.raw)
            requests.append(done.document)
        query = "?status=done&after=%d&format=csv" % (requests[0]["id"] - 1)
        response = self.call("dcinside", "GET", "/v1/partners/me/requests" + query)
        self.assertEqual(response.status, 200, response.raw)
        rows = ["%d,%d,deletion_request,dcinside,82-4(3),1,done,%s,%s,%s,,%s,dcinside,na22,false_fact,"
                "%s,%s,\r\n" % (r["id"], r["report"], r["created"], r["due"],
                                  r["objection_until"], r["url"], r["answer"]["at"], cell)
                for r, cell in zip(requests, expected)]
        self.assertEqual(response.raw.decode("utf-8"),
                         "id,report,kind,to,article,attempt,status,created,due,objection_until,"
                         "follows,url,platform,election,category,answered_at,reason,via\r\n"
                         + "".join(rows))
        # JSON and msgpack carry the text as it was given.
        listed = self.queue("dcinside", "?status=done&after=%d" % (requests[0]["id"] - 1))
        self.assertEqual([r["answer"]["reason"] for r in listed["requests"]], reasons)

    def test_queue_pages(self):
        filed = [self.file("nec", fresh(FALSE_FACT, platform="zum")) for _ in range(3)]
        ids = [report["requests"][0]["id"] for report in filed]
        page = self.queue("nec", "?partner=zum&limit=2")
        self.assertEqual(([r["id"] for r in page["requests"]], page["next"]), (ids[:2], ids[1]))
        page = self.queue("nec", "?partner=zum&limit=2&after=%d" % page["next"])
        self.assertEqual(([r["id"] for r in page["requests"]], page["next"]), (ids[2:], None))
        listed = self.call("nec", "GET", "/v1/reports?platform=zum&limit=2").document
        self.assertEqual([r["id"] for r in listed["reports"]], [r["id"] for r in filed[:2]])
        self.assertEqual(listed["next"], filed[1]["id"])
        self.assertEqual(set(listed["reports"][0]), {
            "id", "status", "filed_at", "filed_by", "url", "platform", "election", "category",
            "date", "verdict", "article", "ruleset", "decision", "updated_at", "request_count",
            "posting", "reporter_count"})

    def test_csv_export(self):
        url = 'https://cafe.daum.net/x/1?q=a,b&t="c"'
        filed = [self.file("nec", dict(FALSE_FACT, platform="daum", url=url)),
                 self.file("kakao", dict(SLANDER, platform="daum", category="slander",
                                         url="https://story.kakao.com/x/9/csv",
                                         facts={"target": "candidate", "true_facts": True,
                                                "public_interest": True}))]
        listed = self.call("nec", "GET", "/v1/reports?platform=daum").document["reports"]
        self.assertEqual([r["id"] for r in listed], [r["id"] for r in filed])
        rows = [
            '%d,%s,nec,open,"https://cafe.daum.net/x/1?q=a,b&t=""c""",daum,na22,false_fact,'
            '2024-03-01,prohibited,250(2),%s,%d,2,%s\r\n'
            % (filed[0]["id"], filed[0]["filed_at"], filed[0]["ruleset"], filed[0]["decision"],
               filed[0]["updated_at"]),
            '%d,%s,kakao,no_action,https://story.kakao.com/x/9/csv,daum,na22,slander,2024-03-05,'
            'allowed,251,%s,%d,0,%s\r\n'
            % (filed[1]["id"], filed[1]["filed_at"], filed[1]["ruleset"], filed[1]["decision"],
               filed[1]["updated_at"])]
        header = ("id,filed_at,filed_by,status,url,platform,election,category,date,verdict,"
                  "article,ruleset,decision,request_count,updated_at\r\n")
        by_query = self.call("nec", "GET", "/v1/reports?platform=daum&format=csv")
        by_accept = self.call("nec", "GET", "/v1/reports?platform=daum", accept="text/csv")
        for response in (by_query, by_accept):
            self.assertEqual(response.status, 200, response.raw)
            self.assertEqual(response.content_type, "text/csv; charset=utf-8; header=present")
            self.assertEqual(response.raw.decode("utf-8"), header + "".join(rows))
            self.assertNotIn("epcs-next", response.headers)
        first = self.call("nec", "GET", "/v1/reports?platform=daum&format=csv&limit=1")
        self.assertEqual(first.raw.decode("utf-8"), header + rows[0])
        self.assertIn("epcs-next: %d\r\n" % filed[0]["id"], first.headers)
        rest = self.call("nec", "GET", "/v1/reports?platform=daum&format=csv&after=%d"
                         % filed[0]["id"])
        self.assertEqual(rest.raw.decode("utf-8"), header + rows[1])
        only_open = self.call("nec", "GET", "/v1/reports?platform=daum&status=open&"
                              "category=false_fact&election=na22&format=csv")
        self.assertEqual(only_open.raw.decode("utf-8"), header + rows[0])
        none = self.call("nec", "GET", "/v1/reports?platform=daum&from=2100-01-01&format=csv")
        self.assertEqual(none.raw.decode("utf-8"), header)

    def test_bad_reports(self):
        def variant(**changes):
            document = dict(FALSE_FACT, facts=dict(FALSE_FACT["facts"]))
            for name, value in changes.items():
                if name.startswith("facts__"):
                    document["facts"][name[7:]] = value
                elif value is None:
                    document.pop(name)
                else:
                    document[name] = value
            return document

        cases = [
            (["na22"], 400, "bad_request", None,
             "the report must be a map with url, platform, election, category and facts"),
            (variant(url=None), 400, "bad_request", "url", "url is required"),
            (variant(category=None), 400, "bad_request", "category", "category is required"),
            (variant(url=5), 400, "bad_request", "url", "url must be a string"),
            (variant(platform=["naver"]), 400, "bad_request", "platform",
             "platform must be a string"),
            (variant(facts="intent"), 400, "bad_request", "facts", "facts must be a map"),
            (variant(colour="red"), 400, "bad_request", None,
             "unknown field 'colour': url, platform, election, category, date, facts"),
            (variant(facts__kind="post"), 400, "bad_request", "facts.kind",
             "facts.kind is not a fact to give: a report is about a posting"),
            (variant(facts__category="slander"), 400, "bad_request", "facts.category",
             "facts.category is not a fact to give: category goes at the top of the report"),
            (variant(url="ftp://files.example/x"), 422, "invalid_fact", "url",
             "url must be the posting's http:// or https:// address, without spaces, at most "
             "2048 bytes"),
            (variant(url="https://blog.example/a b"), 422, "invalid_fact", "url", None),
            (variant(url="https://"), 422, "invalid_fact", "url", None),
            (variant(url="https://x.example/" + "a" * 2100), 422, "invalid_fact", "url", None),
            (variant(platform="Naver Blog"), 422, "invalid_fact", "platform",
             "platform must be the platform's partner id (1-63 of a-z 0-9 _ - .), as its API "
             "key names it"),
            (variant(platform="navr"), 404, "unknown_partner", "platform",
             "platform 'navr' is no partner of epcs: no API key belongs to it, so no one would "
             "read its deletion requests"),
            (variant(election="na99"), 404, "unknown_election", "election",
             "no election 'na99'; GET /v1/elections lists them"),
            (variant(category="rumour"), 422, "invalid_fact", "category",
             "category: unknown value 'rumour'"),
            (variant(category=7), 400, "bad_request", "category", "category must be a string"),
            (variant(facts__intent="maybe"), 422, "invalid_fact", "facts.intent",
             "facts.intent: unknown value 'maybe'"),
            (variant(facts__true_facts="yes"), 422, "invalid_fact", "facts.true_facts",
             "facts.true_facts must be a boolean"),
            (variant(facts__channel="sns"), 422, "invalid_fact", "facts.channel",
             "unknown fact 'facts.channel'; GET /v1/areas lists those of false_information"),
            (variant(date="2024-02-30"), 422, "invalid_fact", "date",
             "date must be a date YYYY-MM-DD between 1900 and 2199"),
            (variant(date=20240301), 422, "invalid_fact", "date",
             "date must be a date YYYY-MM-DD between 1900 and 2199"),
        ]
        before = self.call("nec", "GET", "/v1/reports?limit=1000").document["reports"]
        for document, status, code, field, message in cases:
            for kind in (MSGPACK, JSON):
                with self.subTest(document=document, encoding=kind):
                    self.assertError(self.call("nec", "POST", "/v1/reports", document, kind),
                                     status, code, field, message)
        good = encode(FALSE_FACT, MSGPACK)
        token = bearer(self.tokens["nec"])
        for body, kind, status, message in [
                (b"", MSGPACK, 400, "the request body is empty"),
                (good[:-4], MSGPACK, 400, None), (good + b"\xc0", MSGPACK, 400, None),
                (b"\x91" * 60000 + b"\xc0", MSGPACK, 400,
                 "malformed msgpack: nesting deeper than 32 levels"),
                (b'{"url": "https://x.example/", "url": "https://y.example/"}', JSON, 400, None),
                (b"url=x", "application/x-www-form-urlencoded", 415, None)]:
            response = request(self.server, "POST", "/v1/reports", body, kind, extra=token)
            self.assertEqual(response.status, status, response.raw)
            if message:
                self.assertEqual(response.data["message"], message)
        self.assertError(self.call("nec", "DELETE", "/v1/reports"), 405, "method_not_allowed")
        self.assertError(self.call("nec", "POST", "/v1/reports/1", FALSE_FACT), 405,
                         "method_not_allowed")
        # Nothing of it was stored, and the server is still well.
        self.assertEqual(self.call("nec", "GET", "/v1/reports?limit=1000").document["reports"],
                         before)
        self.assertEqual(request(self.server, "GET", "/healthz").status, 200)

    def test_bad_answers_and_queries(self):
        filed = self.file("nec", fresh(FALSE_FACT))
        request_id = filed["requests"][0]["id"]
        cases = [
            (["done"], 400, "bad_request", None, "the answer must be a map {status, reason?, data?}"),
            ({}, 400, "bad_request", "status",
             "status is required: done, objection or data_submitted"),
            ({"status": 1}, 400, "bad_request", "status", "status must be a string"),
            ({"status": "deleted"}, 422, "invalid_fact", "status",
             "status: unknown value 'deleted' (done, objection or data_submitted)"),
            ({"status": "data_submitted"}, 400, "bad_request", "data",
             "data_submitted needs the data"),
            ({"status": "done", "data": 5}, 400, "bad_request", "data",
             "data must be a map or a string"),
            ({"status": "data_submitted", "data": ""}, 422, "invalid_fact", "data",
             "data must not be empty"),
            ({"status": "done", "reason": ""}, 422, "invalid_fact", "reason",
             "reason must be text of 1 to 2000 bytes"),
            ({"status": "done", "reason": "x" * 2001}, 422, "invalid_fact", "reason",
             "reason must be text of 1 to 2000 bytes"),
            ({"status": "objection", "reason": 5}, 400, "bad_request", "reason",
             "reason must be a string"),
            ({"status": "done", "note": "x"}, 400, "bad_request", None,
             "unknown field 'note': status, reason, data"),
        ]
        for body, status, code, field, message in cases:
            for kind in (MSGPACK, JSON):
                with self.subTest(body=body, encoding=kind):
                    self.assertError(self.answer("naver", request_id, body, kind), status, code,
                                     field, message)
        for path, method, status, code, field in [
                ("/v1/requests/abc/response", "POST", 400, "bad_request", "id"),
                ("/v1/requests/99999999999999999999999/response", "POST", 400, "bad_request",
                 "id"),
                ("/v1/requests/%d" % request_id, "POST", 405, "method_not_allowed", None),
                ("/v1/requests/%d/answer" % request_id, "POST", 404, "not_found", None),
                ("/v1/requests/abc", "GET", 400, "bad_request", "id"),
                ("/v1/requests/99999999", "GET", 404, "unknown_request", "id"),
                ("/v1/requests/%d/response" % request_id, "GET", 405, "method_not_allowed", None),
                ("/v1/reports/abc", "GET", 400, "bad_request", "id"),
                ("/v1/reports/99999999", "GET", 404, "unknown_report", "id"),
                ("/v1/reports/1/requests", "GET", 404, "not_found", None),
                ("/v1/partners/me/requests", "POST", 405, "method_not_allowed", None)]:
            with self.subTest(path=path):
                self.assertError(self.call("nec", method, path, {"status": "done"}
                                           if method == "POST" else None), status, code, field)
        for path, field, message in [
                ("/v1/partners/me/requests?status=lost", "status",
                 "status must be open, overdue, done, objected, data_submitted, escalated, "
                 "pending or all"),
                ("/v1/partners/me/requests?limit=0", "limit",
                 "limit must be a whole number from 1 to 1000"),
                ("/v1/partners/me/requests?after=-1", "after",
                 "after must be an id (the previous page's next)"),
                ("/v1/partners/me/requests?colour=red", "colour",
                 "unknown filter 'colour': status, after, limit, partner, format"),
                ("/v1/partners/me/requests?status=open&status=done", "status",
                 "status is given twice"),
                ("/v1/reports?status=lost", "status",
                 "status must be open, held, closed, no_action, needs_facts or dismissed"),
                ("/v1/reports?from=yesterday", "from",
                 "from must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"),
                ("/v1/reports?from=2024-01-02&to=2024-01-01", "to", "to must come after from"),
                ("/v1/reports?limit=5000", "limit",
                 "limit must be a whole number from 1 to 1000"),
                ("/v1/reports?limit=200000&format=csv", "limit",
                 "limit must be a whole number from 1 to 100000"),
                ("/v1/reports?format=xml", "format", "format must be csv (or ask with Accept)"),
                ("/v1/reports?colour=red", "colour",
                 "unknown filter 'colour': status, platform, election, category, filed_by, "
                 "reporter, from, to, after, limit, format")]:
            with self.subTest(path=path):
                self.assertError(self.call("nec", "GET", path), 400, "bad_request", field,
                                 message)
        # None of it changed the request.
        self.assertEqual(self.report(filed["id"])["requests"][0]["status"], "open")


class EscalationTest(CaseTest):
    """Rules amended for a drill: deletion requests due in 3 s, objections within 1 s; the
    sweep looks every 100 ms."""

    @classmethod
    def setUpClass(cls):
        cls.make_keys()
        cls.rules = fast_rules(os.path.join(cls.scratch, "rules"))
        cls.flags = ("--keys", cls.keys, "--case-sweep", "100", "--no-watch-rules")
        cls.server = Server(*cls.flags, rules=cls.rules, auth=True)

    def wait_statuses(self, report_id, statuses, server=None, timeout=20):
        def reached():
            report = self.report(report_id, server)
            return [r["status"] for r in report["requests"]] == statuses
        wait_for(reached, "report %d never reached %s: %s" % (
            report_id, statuses, [r["status"] for r in self.report(report_id, server)
                                  ["requests"]]), timeout)
        return self.report(report_id, server)

    def test_overdue_second_request_then_escalation(self):
        filed = self.file("nec", fresh(FALSE_FACT))
        report_id = filed["id"]
        first, referral = filed["requests"]
        self.assertEqual(first["action"], deletion_action(3 / 3600, 1 / 86400))
        self.assertEqual(first["due"], shifted(first["created"], 3))
        self.assertEqual(first["objection_until"], shifted(first["created"], 1))
        report = self.wait_statuses(report_id, ["escalated", "open", "escalated", "open"])
        _, _, second, escalation = report["requests"]
        # The second request goes to the same platform once the first is overdue.
        self.assertEqual({k: second[k] for k in ("kind", "to", "article", "attempt", "follows",
                                                  "action", "answer")},
                         {"kind": "deletion_request", "to": "naver", "article": "82-4(3)",
                          "attempt": 2, "follows": first["id"],
                          "action": deletion_action(3 / 3600, 1 / 86400), "answer": None})
        self.assertGreaterEqual(instant(second["created"]), instant(first["due"]))
        self.assertLess(instant(second["created"]) - instant(first["due"]),
                        datetime.timedelta(seconds=3))
        self.assertEqual(second["due"], shifted(second["created"], 3))
        # Both ignored: a referral to the prosecutors under Art. 256(3)1(e).
        self.assertEqual({k: escalation[k] for k in ("kind", "to", "article", "attempt",
                                                      "follows", "due", "objection_until",
                                                      "action", "status")},
                         {"kind": "referral", "to": "prosecutors", "article": "256(3)1(e)",
                          "attempt": 1, "follows": second["id"], "due": None,
                          "objection_until": None, "action": ESCALATION, "status": "open"})
        self.assertEqual(report["status"], "open")
        self.assertEqual(self.events(report["history"]), [
            ("report_filed", None, "open", "nec"),
            ("request_sent", first["id"], "open", "epcs"),
            ("request_sent", referral["id"], "open", "epcs"),
            ("request_overdue", first["id"], "overdue", "epcs"),
            ("request_sent", second["id"], "open", "epcs"),
            ("request_overdue", second["id"], "overdue", "epcs"),
            ("request_sent", escalation["id"], "open", "epcs"),
            ("request_escalated", first["id"], "escalated", "epcs"),
            ("request_escalated", second["id"], "escalated", "epcs")])
        history = report["history"]
        self.assertEqual(history[3]["detail"], {
            "report": report_id, "due": first["due"],
            "overdue": {"article": "261(6)4", "penalty": PENALTY_OVERDUE}})
        self.assertEqual(history[4]["detail"], {
            "report": report_id, "kind": "deletion_request", "to": "naver", "article": "82-4(3)",
            "attempt": 2, "due": second["due"], "follows": first["id"]})
        self.assertEqual(history[7]["detail"], {
            "report": report_id, "referral": escalation["id"], "to": "prosecutors",
            "article": "256(3)1(e)"})
        # The platform sees both ignored requests as escalated, and can no longer answer them.
        after = "after=%d" % (first["id"] - 1)
        self.assertEqual([r["id"] for r in self.queue("naver", "?status=escalated&" + after)
                          ["requests"] if r["report"] == report_id], [first["id"], second["id"]])
        self.assertEqual([r for r in self.queue("naver", "?" + after)["requests"]
                          if r["report"] == report_id], [])
        self.assertError(self.answer("naver", second["id"], {"status": "done"}), 409,
                         "request_closed", "id",
                         "request %d is escalated already; it takes no further answer"
                         % second["id"])
        self.assertEqual([r["id"] for r in self.queue("prosecutors", "?" + after)["requests"]
                          if r["report"] == report_id], [referral["id"], escalation["id"]])
        steps = self.logged([step["decision"] for step in history])
        self.assertEqual([(s["event"], s["partner"], s["subject"]) for s in steps[3:]], [
            ("request_overdue", "naver", first["id"]), ("request_sent", "naver", second["id"]),
            ("request_overdue", "naver", second["id"]),
            ("request_sent", "prosecutors", escalation["id"]),
            ("request_escalated", "naver", first["id"]),
            ("request_escalated", "naver", second["id"])])

    def test_objection_only_within_its_period(self):
        in_time = self.file("nec", fresh(FALSE_FACT))["requests"][0]
        objected = self.answer("naver", in_time["id"], {"status": "objection",
                                                        "reason": "the facts are true"})
        self.assertEqual(objected.status, 200, objected.raw)
        self.assertEqual(objected.document["status"], "objected")
        late, referral = self.file("nec", fresh(FALSE_FACT))["requests"]
        time.sleep(1.2)
        self.assertError(self.answer("naver", late["id"], {"status": "objection",
                                                           "reason": "the facts are true"}),
                         422, "objection_too_late", "status",
                         "the objection period of request %d ended at %s"
                         % (late["id"], late["objection_until"]))
        # The referral sets no objection period at all.
        self.assertError(self.answer("prosecutors", referral["id"], {"status": "objection",
                                                                     "reason": "no"}),
                         422, "invalid_fact", "status",
                         "request %d admits no objection: its action sets no objection period"
                         % referral["id"])
        # Compliance is still welcome, late or not.
        done = self.answer("naver", late["id"], {"status": "done"})
        self.assertEqual(done.status, 200, done.raw)

    def test_late_answer_closes_the_second_request_too(self):
        filed = self.file("nec", fresh(FALSE_FACT))
        report = self.wait_statuses(filed["id"], ["overdue", "open", "open"])
        first, _, second = report["requests"]
        done = self.answer("naver", first["id"], {"status": "done"}, MSGPACK)
        self.assertEqual(done.status, 200, done.raw)
        report = self.report(filed["id"])
        self.assertEqual([r["status"] for r in report["requests"]], ["done", "open", "done"])
        self.assertEqual(report["requests"][2]["answer"], {
            "status": "done", "at": done.document["answer"]["at"], "via": first["id"]})
        self.assertEqual(report["history"][-2]["detail"], {
            "report": filed["id"], "status": "done", "late": True})
        self.assertEqual(report["history"][-1]["detail"], {
            "report": filed["id"], "status": "done", "via": first["id"]})
        # Nothing escalates afterwards.
        time.sleep(3.5)
        self.assertEqual([r["status"] for r in self.report(filed["id"])["requests"]],
                         ["done", "open", "done"])

    def test_restart_in_the_middle_loses_nothing(self):
        """SIGKILL right after answers, down past a due time, SIGTERM mid-flow: every answered
        write survives and the sweep picks up where it was."""
        data = os.path.join(self.scratch, "restart")
        # In sync mode the 201 waits for the report's decision to be on disk as well.
        server = Server(*self.flags, "--data", data, "--audit", "sync", rules=self.rules,
                        auth=True)
        try:
            filed = self.file("nec", fresh(FALSE_FACT), server=server)
            first, referral = filed["requests"]
            submitted = self.answer("prosecutors", referral["id"],
                                    {"status": "data_submitted", "data": "sent by courier"},
                                    server=server)
            self.assertEqual(submitted.status, 200, submitted.raw)
            before = self.report(filed["id"], server)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(30)
        finally:
            server.cleanup()
        # Down for longer than the deletion request had.
        time.sleep(3.5)
        database = sqlite3.connect(os.path.join(data, "cases.db"))
        stored = database.execute("SELECT id, status FROM requests WHERE report = ? ORDER BY id",
                                  (filed["id"],)).fetchall()
        database.close()
        self.assertEqual(stored, [(first["id"], "open"), (referral["id"], "data_submitted")])

        server = Server(*self.flags, "--data", data, rules=self.rules, auth=True)
        try:
            # At start the sweep finds the request that fell due while epcsd was down.
            report = self.wait_statuses(filed["id"], ["overdue", "data_submitted", "open"],
                                        server, timeout=10)
            self.assertEqual(report["requests"][1], before["requests"][1])
            self.assertEqual(report["history"][:len(before["history"])], before["history"])
            self.assertEqual(report["requests"][1]["answer"]["data"], "sent by courier")
            decision = self.call("nec", "GET", "/v1/decisions/%d" % filed["decision"],
                                 server=server)
            self.assertEqual(decision.status, 200, decision.raw)
            self.assertEqual(decision.document["answer"], filed["answer"])
            # Under --audit sync the answers waited for their steps' events too: the ones
            # written before the SIGKILL are all in the decision log.
            steps = self.logged([step["decision"] for step in before["history"]], server)
            self.assertEqual([s["event"] for s in steps],
                             [step["event"] for step in before["history"]])
            self.assertEqual(server.stop(), 0)
        finally:
            server.cleanup()
        middle = report

        server = Server(*self.flags, "--data", data, rules=self.rules, auth=True)
        try:
            report = self.wait_statuses(filed["id"], ["escalated", "data_submitted", "escalated",
                                                      "open"], server)
            self.assertEqual(report["history"][:len(middle["history"])], middle["history"])
            self.assertEqual([step["event"] for step in report["history"]], [
                "report_filed", "request_sent", "request_sent", "request_answered",
                "request_overdue", "request_sent", "request_overdue", "request_sent",
                "request_escalated", "request_escalated"])
            # The steps epcsd took after each restart are in the decision log too.
            steps = self.logged([step["decision"] for step in report["history"][4:]], server)
            self.assertEqual([s["event"] for s in steps], [
                "request_overdue", "request_sent", "request_overdue", "request_sent",
                "request_escalated", "request_escalated"])
            self.assertEqual(server.stop(), 0)
        finally:
            server.cleanup()


if __name__ == "__main__":
    test_api.run_suite()
