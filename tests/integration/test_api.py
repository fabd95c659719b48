#!/usr/bin/python3
"""Integration tests: the real epcsd on random loopback ports, spoken to over real HTTP/2.

curl (--http2-prior-knowledge for h2c, ALPN for TLS) and h2load are the clients; bodies go
both as msgpack and as JSON. Run through ctest, or directly:
    tests/integration/test_api.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules --cases ../shared/cases/public.tsv
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import icalendar
import msgpack

ARGS = None
MSGPACK = "application/msgpack"
JSON = "application/json"
AREAS = ["advertising", "deepfake", "false_information", "legislative_report",
         "publication_ceremony", "resignation"]
# What the false_information area's prohibited verdicts ask the commission to send.
DELETION_REQUEST = {
    "kind": "deletion_request", "to": "platform", "article": "82-4(3)", "due_hours": 24,
    "objection_days": 3,
    "overdue": {"article": "261(6)4",
                "penalty": "Art. 261(6)4: administrative fine of up to KRW 3 million"},
    "escalation": {"after": 2, "kind": "referral", "form": "accusation", "to": "prosecutors",
                   "article": "256(3)1(e)",
                   "penalty": "Art. 256(3)1(e): imprisonment of up to 2 years or a fine of up "
                              "to KRW 4 million"}}
PENALTY_250_1 = "Art. 250(1): imprisonment of up to 5 years or a fine of up to KRW 30 million"
PENALTY_250_2 = ("Art. 250(2): imprisonment of up to 7 years or a fine of KRW 5 million to "
                 "30 million")
PENALTY_251 = "Art. 251: imprisonment of up to 3 years or a fine of up to KRW 5 million"
PENALTY_255_5 = ("Art. 255(5): imprisonment of up to 7 years or a fine of KRW 10 million to "
                 "50 million")


def referral(article, penalty):
    """A referral of a posting whose poster is not known: an investigation request."""
    return {"kind": "referral", "form": "investigation_request", "to": "police",
            "article": article, "due_hours": 24, "penalty": penalty}


class Server:
    """One epcsd process on 127.0.0.1, port chosen by the kernel and read from its log."""

    def __init__(self, *extra, rules=None, tls=None, expect_start=True, plugins=None,
                 auth=False):
        self.data = tempfile.mkdtemp(prefix="epcs-test-data-")
        self.log_path = os.path.join(self.data, "epcsd.log")
        command = [ARGS.epcsd, "--listen", "127.0.0.1:0", "--threads", "2",
                   "--plugins", plugins or ARGS.plugins, "--rules", rules or ARGS.rules,
                   "--data", os.path.join(self.data, "var"), "--shutdown-timeout", "20"]
        if tls:
            command += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        if not auth:
            # Development mode: these tests are about everything but access control.
            command.append("--no-auth")
        command += list(extra)
        self.log = open(self.log_path, "w+")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = None
        self.scheme = "https" if tls else "http"
        if expect_start:
            self._wait_ready()

    def _wait_ready(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            text = self.text()
            match = re.search(r"listening on https?://127\.0\.0\.1:(\d+)", text)
            if match and '"msg":"ready:' in text:
                self.port = int(match.group(1))
                return
            if self.process.poll() is not None:
                raise AssertionError("epcsd exited during start-up:\n" + text)
            time.sleep(0.05)
        raise AssertionError("epcsd did not become ready:\n" + self.text())

    def text(self):
        with open(self.log_path) as log:
            return log.read()

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.port, path)

    def stop(self):
        """SIGTERM, then the exit status; the process must be gone within 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("epcsd did not stop on SIGTERM:\n" + self.text())
        self.log.close()
        return status

    def cleanup(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.data, ignore_errors=True)


class Response:
    def __init__(self, status, version, content_type, body, headers):
        self.status = status
        self.version = version
        self.content_type = content_type
        self.raw = body
        self.headers = headers

    @property
    def document(self):
        """The body decoded as is."""
        if self.content_type.startswith(MSGPACK):
            return msgpack.unpackb(self.raw, raw=False)
        return json.loads(self.raw.decode("utf-8"))

    @property
    def data(self):
        """The body decoded, less the decision log's ids (see decisions), which differ per run."""
        document = self.document
        for verdict in verdicts_of(document):
            verdict.pop("decision", None)
        return document

    @property
    def decisions(self):
        """The decision ids of the verdicts in the body, in order."""
        return [v["decision"] for v in verdicts_of(self.document) if "decision" in v]


def verdicts_of(document):
    """The verdicts of a /v1/check or /v1/check/batch answer (not those nested in results)."""
    if not isinstance(document, dict):
        return []
    if "verdict" in document:
        return [document]
    if isinstance(document.get("results"), list):
        return [item for item in document["results"] if isinstance(item, dict)
                and "verdict" in item]
    return []


def request(server, method, path, body=None, content_type=None, accept=None, http="2",
            extra=()):
    """Sends one request with curl and returns the Response; fails on any transport error."""
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "body")
        head = os.path.join(scratch, "headers")
        command = ["curl", "-sS", "--max-time", "60", "-X", method, "-o", out, "-D", head,
                   "-w", "%{http_code} %{http_version} %{content_type}"]
        command.append({"2": "--http2-prior-knowledge", "1.1": "--http1.1"}[http]
                       if server.scheme == "http" else "--http2")
        if server.scheme == "https":
            command.append("-k")
        if content_type:
            command += ["-H", "content-type: " + content_type]
        if accept:
            command += ["-H", "accept: " + accept]
        if body is not None:
            path_body = os.path.join(scratch, "request")
            with open(path_body, "wb") as f:
                f.write(body)
            command += ["--data-binary", "@" + path_body]
        command += list(extra)
        command.append(server.url(path))
        result = subprocess.run(command, capture_output=True)
        if result.returncode != 0:
            raise AssertionError("curl failed (%d): %s" % (result.returncode,
                                                          result.stderr.decode()))
        status, version, ctype = (result.stdout.decode().split(" ", 2) + [""])[:3]
        with open(out, "rb") as f:
            data = f.read()
        with open(head, "rb") as f:
            headers = f.read().decode("latin-1").lower()
        return Response(int(status), version, ctype, data, headers)


def encode(document, kind):
    if kind == MSGPACK:
        return msgpack.packb(document, use_bin_type=True)
    return json.dumps(document).encode()


def check(server, document, kind=MSGPACK, accept=None):
    return request(server, "POST", "/v1/check", encode(document, kind), kind, accept)


def parse_value(text):
    return {"true": True, "false": False}.get(text, text)


def load_cases(path):
    """Rows of shared/cases/public.tsv as dicts with a ready request document."""
    cases = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cid, election, area, date, actor, activity, verdict, article, note = \
                line.rstrip("\n").split("\t")
            facts = {}
            for pair in activity.split(";"):
                key, value = pair.strip().split("=", 1)
                facts[key] = parse_value(value)
            cases.append({
                "id": cid, "area": area, "verdict": verdict, "article": article, "note": note,
                "document": {"election": election, "area": area, "date": date,
                             "actor": {"kind": actor}, "activity": facts},
            })
    return cases


class EpcsTest(unittest.TestCase):
    def assertError(self, response, status, code, field=None, message=None):
        self.assertEqual(response.status, status, response.raw)
        data = response.data
        self.assertEqual(data["error"], code)
        self.assertIsInstance(data["message"], str)
        self.assertTrue(data["message"])
        if field is None:
            self.assertNotIn("field", data)
        else:
            self.assertEqual(data.get("field"), field)
        if message is not None:
            self.assertEqual(data["message"], message)


class ServerTest(EpcsTest):
    """Tests sharing one server on the bundled defaults, which must stop cleanly."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server()

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        assert status == 0, "epcsd exited with %d" % status


class ApiTest(ServerTest):
    """Every endpoint of the running server, in both encodings."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        health = request(cls.server, "GET", "/healthz").data
        cls.ruleset = health["ruleset"]

    def test_healthz(self):
        for accept in (None, MSGPACK):
            response = request(self.server, "GET", "/healthz", accept=accept)
            self.assertEqual(response.status, 200)
            self.assertEqual(response.version, "2")
            self.assertEqual(response.content_type, accept or JSON)
            self.assertEqual(response.data, {"status": "ok", "ruleset": self.ruleset,
                                             "areas": len(AREAS)})
        self.assertRegex(self.ruleset, r"^rs-[0-9a-f]{16}$")

    def test_http1_also_served(self):
        response = request(self.server, "GET", "/healthz", http="1.1")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.version, "1.1")
        self.assertEqual(response.data["status"], "ok")

    def test_areas(self):
        data = request(self.server, "GET", "/v1/areas", accept=MSGPACK).data
        self.assertEqual(data["ruleset"], self.ruleset)
        self.assertEqual([a["name"] for a in data["areas"]], AREAS)
        deepfake = data["areas"][AREAS.index("deepfake")]
        self.assertEqual(deepfake["article"], "82-8")
        self.assertEqual(deepfake["rule_file"], "deepfake.lua")
        self.assertEqual(deepfake["activities"], ["produce", "edit", "distribute", "screen", "post"])
        self.assertEqual(deepfake["versions"], [{"id": "deepfake/82-8/2024-01-29",
                                                 "effective_from": "2024-01-29",
                                                 "promulgated": "2023-12-28"}])
        self.assertIn({"path": "activity.purpose", "type": "enum",
                       "values": ["campaign", "primary", "get_out_the_vote",
                                  "legislative_report", "satire", "other"]},
                      deepfake["facts"])

    def test_rules(self):
        data = request(self.server, "GET", "/v1/rules", accept=MSGPACK).data
        self.assertEqual(data["ruleset"], self.ruleset)
        self.assertNotIn("label", data)
        self.assertRegex(data["loaded_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        names = [f["name"] for f in data["files"]]
        self.assertEqual(names, ["elections.lua"] + [a + ".lua" for a in AREAS])
        for item in data["files"]:
            with open(os.path.join(ARGS.rules, item["name"]), "rb") as f:
                content = f.read()
            self.assertEqual(item["sha256"], hashlib.sha256(content).hexdigest())
            self.assertEqual(item["bytes"], len(content))
        self.assertEqual(data["files"][0]["area"], None)
        versions = {a["name"]: a["versions"] for a in data["areas"]}
        self.assertEqual(versions["deepfake"], [{"id": "deepfake/82-8/2024-01-29",
                                                 "effective_from": "2024-01-29",
                                                 "promulgated": "2023-12-28"}])

    def test_elections(self):
        data = request(self.server, "GET", "/v1/elections").data
        days = {e["id"]: e["day"] for e in data["elections"]}
        self.assertEqual(days, {
            "byel2021_busan": "2021-04-07", "byel2021_seoul": "2021-04-07",
            "pres20": "2022-03-09", "local8": "2022-06-01", "na22": "2024-04-10",
            "ganghwa2024": "2024-10-16", "pres21": "2025-06-03", "local9": "2026-06-03",
            "na23": "2028-04-12"})
        causes = {e["id"]: e.get("cause_confirmed") for e in data["elections"]
                  if e["kind"] != "general"}
        self.assertEqual(causes, {"byel2021_busan": "2020-04-23", "byel2021_seoul": "2020-07-10",
                                  "ganghwa2024": "2024-03-09", "pres21": "2025-04-04"})
        pres21 = request(self.server, "GET", "/v1/elections/pres21", accept=MSGPACK).data
        self.assertEqual(pres21["election"], {
            "id": "pres21", "name": "21st presidential election (vacancy)",
            "name_ko": "제21대 대통령선거(궐위선거)", "day": "2025-06-03", "kind": "vacancy",
            "office": "president", "cause_confirmed": "2025-04-04"})
        self.assertError(request(self.server, "GET", "/v1/elections/na99"), 404,
                         "unknown_election", "election")

    def test_calendar(self):
        data = request(self.server, "GET", "/v1/elections/na22/calendar").data
        self.assertEqual({item["area"] for item in data["items"]}, set(AREAS))
        self.assertEqual([i for i in data["items"] if i["area"] == "deepfake"], [{
            "area": "deepfake", "kind": "window", "article": "82-8",
            "rule": "deepfake/82-8/2024-01-29",
            "title": "Deepfake videos for campaigning prohibited (D-90 to election day)",
            "title_ko": "딥페이크 영상 등을 이용한 선거운동 금지 (선거일 전 90일부터 선거일까지)",
            "from": "2024-01-11", "to": "2024-04-10"}])
        vacancy = request(self.server, "GET", "/v1/elections/pres21/calendar").data
        deepfake = [i for i in vacancy["items"] if i["area"] == "deepfake"]
        self.assertEqual([(i["from"], i["to"]) for i in deepfake], [("2025-04-04", "2025-06-03")])

    def test_false_information_calendar(self):
        """Its own last day for Arts. 250 and 251, and the deepfake area's window while
        Art. 82-8 is in force on election day (not for the 2022 presidential election)."""
        rule = "false_information/82-4/2004-03-12"
        last_day = {
            "area": "false_information", "kind": "deadline", "article": "82-4(2)", "rule": rule,
            "title": "Last day online false facts or slander about candidates can aim at this "
                     "election (Arts. 250, 251)",
            "title_ko": "정보통신망을 이용한 후보자 관련 허위사실 공표·비방이 이 선거를 목적으로 "
                        "할 수 있는 마지막 날 (제250조, 제251조)"}
        items = request(self.server, "GET", "/v1/elections/na22/calendar").data["items"]
        self.assertEqual([i for i in items if i["area"] == "false_information"], [
            dict(last_day, day="2024-04-10"),
            {"area": "false_information", "kind": "window", "article": "82-8", "rule": rule,
             "title": "Reported deepfakes: Deepfake videos for campaigning prohibited (D-90 to "
                      "election day)",
             "title_ko": "딥페이크 신고: 딥페이크 영상 등을 이용한 선거운동 금지 (선거일 전 "
                         "90일부터 선거일까지)",
             "from": "2024-01-11", "to": "2024-04-10"}])
        items = request(self.server, "GET", "/v1/elections/pres20/calendar").data["items"]
        self.assertEqual([i for i in items if i["area"] == "false_information"],
                         [dict(last_day, day="2022-03-09")])
        vacancy = request(self.server, "GET", "/v1/elections/pres21/calendar").data["items"]
        self.assertEqual([(i["kind"], i.get("from"), i.get("to"), i.get("day"))
                          for i in vacancy if i["area"] == "false_information"],
                         [("deadline", None, None, "2025-06-03"),
                          ("window", "2025-04-04", "2025-06-03", None)])

    def test_calendar_as_icalendar(self):
        """Accept: text/calendar gives RFC 5545, checked by an independent parser."""
        response = request(self.server, "GET", "/v1/elections/pres21/calendar",
                           accept="text/calendar")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.content_type, "text/calendar; charset=utf-8")
        raw = response.raw
        lines = raw.split(b"\r\n")
        self.assertEqual(lines[-1], b"")
        self.assertNotIn(b"\n", b"".join(lines))
        self.assertTrue(all(len(line) <= 75 for line in lines), "unfolded line over 75 octets")
        raw.decode("utf-8")
        calendar = icalendar.Calendar.from_ical(raw)
        self.assertEqual(str(calendar["VERSION"]), "2.0")
        self.assertIn("epcs", str(calendar["PRODID"]))
        events = {str(e["UID"]): e for e in calendar.walk("VEVENT")}
        day = events["pres21/election-day@epcs"]
        self.assertEqual((str(day["DTSTART"].dt), str(day["DTEND"].dt)),
                         ("2025-06-03", "2025-06-04"))
        window = events["pres21/deepfake/82-8/2024-01-29/window-20250404@epcs"]
        # DTEND is exclusive: the window's last day is election day.
        self.assertEqual((str(window["DTSTART"].dt), str(window["DTEND"].dt)),
                         ("2025-04-04", "2025-06-04"))
        self.assertEqual(str(window["SUMMARY"]), "Art. 82-8: Deepfake videos for campaigning "
                                                 "prohibited (D-90 to election day)")
        self.assertIn("딥페이크", str(window["DESCRIPTION"]))
        self.assertIn("Area deepfake, rule deepfake/82-8/2024-01-29, ruleset " + self.ruleset,
                      str(window["DESCRIPTION"]))

    def test_documented_examples(self):
        """Every example of docs/api.md, replayed in both encodings; every area has one."""
        docs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                            "api.md")
        with open(docs, encoding="utf-8") as f:
            text = f.read()
        sections = re.split(r"<!-- example: (\w+) -->", text)[1:]
        examples = dict(zip(sections[0::2], sections[1::2]))
        areas = [a["name"] for a in request(self.server, "GET", "/v1/areas").data["areas"]]
        self.assertEqual(sorted(examples), sorted(areas))
        for name, section in examples.items():
            with self.subTest(area=name):
                blocks = re.findall(r"```(\w+)\n(.*?)\n```", section, re.S)
                self.assertEqual([kind for kind, _ in blocks], ["json", "text", "json"])
                document = json.loads(blocks[0][1])
                self.assertEqual(msgpack.unpackb(bytes.fromhex(blocks[1][1].replace(" ", ""))),
                                 document)
                answer = json.loads(blocks[2][1])
                answer["ruleset"] = self.ruleset
                self.assertEqual(check(self.server, document, JSON).data, answer)
                self.assertEqual(check(self.server, document, MSGPACK).data, answer)

    def test_public_cases(self):
        """Every row of shared/cases/public.tsv whose area this server runs, both encodings."""
        areas = {a["name"] for a in request(self.server, "GET", "/v1/areas").data["areas"]}
        cases = load_cases(ARGS.cases)
        self.assertEqual(sorted(areas), AREAS)
        self.assertEqual([c["id"] for c in cases], ["p%02d" % i for i in range(1, 23)])
        for case in cases:
            for kind in (MSGPACK, JSON):
                with self.subTest(case=case["id"], encoding=kind):
                    response = check(self.server, case["document"], kind)
                    self.assertEqual(response.status, 200, response.raw)
                    self.assertEqual(response.version, "2")
                    self.assertEqual(response.content_type, kind)
                    verdict = response.data
                    self.assertEqual(verdict["verdict"], case["verdict"], case["note"])
                    self.assertEqual(verdict["article"], case["article"], case["note"])
                    self.assertEqual(verdict["area"], case["area"])
                    self.assertEqual(verdict["ruleset"], self.ruleset)
                    self.assertEqual(verdict["election"]["id"], case["document"]["election"])
                    for key in ("rule", "reason", "reason_ko"):
                        self.assertIn(key, verdict)
                    self.assertTrue(("window" in verdict) != ("deadline" in verdict), verdict)

    def test_verdict_in_window_exact(self):
        verdict = check(self.server, {
            "election": "na22", "area": "deepfake", "date": "2024-04-10",
            "actor": {"kind": "candidate"},
            "activity": {"kind": "screen", "deepfake": True, "purpose": "campaign"}}).data
        self.assertEqual(verdict, {
            "verdict": "prohibited", "area": "deepfake", "article": "82-8(1)",
            "rule": "deepfake/82-8/2024-01-29",
            "reason": "Deepfake videos for campaigning are prohibited from 2024-01-11 (D-90) to "
                      "election day 2024-04-10, labeled or not.",
            "reason_ko": "선거일 전 90일(2024-01-11)부터 선거일(2024-04-10)까지는 표시 여부와 "
                         "관계없이 선거운동을 위한 딥페이크 영상을 제작·편집·배포·상영·게시할 수 "
                         "없습니다.",
            "window": {"from": "2024-01-11", "to": "2024-04-10"},
            "penalty": "Art. 255(5): imprisonment of up to 7 years or a fine of KRW 10 million "
                       "to 50 million",
            "election": {"id": "na22", "day": "2024-04-10"},
            "ruleset": self.ruleset})

    def test_window_boundaries(self):
        """D-91 and the day after election day are outside; D-90 and election day inside."""
        expected = {"2026-03-04": "82-8(2)", "2026-03-05": "82-8(1)", "2026-06-03": "82-8(1)",
                    "2026-06-04": "82-8(2)"}
        for date, article in expected.items():
            verdict = check(self.server, {
                "election": "local9", "area": "deepfake", "date": date,
                "activity": {"kind": "post", "deepfake": True, "purpose": "campaign",
                             "labeled": False}}).data
            self.assertEqual(verdict["article"], article, date)
            self.assertEqual(verdict["verdict"], "prohibited", date)

    def test_outside_window_unlabeled_and_labeled(self):
        document = {"election": "local9", "area": "deepfake", "date": "2026-03-04",
                    "activity": {"kind": "post", "deepfake": True, "purpose": "campaign",
                                 "labeled": False}}
        unlabeled = check(self.server, document).data
        self.assertEqual((unlabeled["verdict"], unlabeled["article"]), ("prohibited", "82-8(2)"))
        self.assertEqual(unlabeled["obligations"], ["Label the video as AI-made (Art. 82-8(2))."])
        self.assertEqual(unlabeled["penalty"],
                         "Art. 261(3)4: administrative fine of up to KRW 10 million")
        self.assertEqual(unlabeled["window"], {"from": "2026-03-05", "to": "2026-06-03"})
        document["activity"]["labeled"] = True
        labeled = check(self.server, document).data
        self.assertEqual((labeled["verdict"], labeled["exception"]),
                         ("allowed", "labeled_outside_window"))
        del document["activity"]["labeled"]
        unknown = check(self.server, document).data
        self.assertEqual((unknown["verdict"], unknown["missing"]),
                         ("needs_facts", ["activity.labeled"]))

    def test_authorized_by_must_name_an_article(self):
        document = {"election": "na22", "area": "advertising", "date": "2024-03-30",
                    "activity": {"kind": "advertisement", "shows_name": "candidate",
                                 "authorized_by": "the party said so"}}
        self.assertError(check(self.server, document), 422, "invalid_fact",
                         "activity.authorized_by",
                         'activity.authorized_by must name an article of the Act, e.g. "69" or '
                         '"70(1)"')
        for malformed in ("", "1)(", "70(", "-69", "69-", "70()", "6 9"):
            document["activity"]["authorized_by"] = malformed
            self.assertError(check(self.server, document), 422, "invalid_fact",
                             "activity.authorized_by")
        # Art. 70(1)2: a proportional list's broadcast ad by its party, in the campaign.
        document["activity"].update(authorized_by="70(1)", medium="broadcast",
                                    seat="proportional", advertiser="recommending_party")
        allowed = check(self.server, document).data
        self.assertEqual((allowed["verdict"], allowed["exception"]),
                         ("allowed", "method_provided_by_act"))

    def test_mail_cannot_arrive_before_it_is_sent(self):
        """The legislative_report plugin's validate relates arrival_date to the act's date."""
        for kind in (MSGPACK, JSON):
            self.assertError(check(self.server, {
                "election": "na22", "area": "legislative_report", "date": "2024-01-12",
                "actor": {"kind": "na_member"},
                "activity": {"kind": "report", "channel": "mail",
                             "arrival_date": "2024-01-10"}}, kind), 422, "invalid_fact",
                "activity.arrival_date",
                "activity.arrival_date 2024-01-10 is before the day the mail was sent (date)")

    def test_not_a_deepfake_and_not_in_force(self):
        hand_edited = check(self.server, {
            "election": "na22", "area": "deepfake", "date": "2024-02-01",
            "activity": {"kind": "post", "deepfake": False, "purpose": "campaign"}}).data
        self.assertEqual((hand_edited["verdict"], hand_edited["article"],
                          hand_edited["exception"]), ("allowed", "82-8", "not_ai_generated"))
        early = check(self.server, {
            "election": "na22", "area": "deepfake", "date": "2024-01-28",
            "activity": {"kind": "post", "deepfake": True, "purpose": "campaign",
                         "labeled": False}}).data
        self.assertEqual((early["verdict"], early["article"], early["exception"], early["rule"]),
                         ("allowed", "82-8", "not_in_force",
                          "deepfake/82-8/2024-01-29/not-in-force"))
        self.assertEqual(len(early["obligations"]), 1)

    def test_needs_facts(self):
        verdict = check(self.server, {"election": "na22", "area": "deepfake",
                                      "date": "2024-02-01", "activity": {"kind": "post"}}).data
        self.assertEqual(verdict["verdict"], "needs_facts")
        self.assertEqual(verdict["missing"], ["activity.deepfake", "activity.purpose"])

    def posting(self, date, election="na22", **facts):
        """A false_information check of a reported posting, asked in both encodings; the two
        answers must be the same map."""
        document = {"election": election, "area": "false_information", "date": date,
                    "activity": dict(kind="posting", **facts)}
        answers = []
        for kind in (MSGPACK, JSON):
            response = check(self.server, document, kind)
            self.assertEqual(response.status, 200, response.raw)
            self.assertEqual(response.version, "2")
            self.assertEqual(response.content_type, kind)
            answers.append(response.data)
        self.assertEqual(answers[0], answers[1])
        return answers[0]

    def test_false_information_exact(self):
        verdict = self.posting("2024-03-01", category="false_fact", intent="to_defeat",
                               target="candidate")
        self.assertEqual(verdict, {
            "verdict": "prohibited", "area": "false_information", "article": "250(2)",
            "rule": "false_information/82-4/2004-03-12",
            "reason": "Spreading false facts about a candidate to keep someone from being elected "
                      "is prohibited up to election day 2024-04-10 (Art. 250(2)): the commission "
                      "asks the platform to delete the posting and asks the police to "
                      "investigate.",
            "reason_ko": "당선되지 못하게 할 목적으로 후보자에 관한 허위의 사실을 공표하는 것은 "
                         "선거일(2024-04-10)까지 금지되므로(제250조제2항) 위원회는 플랫폼에 "
                         "게시물 삭제를 요청하고 경찰에 수사를 의뢰합니다.",
            "deadline": "2024-04-10", "penalty": PENALTY_250_2,
            "actions": [DELETION_REQUEST, referral("250(2)", PENALTY_250_2)],
            "election": {"id": "na22", "day": "2024-04-10"}, "ruleset": self.ruleset})

    def test_false_information_branches(self):
        """Each branch of the area: verdict, article, penalty and actions, both encodings."""
        deepfake = {"category": "deepfake", "deepfake": True, "purpose": "campaign"}
        cases = [
            # (date, election, facts, verdict, article, penalty, actions)
            ("2024-03-01", "na22", {"category": "false_fact", "intent": "to_elect",
                                    "target": "candidate"},
             "prohibited", "250(1)", PENALTY_250_1,
             [DELETION_REQUEST, referral("250(1)", PENALTY_250_1)]),
            ("2024-04-10", "na22", {"category": "false_fact", "intent": "to_defeat",
                                    "target": "candidate"},
             "prohibited", "250(2)", PENALTY_250_2,
             [DELETION_REQUEST, referral("250(2)", PENALTY_250_2)]),
            ("2024-04-11", "na22", {"category": "false_fact", "intent": "to_defeat"},
             "allowed", "250", None, None),
            ("2024-03-01", "na22", {"category": "false_fact"}, "needs_facts", "250", None, None),
            ("2024-03-01", "na22", {"category": "slander", "target": "candidate",
                                    "true_facts": True, "public_interest": True},
             "allowed", "251", None, None),
            ("2024-03-01", "na22", {"category": "slander", "target": "candidate",
                                    "true_facts": False, "public_interest": True},
             "prohibited", "251", PENALTY_251, [DELETION_REQUEST, referral("251", PENALTY_251)]),
            ("2024-03-01", "na22", {"category": "slander", "target": "candidate",
                                    "true_facts": True, "public_interest": False},
             "prohibited", "251", PENALTY_251, [DELETION_REQUEST, referral("251", PENALTY_251)]),
            ("2024-03-01", "na22", {"category": "slander", "target": "candidate",
                                    "true_facts": True},
             "needs_facts", "251", None, None),
            ("2024-02-15", "na22", dict(deepfake, labeled=True), "prohibited", "82-8(1)",
             PENALTY_255_5, [DELETION_REQUEST, referral("82-8(1)", PENALTY_255_5)]),
            ("2024-01-28", "na22", dict(deepfake, labeled=False), "allowed", "82-8", None, None),
            ("2026-03-04", "local9", dict(deepfake, labeled=True), "allowed", "82-8(2)", None,
             None),
            ("2026-03-04", "local9", dict(deepfake, labeled=False), "prohibited", "82-8(2)",
             "Art. 261(3)4: administrative fine of up to KRW 10 million", [DELETION_REQUEST]),
            ("2026-03-04", "local9", deepfake, "needs_facts", "82-8(2)", None, None),
            ("2024-03-01", "na22", {}, "needs_facts", "82-4", None, None),
        ]
        for date, election, facts, verdict, article, penalty, actions in cases:
            with self.subTest(date=date, facts=facts):
                answer = self.posting(date, election, **facts)
                self.assertEqual((answer["verdict"], answer["article"], answer.get("penalty"),
                                  answer.get("actions")),
                                 (verdict, article, penalty, actions))
                self.assertEqual(answer["area"], "false_information")
                self.assertEqual(answer["rule"], "false_information/82-4/2004-03-12")

    def test_false_information_missing_and_exceptions(self):
        self.assertEqual(self.posting("2024-03-01", category="slander")["missing"],
                         ["activity.target", "activity.true_facts", "activity.public_interest"])
        self.assertEqual(self.posting("2024-03-01")["missing"], ["activity.category"])
        self.assertEqual(self.posting("2024-03-01", category="false_fact")["missing"],
                         ["activity.intent", "activity.target"])
        self.assertEqual(self.posting("2024-02-15", category="deepfake")["missing"],
                         ["activity.deepfake", "activity.purpose"])
        cases = [({"category": "slander", "target": "candidate", "true_facts": True,
                   "public_interest": True},
                  "2024-03-01", "true_and_public_interest"),
                 ({"category": "slander", "true_facts": False}, "2024-04-11",
                  "after_election_day"),
                 ({"category": "deepfake", "deepfake": True, "purpose": "campaign"},
                  "2024-01-28", "not_in_force"),
                 ({"category": "deepfake", "deepfake": False, "purpose": "campaign"},
                  "2024-02-15", "not_ai_generated")]
        for facts, date, exception in cases:
            with self.subTest(exception=exception):
                self.assertEqual(self.posting(date, **facts)["exception"], exception)

    def test_false_information_agrees_with_deepfake(self):
        """A deepfake posting gets the deepfake area's verdict, plus what the commission sends."""
        for date in ("2024-01-10", "2024-01-28", "2024-01-29", "2024-04-10", "2024-04-11"):
            for labeled in (True, False):
                with self.subTest(date=date, labeled=labeled):
                    facts = {"deepfake": True, "purpose": "campaign", "labeled": labeled}
                    own = check(self.server, {"election": "na22", "area": "deepfake",
                                              "date": date,
                                              "activity": dict(facts, kind="post")}).data
                    reported = self.posting(date, category="deepfake", **facts)
                    reported.pop("actions", None)
                    for key in ("area", "rule"):
                        del own[key], reported[key]
                    self.assertEqual(reported, own)

    def test_false_information_actions_on_the_wire(self):
        """Keys sorted and numbers as integers in the bytes themselves; the verdict cache and
        the decision log give back the same bytes."""
        document = {"election": "na22", "area": "false_information", "date": "2024-03-02",
                    "activity": {"kind": "posting", "category": "slander",
                                 "target": "candidate", "true_facts": False}}
        first = check(self.server, document, JSON)
        self.assertIn(b'"actions":[{"article":"82-4(3)","due_hours":24,"escalation":{"after":2,'
                      b'"article":"256(3)1(e)","form":"accusation","kind":"referral","penalty":',
                      first.raw)
        raw = msgpack.unpackb(check(self.server, document, MSGPACK).raw)
        self.assertIs(type(raw["actions"][0]["due_hours"]), int)
        self.assertIs(type(raw["actions"][0]["escalation"]["after"]), int)
        # Both workers, several times: some answers come from their verdict caches.
        bodies = {check(self.server, document, JSON).raw.split(b',"decision":')[0]
                  for _ in range(6)}
        self.assertEqual(bodies, {first.raw.split(b',"decision":')[0]})
        # The decision log stores the answer's bytes; the writer may not have reached it yet.
        path = "/v1/decisions/%d" % first.decisions[0]
        deadline = time.time() + 10
        while request(self.server, "GET", path).status != 200 and time.time() < deadline:
            time.sleep(0.05)
        decision = request(self.server, "GET", path).data
        self.assertEqual(decision["answer"], first.document)
        self.assertEqual(decision["article"], "251")
        replay = request(self.server, "POST", path + "/replay")
        self.assertEqual(replay.status, 200, replay.raw)
        self.assertTrue(replay.data["same"])
        self.assertEqual(replay.data["replayed"]["actions"], first.data["actions"])

    def test_false_information_refuses_bad_facts(self):
        base = {"election": "na22", "area": "false_information", "date": "2024-03-01"}
        cases = [
            ({"kind": "posting", "category": "false_fact", "true_facts": True}, 422,
             "activity.true_facts",
             "activity.true_facts is true for a posting reported as false_fact; report true "
             "facts that disparage as slander"),
            ({"kind": "posting", "category": "rumour"}, 422, "activity.category",
             "activity.category: unknown value 'rumour'"),
            ({"kind": "posting", "category": "false_fact", "intent": "to_amuse"}, 422,
             "activity.intent", "activity.intent: unknown value 'to_amuse'"),
            ({"kind": "posting", "category": "slander", "public_interest": "yes"}, 422,
             "activity.public_interest", "activity.public_interest must be a boolean"),
            ({"kind": "post", "category": "false_fact"}, 422, "activity.kind",
             "area false_information does not cover activity kind 'post'"),
        ]
        for activity, status, field, message in cases:
            for kind in (MSGPACK, JSON):
                with self.subTest(activity=activity, encoding=kind):
                    self.assertError(check(self.server, dict(base, activity=activity), kind),
                                     status, "invalid_fact", field, message)

    def test_area_omitted(self):
        data = check(self.server, {"election": "na22", "date": "2024-02-15",
                                   "activity": {"kind": "distribute", "deepfake": True,
                                                "purpose": "campaign"}}, JSON).data
        self.assertEqual(data["verdict"], "prohibited")
        self.assertEqual(data["ruleset"], self.ruleset)
        self.assertEqual([(r["area"], r["verdict"], r["article"]) for r in data["results"]],
                         [("deepfake", "prohibited", "82-8(1)")])
        missing = check(self.server, {"election": "na22", "activity": {}}).data
        self.assertEqual((missing["verdict"], missing["missing"], missing["results"]),
                         ("needs_facts", ["activity.kind"], []))

    def test_date_defaults_to_today_in_seoul(self):
        def seoul_today():
            return time.strftime("%Y-%m-%d", time.gmtime(time.time() + 9 * 3600))

        # Asked without a date, the check is decided for today in Seoul: the verdict is the one
        # the same check with today's date gets (asked again should midnight fall between).
        check_without_date = {"election": "na23", "area": "deepfake",
                              "activity": {"deepfake": True, "purpose": "campaign",
                                           "labeled": True}}
        for _ in range(3):
            today = seoul_today()
            undated = check(self.server, check_without_date).data
            dated = check(self.server, dict(check_without_date, date=today)).data
            if seoul_today() == today:
                break
        self.assertEqual(undated, dated)
        # na23's window is 2028-01-13 (D-90) to 2028-04-12; labeled, the video is allowed
        # before it (82-8(2)) and prohibited within it (82-8(1)).
        inside = "2028-01-13" <= today <= "2028-04-12"
        self.assertEqual((undated["verdict"], undated["article"]),
                         ("prohibited", "82-8(1)") if inside else ("allowed", "82-8(2)"))

    def test_content_negotiation(self):
        document = {"election": "na22", "area": "deepfake", "date": "2024-02-20",
                    "activity": {"kind": "post", "deepfake": True, "purpose": "primary"}}
        as_msgpack = check(self.server, document, JSON, accept=MSGPACK)
        self.assertEqual(as_msgpack.content_type, MSGPACK)
        self.assertEqual(as_msgpack.data["exception"], "not_campaigning")
        as_json = check(self.server, document, MSGPACK, accept="text/html, application/json")
        self.assertEqual(as_json.content_type, JSON)
        self.assertEqual(as_json.data, as_msgpack.data)
        legacy = request(self.server, "POST", "/v1/check", encode(document, MSGPACK),
                         "application/x-msgpack", "*/*")
        self.assertEqual(legacy.content_type, MSGPACK)
        self.assertEqual(legacy.data, as_msgpack.data)

    def test_malformed_bodies(self):
        good = encode({"election": "na22", "area": "deepfake",
                       "activity": {"kind": "post", "deepfake": True, "purpose": "campaign"}},
                      MSGPACK)
        for kind in (MSGPACK, JSON):
            self.assertError(request(self.server, "POST", "/v1/check", b"", kind), 400,
                             "bad_request", None, "the request body is empty")
        truncated = request(self.server, "POST", "/v1/check", good[:-3], MSGPACK)
        self.assertError(truncated, 400, "bad_request")
        self.assertTrue(truncated.data["message"].startswith("truncated msgpack"))
        trailing = request(self.server, "POST", "/v1/check", good + b"\xc0", MSGPACK)
        self.assertError(trailing, 400, "bad_request")
        self.assertIn("trailing bytes", trailing.data["message"])
        self.assertError(request(self.server, "POST", "/v1/check", b'{"election": "na22",',
                                 JSON), 400, "bad_request")
        self.assertError(check(self.server, ["na22"]), 400, "bad_request", None,
                         "the check must be a map with election, activity, ...")
        dup = request(self.server, "POST", "/v1/check",
                      b'{"election":"na22","activity":{"kind":"post","kind":"edit"}}', JSON)
        self.assertError(dup, 400, "bad_request")
        self.assertIn("duplicate", dup.data["message"])
        deep = request(self.server, "POST", "/v1/check", b"[" * 30000 + b"]" * 30000, JSON)
        self.assertError(deep, 400, "bad_request")
        self.assertIn("maximum parsing depth", deep.data["message"])
        deep = request(self.server, "POST", "/v1/check", b"\x91" * 60000 + b"\xc0", MSGPACK)
        self.assertError(deep, 400, "bad_request", None,
                         "malformed msgpack: nesting deeper than 32 levels")
        bad_utf8 = msgpack.packb({"election": "na22", "activity": {"kind": "QQ"}})
        bad_utf8 = bad_utf8.replace(b"\xa2QQ", b"\xa2\xff\xfe")
        self.assertError(request(self.server, "POST", "/v1/check", bad_utf8, MSGPACK), 400,
                         "bad_request", "activity.kind", "invalid UTF-8 in string")

    def test_wrong_types_and_values(self):
        base = {"election": "na22", "area": "deepfake", "date": "2024-02-01",
                "activity": {"kind": "post", "deepfake": True, "purpose": "campaign"}}

        def variant(**changes):
            document = json.loads(json.dumps(base))
            for path, value in changes.items():
                section, _, key = path.partition("__")
                if key:
                    document[section][key] = value
                else:
                    document[section] = value
            return document

        cases = [
            (variant(election=5), 400, "bad_request", "election",
             "election must be a string id"),
            (variant(activity="post"), 400, "bad_request", "activity", "activity must be a map"),
            (variant(actor=["voter"]), 400, "bad_request", "actor", "actor must be a map"),
            (variant(area=1), 400, "bad_request", "area", "area must be a string"),
            (dict(base, extra=1), 400, "bad_request", None, "unknown field 'extra'"),
            ({"area": "deepfake", "activity": {}}, 400, "bad_request", "election",
             "election is required (an id from /v1/elections)"),
            (variant(election="na99"), 404, "unknown_election", "election",
             "no election 'na99'; GET /v1/elections lists them"),
            (variant(area="astrology"), 404, "unknown_area", "area",
             "no area 'astrology'; GET /v1/areas lists them"),
            (variant(date="2024-02-30"), 422, "invalid_fact", "date",
             "date must be a date YYYY-MM-DD between 1900 and 2199"),
            (variant(date=20240201), 422, "invalid_fact", "date",
             "date must be a date YYYY-MM-DD between 1900 and 2199"),
            (variant(activity__deepfake="yes"), 422, "invalid_fact", "activity.deepfake",
             "activity.deepfake must be a boolean"),
            (variant(activity__purpose="fun"), 422, "invalid_fact", "activity.purpose",
             "activity.purpose: unknown value 'fun'"),
            (variant(activity__purpose=7), 422, "invalid_fact", "activity.purpose",
             "activity.purpose must be a string"),
            (variant(activity__labelled=True), 422, "invalid_fact", "activity.labelled",
             "unknown fact 'activity.labelled'"),
            (variant(actor={"kind": "alien"}), 422, "invalid_fact", "actor.kind",
             "actor.kind: unknown value 'alien'"),
            (variant(activity__kind="report"), 422, "invalid_fact", "activity.kind",
             "area deepfake does not cover activity kind 'report'"),
            (variant(activity__kind="livestream"), 422, "invalid_fact", "activity.kind",
             "activity.kind: unknown value 'livestream'"),
        ]
        for document, status, code, field, message in cases:
            for kind in (MSGPACK, JSON):
                with self.subTest(message=message, encoding=kind):
                    self.assertError(check(self.server, document, kind), status, code, field,
                                     message)

    def test_body_limits(self):
        padding = "x" * (64 * 1024)
        big = encode({"election": "na22", "activity": {"kind": "post"}, "pad": padding}, JSON)
        self.assertGreater(len(big), 64 * 1024)
        self.assertError(request(self.server, "POST", "/v1/check", big, JSON), 413, "too_large",
                         None, "the body has %d bytes; the limit is 65536" % len(big))
        self.assertError(request(self.server, "POST", "/v1/check", big, JSON, http="1.1"), 413,
                         "too_large")
        # Far beyond h2o's own limit the stream is refused; the server stays healthy.
        huge = b"{" + b" " * (4 * 1024 * 1024) + b"}"
        try:
            response = request(self.server, "POST", "/v1/check", huge, JSON)
            self.assertNotEqual(response.status, 200)
        except AssertionError as refused:
            self.assertIn("curl failed", str(refused))
        self.assertEqual(request(self.server, "GET", "/healthz").status, 200)

    def test_media_type_method_route(self):
        self.assertError(request(self.server, "POST", "/v1/check", b"election=na22",
                                 "application/x-www-form-urlencoded"), 415,
                         "unsupported_media_type", None,
                         "Content-Type must be application/msgpack or application/json, "
                         "got 'application/x-www-form-urlencoded'")
        wrong_method = request(self.server, "GET", "/v1/check")
        self.assertError(wrong_method, 405, "method_not_allowed", None,
                         "GET /v1/check: use POST")
        self.assertIn("allow: post", wrong_method.headers)
        self.assertError(request(self.server, "DELETE", "/v1/areas"), 405,
                         "method_not_allowed")
        self.assertError(request(self.server, "GET", "/v2/check"), 404, "not_found", None,
                         "no route /v2/check")
        self.assertError(request(self.server, "GET", "/v1/elections/na22/nope"), 404,
                         "not_found")

    def test_batch(self):
        good = {"election": "na22", "area": "deepfake", "date": "2024-02-15",
                "activity": {"kind": "post", "deepfake": True, "purpose": "campaign"}}
        checks = [good,
                  dict(good, election="na99"),
                  dict(good, activity={"kind": "post", "deepfake": "yes"}),
                  "not a check",
                  {"election": "na22", "date": "2024-02-15",
                   "activity": {"kind": "post", "deepfake": True, "purpose": "primary"}}]
        for kind in (MSGPACK, JSON):
            response = request(self.server, "POST", "/v1/check/batch",
                               encode({"checks": checks}, kind), kind)
            self.assertEqual(response.status, 200, response.raw)
            results = response.data["results"]
            self.assertEqual(len(results), 5)
            single = check(self.server, good).data
            self.assertEqual(results[0], single)
            self.assertEqual(results[1], {
                "error": "unknown_election", "field": "election", "status": 404,
                "message": "no election 'na99'; GET /v1/elections lists them"})
            self.assertEqual(results[2], {
                "error": "invalid_fact", "field": "activity.deepfake", "status": 422,
                "message": "activity.deepfake must be a boolean"})
            self.assertEqual(results[3], {
                "error": "bad_request", "status": 400,
                "message": "the check must be a map with election, activity, ..."})
            self.assertEqual((results[4]["verdict"], results[4]["results"][0]["exception"]),
                             ("allowed", "not_campaigning"))

    def test_batch_limits(self):
        item = {"election": "na22", "activity": {"kind": "post"}}
        too_many = request(self.server, "POST", "/v1/check/batch",
                           encode({"checks": [item] * 1001}, MSGPACK), MSGPACK)
        self.assertError(too_many, 413, "too_large", "checks",
                         "the batch has 1001 checks; the limit is 1000")
        full = request(self.server, "POST", "/v1/check/batch",
                       encode({"checks": [item] * 1000}, MSGPACK), MSGPACK)
        self.assertEqual(full.status, 200)
        self.assertEqual(len(full.data["results"]), 1000)
        self.assertError(request(self.server, "POST", "/v1/check/batch",
                                 encode([item], JSON), JSON), 400, "bad_request", "checks",
                         'the body must be {"checks": [check, ...]}')
        self.assertError(request(self.server, "POST", "/v1/check/batch",
                                 encode({"checks": [], "more": 1}, JSON), JSON), 400,
                         "bad_request", None, "unknown field 'more'")
        self.assertError(request(self.server, "GET", "/v1/check/batch"), 405,
                         "method_not_allowed")

    def test_many_streams_on_one_connection(self):
        """h2load: 2000 checks over 4 connections with 16 concurrent streams each."""
        with tempfile.NamedTemporaryFile(suffix=".msgpack") as body:
            body.write(encode({"election": "na22", "area": "deepfake", "date": "2024-02-15",
                               "activity": {"kind": "post", "deepfake": True,
                                            "purpose": "campaign"}}, MSGPACK))
            body.flush()
            result = subprocess.run(
                ["h2load", "-n", "2000", "-c", "4", "-m", "16", "-d", body.name,
                 "-H", "content-type: application/msgpack", self.server.url("/v1/check")],
                capture_output=True, text=True, timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"requests: 2000 total, 2000 started, 2000 done, "
                                        r"2000 succeeded, 0 failed, 0 errored")
        self.assertRegex(result.stdout, r"status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx")


def copy_rules(directory):
    """Copies every bundled rule file into `directory` (which may exist)."""
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(ARGS.rules):
        if name.endswith(".lua"):
            shutil.copy(os.path.join(ARGS.rules, name), directory)


def deepfake_only_plugins():
    """A plugin directory holding only the deepfake area, for rule directories that hold only
    elections.lua and deepfake.lua."""
    directory = tempfile.mkdtemp(prefix="epcs-test-plugins-")
    os.symlink(os.path.abspath(os.path.join(ARGS.plugins, "deepfake.so")),
               os.path.join(directory, "deepfake.so"))
    return directory


def write_rules(directory, deepfake_body):
    """A rules directory: the bundled elections and a deepfake.lua with the given evaluate.

    Its one test asks about a campaign deepfake, which every body here allows.
    """
    os.makedirs(directory, exist_ok=True)
    shutil.copy(os.path.join(ARGS.rules, "elections.lua"), directory)
    with open(os.path.join(directory, "deepfake.lua"), "w") as f:
        f.write("local w, c = epcs.window{from = epcs.D(90), to = epcs.D(0)}, "
                "epcs.coverage{{everyone = '82-8(1)'}}\n"
                "return epcs.area{name = 'deepfake', article = '82-8', coverage = c, versions = {\n"
                "  {id = 'test/1', effective_from = '2024-01-29', window = w,\n"
                "   evaluate = function(q)\n" + deepfake_body + "\n   end}},\n"
                "  tests = {{name = 'campaign', election = 'na22', date = '2024-02-01',\n"
                "    activity = {kind = 'post', purpose = 'campaign'},\n"
                "    expect = {verdict = 'allowed'}}}}\n")


FAILING_RULES = """\
      local purpose = q.activity.purpose
      if purpose == 'satire' then while true do end end
      if purpose == 'other' then local t, s = {}, ('x'):rep(1e5) for i = 1, 1e9 do t[i] = s .. i end end
      if purpose == 'primary' then return q.nothing.here end
      if purpose == 'get_out_the_vote' then
        local n = 0 for i = 1, 2e8 do n = n + i end
      end
      if purpose == 'legislative_report' then
        return epcs.allowed{article = '82-8', reason = 'r',
                            actions = {{kind = 'referral', escalation = {next = {after = 2}}}}}
      end
      return epcs.allowed{article = '82-8', reason = 'fine'}"""


class FailingRulesTest(EpcsTest):
    """Rules that loop, allocate without bound or error give 500 naming file and line."""

    @classmethod
    def setUpClass(cls):
        cls.rules = tempfile.mkdtemp(prefix="epcs-test-rules-")
        write_rules(cls.rules, FAILING_RULES)
        cls.plugins = deepfake_only_plugins()
        cls.server = Server("--lua-memory", "16", "--lua-budget", "1000000", rules=cls.rules,
                            plugins=cls.plugins)

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.rules)
        shutil.rmtree(cls.plugins)
        assert status == 0, "epcsd exited with %d" % status

    def run_purpose(self, purpose, kind=MSGPACK):
        return check(self.server, {"election": "na22", "area": "deepfake", "date": "2024-02-01",
                                   "activity": {"kind": "post", "purpose": purpose}}, kind)

    def test_failures_name_the_rule(self):
        cases = {
            "satire": (6, "deepfake.lua:6: instruction budget of 1000000 exceeded "
                          "(endless loop?)"),
            "other": (7, "deepfake.lua:7: memory limit of 16777216 bytes exceeded"),
            "primary": (8, "deepfake.lua:8: attempt to index a nil value (field 'nothing')"),
            "legislative_report": (13, "deepfake.lua:13: rule test/1 returned actions whose "
                                       "actions[1].escalation.next is a map nested deeper; "
                                       "actions are a list of maps of strings, numbers, booleans "
                                       "and maps of those, 2 deep"),
        }
        for round_ in range(3):
            for purpose, (line, message) in cases.items():
                for kind in (MSGPACK, JSON):
                    response = self.run_purpose(purpose, kind)
                    self.assertEqual(response.status, 500, response.raw)
                    self.assertEqual(response.data, {
                        "error": "rule_failed", "message": message, "area": "deepfake",
                        "file": "deepfake.lua", "line": line})
            # Neither worker is stuck or broken afterwards.
            self.assertEqual(self.run_purpose("campaign").data["verdict"], "allowed")
        self.assertIn('"component":"deepfake","msg":"rule failed: deepfake.lua:6: instruction '
                      'budget', self.server.text())


class LifecycleTest(EpcsTest):
    """Start-up refusals, graceful shutdown and TLS."""

    def test_graceful_shutdown_finishes_in_flight(self):
        rules = tempfile.mkdtemp(prefix="epcs-test-rules-")
        write_rules(rules, FAILING_RULES)
        plugins = deepfake_only_plugins()
        server = Server("--lua-budget", "1000000000", rules=rules, plugins=plugins)
        try:
            results = {}

            def slow():
                results["response"] = check(server, {
                    "election": "na22", "area": "deepfake", "date": "2024-02-01",
                    "activity": {"kind": "post", "purpose": "get_out_the_vote"}})

            worker = threading.Thread(target=slow)
            started = time.time()
            worker.start()
            time.sleep(0.15)
            self.assertTrue(worker.is_alive(), "the slow request finished too early to test")
            server.process.send_signal(signal.SIGTERM)
            worker.join(60)
            status = server.process.wait(30)
            self.assertEqual(results["response"].status, 200)
            self.assertEqual(results["response"].data["verdict"], "allowed")
            self.assertEqual(status, 0, server.text())
            log = server.text()
            self.assertIn("SIGTERM: finishing in-flight requests", log)
            self.assertIn("stopped cleanly", log)
            self.assertGreater(time.time() - started, 0.15)
        finally:
            server.cleanup()
            shutil.rmtree(rules)
            shutil.rmtree(plugins)

    def test_sighup_reloads_rules_or_keeps_the_running_ones(self):
        rules = tempfile.mkdtemp(prefix="epcs-test-reload-")
        copy_rules(rules)
        with open(os.path.join(rules, "LABEL"), "w") as f:
            f.write("2026 satire amendment draft\n")
        server = Server("--no-watch-rules", rules=rules)
        try:
            document = {"election": "na22", "area": "deepfake", "date": "2024-02-15",
                        "activity": {"kind": "post", "deepfake": True, "purpose": "satire"}}
            before = check(server, document).data
            self.assertEqual(before["verdict"], "allowed")
            path = os.path.join(rules, "deepfake.lua")
            with open(path) as f:
                source = f.read()
            # An amendment: satire counts as campaigning from now on.
            with open(path, "w") as f:
                f.write(source.replace('if activity.purpose ~= "campaign" then',
                                       'if activity.purpose ~= "campaign" and '
                                       'activity.purpose ~= "satire" then', 1)
                        .replace('name = "satire not for campaigning"',
                                 'name = "satire counts"', 1)
                        .replace('expect = {verdict = "allowed", exception = "not_campaigning"}',
                                 'expect = {verdict = "prohibited"}', 1))
            server.process.send_signal(signal.SIGHUP)
            deadline = time.time() + 20
            while time.time() < deadline and "reloaded" not in server.text():
                time.sleep(0.05)
            after = check(server, document).data
            self.assertEqual(after["verdict"], "prohibited")
            self.assertNotEqual(after["ruleset"], before["ruleset"])
            rules_info = request(server, "GET", "/v1/rules").data
            self.assertEqual((rules_info["ruleset"], rules_info["label"]),
                             (after["ruleset"], "2026 satire amendment draft"))
            # A broken amendment is refused; the previous one keeps answering.
            with open(path, "w") as f:
                f.write("return epcs.area{")
            server.process.send_signal(signal.SIGHUP)
            while time.time() < deadline and "reload refused" not in server.text():
                time.sleep(0.05)
            self.assertRegex(server.text(), r"reload refused, the running ruleset stays: "
                                            r"deepfake.lua:1: .*expected")
            again = check(server, document).data
            self.assertEqual((again["verdict"], again["ruleset"]),
                             ("prohibited", after["ruleset"]))
            self.assertEqual(server.stop(), 0)
        finally:
            server.cleanup()
            shutil.rmtree(rules)

    def test_reloads_under_load_lose_no_request(self):
        """50 reloads, valid and invalid in turn, while h2load and a checker keep asking."""
        rules = tempfile.mkdtemp(prefix="epcs-test-load-")
        copy_rules(rules)
        path = os.path.join(rules, "deepfake.lua")
        with open(path) as f:
            source = f.read()
        server = Server("--no-watch-rules", rules=rules)
        body = tempfile.NamedTemporaryFile(suffix=".msgpack")
        try:
            document = {"election": "na22", "area": "deepfake", "date": "2024-02-15",
                        "activity": {"kind": "post", "deepfake": True, "purpose": "campaign"}}
            body.write(encode(document, MSGPACK))
            body.flush()
            loaded = {request(server, "GET", "/v1/rules").data["ruleset"]}
            seen, failures, stop, runs = set(), [], threading.Event(), []

            def loader():
                # Back-to-back h2load runs: each prints its own count of failures.
                while not stop.is_set():
                    runs.append(subprocess.run(
                        ["h2load", "-n", "2000", "-c", "4", "-m", "8", "-d", body.name,
                         "-H", "content-type: application/msgpack", server.url("/v1/check")],
                        capture_output=True, text=True, timeout=120).stdout)

            def checker():
                while not stop.is_set():
                    response = check(server, document)
                    if response.status != 200:
                        failures.append(response.raw)
                    else:
                        seen.add(response.data["ruleset"])

            threads = [threading.Thread(target=checker), threading.Thread(target=loader)]
            for thread in threads:
                thread.start()
            for round_ in range(50):
                if round_ % 2 == 0:
                    # A valid amendment: each one words the reason differently.
                    with open(path, "w") as f:
                        f.write(source.replace("labeled or not.", "labeled or not (%d)." % round_))
                    marker = '"msg":"reloaded'
                else:
                    with open(path, "w") as f:
                        f.write(source[:len(source) // 2])
                    marker = "reload refused"
                count = server.text().count(marker)
                server.process.send_signal(signal.SIGHUP)
                deadline = time.time() + 30
                while server.text().count(marker) == count:
                    self.assertLess(time.time(), deadline, "reload %d did not finish" % round_)
                    time.sleep(0.01)
                if marker == '"msg":"reloaded':
                    loaded.add(request(server, "GET", "/v1/rules").data["ruleset"])
            stop.set()
            for thread in threads:
                thread.join(120)
            self.assertEqual(len(loaded), 26)
            self.assertEqual(failures, [])
            self.assertTrue(seen, "the checker saw no verdict")
            self.assertLessEqual(seen, loaded)
            self.assertTrue(runs, "h2load never ran")
            for output in runs:
                self.assertRegex(output, r"requests: 2000 total, 2000 started, 2000 done, "
                                         r"2000 succeeded, 0 failed, 0 errored")
                self.assertRegex(output, r"status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx")
            self.assertEqual(server.text().count("reload refused"), 25)
            self.assertEqual(server.stop(), 0)
        finally:
            body.close()
            server.cleanup()
            shutil.rmtree(rules)

    def wait_for_log(self, server, text, count=1, timeout=20):
        deadline = time.time() + timeout
        while server.text().count(text) < count:
            self.assertLess(time.time(), deadline, "no %r in the log:\n%s" % (text, server.text()))
            time.sleep(0.05)

    def assertDurablyReplaced(self, trace, path):
        """In an strace log: `path` was renamed into place, then its directory fsync'd."""
        directory = os.path.dirname(path)
        renamed = opened = None
        for number, line in enumerate(trace.splitlines()):
            if renamed is None and re.search(r'rename\w*\(.*"%s"(, \w+)?\) = 0' % re.escape(path),
                                             line):
                renamed = number
            if renamed is not None:
                match = re.search(r'openat\(AT_FDCWD, "%s", [^)]*O_DIRECTORY[^)]*\) = (\d+)'
                                  % re.escape(directory), line)
                if match:
                    opened = match.group(1)
                if opened is not None and re.search(r"fsync\(%s\) += 0" % opened, line):
                    return
        self.fail("%s was not renamed into place and its directory fsync'd (renamed at line %s)"
                  % (path, renamed))

    def test_replaced_files_are_durable(self):
        """A rename reaches the disk with its directory: keys file, stored rules, restores."""
        scratch = tempfile.mkdtemp(prefix="epcs-test-durable-")
        try:
            trace = os.path.join(scratch, "trace")
            keys = os.path.join(scratch, "keys")
            strace = ["strace", "-f", "-o", trace, "-e", "trace=rename,renameat,renameat2,openat,fsync"]
            # LeakSanitizer cannot run under ptrace; the sanitized build's leaks are checked
            # everywhere else.
            traced = dict(os.environ, ASAN_OPTIONS=":".join(
                filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"])))
            subprocess.run(strace + [ARGS.epcsd, "keys", "create", "--keys", keys, "--partner",
                                     "naver", "--role", "partner"],
                           check=True, capture_output=True, timeout=60, env=traced)
            with open(trace) as f:
                self.assertDurablyReplaced(f.read(), keys)
            data = os.path.join(scratch, "var")
            server = Server("--data", data)
            ruleset = request(server, "GET", "/v1/rules").data["ruleset"]
            self.assertEqual(server.stop(), 0)
            server.cleanup()
            restored = os.path.join(scratch, "restored")
            subprocess.run(strace + [ARGS.epcsd, "--data", data, "--restore-rules", ruleset,
                                     "--rules", restored],
                           check=True, capture_output=True, timeout=60, env=traced)
            with open(trace) as f:
                self.assertDurablyReplaced(f.read(), os.path.join(restored, "deepfake.lua"))
            # The rule store, as a start stores the rules it serves.
            stored = os.path.join(scratch, "var2")
            started = subprocess.Popen(strace + [ARGS.epcsd, "--data", stored, "--no-auth",
                                                 "--listen", "127.0.0.1:0", "--rules", ARGS.rules,
                                                 "--plugins", ARGS.plugins],
                                       stderr=subprocess.DEVNULL, env=traced)
            try:
                deadline = time.time() + 60
                while not os.path.exists(os.path.join(stored, "rulesets", "activations.jsonl")):
                    self.assertLess(time.time(), deadline)
                    time.sleep(0.1)
                # SIGTERM to epcsd itself: strace would only let go of it.
                with open("/proc/%d/task/%d/children" % (started.pid, started.pid)) as f:
                    os.kill(int(f.read().split()[0]), signal.SIGTERM)
                self.assertEqual(started.wait(timeout=60), 0)
            finally:
                if started.poll() is None:
                    started.kill()
            with open(trace) as f:
                text = f.read()
            self.assertDurablyReplaced(text, os.path.join(stored, "rulesets",
                                                          ruleset + ".json"))
            blob = hashlib.sha256(open(os.path.join(ARGS.rules, "deepfake.lua"), "rb").read())
            self.assertDurablyReplaced(text, os.path.join(stored, "rulesets", "blobs",
                                                          blob.hexdigest()))
        finally:
            shutil.rmtree(scratch)

    def test_activation_history(self):
        """Who switched the rules, when, from which version to which and why, append-only."""
        rules = tempfile.mkdtemp(prefix="epcs-test-history-")
        copy_rules(rules)
        server = Server("--no-watch-rules", rules=rules)
        try:
            first = request(server, "GET", "/v1/rules").data["ruleset"]
            path = os.path.join(rules, "deepfake.lua")
            with open(path) as f:
                original = f.read()
            with open(path, "w") as f:
                f.write(original.replace("labeled or not.", "labeled or not, by anyone.", 1))
            server.process.send_signal(signal.SIGHUP)
            self.wait_for_log(server, '"msg":"reloaded')
            second = request(server, "GET", "/v1/rules").data["ruleset"]
            unchanged = request(server, "POST", "/v1/admin/rules/reload")
            self.assertEqual(unchanged.data["status"], "unchanged")
            with open(path, "w") as f:
                f.write(original)
            back = request(server, "POST", "/v1/admin/rules/reload")
            self.assertEqual((back.data["status"], back.data["ruleset"]), ("activated", first))
            self.assertEqual(server.stop(), 0)
            # A restart with the same rules adds nothing.
            restarted = Server("--no-watch-rules", "--data", os.path.join(server.data, "var"),
                               rules=rules)
            try:
                history = request(restarted, "GET", "/v1/rules/versions").data
            finally:
                self.assertEqual(restarted.stop(), 0)
                restarted.cleanup()
            activations = history["activations"]
            self.assertEqual([(a["from"], a["to"], a["by"], a["why"]) for a in activations], [
                (None, first, "start", "started with " + rules),
                (first, second, "signal", "SIGHUP"),
                (second, first, "local", "POST /v1/admin/rules/reload")])
            times = [a["at"] for a in activations]
            self.assertEqual(times, sorted(times))
            for at in times:
                self.assertRegex(at, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
            self.assertEqual([v["ruleset"] for v in history["versions"]], [first, second])
        finally:
            server.cleanup()
            shutil.rmtree(rules)

    def test_start_serves_the_last_good_ruleset_when_the_directory_fails(self):
        rules = tempfile.mkdtemp(prefix="epcs-test-fallback-")
        copy_rules(rules)
        server = Server(rules=rules)
        path = os.path.join(rules, "deepfake.lua")
        with open(path) as f:
            original = f.read()
        try:
            good = request(server, "GET", "/v1/rules").data["ruleset"]
            self.assertEqual(server.stop(), 0)
            lines = original.count("\n")
            with open(path, "w") as f:
                f.write(original + "this is not Lua\n")
            restarted = Server("--data", os.path.join(server.data, "var"), rules=rules)
            try:
                self.assertIn("is refused (deepfake.lua:%d:" % (lines + 1), restarted.text())
                self.assertIn("serving the last activated ruleset %s" % good, restarted.text())
                data = request(restarted, "GET", "/v1/rules").data
                self.assertEqual((data["ruleset"], data["fallback"]), (good, True))
                self.assertEqual((data["refused"]["file"], data["refused"]["line"]),
                                 ("deepfake.lua", lines + 1))
                self.assertEqual(data["refused"]["message"],
                                 "deepfake.lua:%d: <eof> expected near 'this'" % (lines + 1))
                ready = request(restarted, "GET", "/readyz")
                self.assertEqual((ready.status, ready.data["rules"]), (200, "fallback"))
                verdict = check(restarted, {"election": "na22", "area": "deepfake",
                                            "date": "2024-02-15",
                                            "activity": {"kind": "post", "deepfake": True,
                                                         "purpose": "campaign"}}).data
                self.assertEqual((verdict["verdict"], verdict["ruleset"]), ("prohibited", good))
                # Mended, the directory is the same ruleset again: nothing to switch, nothing
                # refused any more.
                with open(path, "w") as f:
                    f.write(original)
                self.wait_for_log(restarted, '"msg":"%s unchanged' % rules)
                data = request(restarted, "GET", "/v1/rules").data
                self.assertEqual((data["fallback"], "refused" in data), (False, False))
                self.assertEqual(request(restarted, "GET", "/readyz").data["rules"], "current")
                # A bad edit while running is refused and shown; the running rules stay.
                with open(path, "w") as f:
                    f.write(original + "neither is this\n")
                self.wait_for_log(restarted, "reload refused")
                data = request(restarted, "GET", "/v1/rules").data
                self.assertEqual((data["ruleset"], data["fallback"], data["refused"]["line"]),
                                 (good, False, lines + 1))
                self.assertEqual(request(restarted, "GET", "/readyz").data["rules"], "refused")
                history = request(restarted, "GET", "/v1/rules/versions").data["activations"]
                self.assertEqual([(a["from"], a["to"]) for a in history], [(None, good)])
                self.assertEqual(restarted.stop(), 0)
            finally:
                restarted.cleanup()
            # Nothing to fall back on: a fresh data directory refuses to start.
            fresh = Server(rules=rules, expect_start=False)
            try:
                self.assertEqual(fresh.process.wait(timeout=60), 1)
                self.assertIn("no ruleset was ever activated", fresh.text())
            finally:
                fresh.cleanup()
        finally:
            server.cleanup()
            shutil.rmtree(rules)

    def test_every_activated_ruleset_is_stored(self):
        """Stored by content under --data: listed, shown, compared and restored."""
        rules = tempfile.mkdtemp(prefix="epcs-test-store-")
        copy_rules(rules)
        server = Server("--no-watch-rules", rules=rules)
        restored = tempfile.mkdtemp(prefix="epcs-test-restored-")
        try:
            first = request(server, "GET", "/v1/rules").data["ruleset"]
            path = os.path.join(rules, "deepfake.lua")
            with open(path) as f:
                original = f.read()
            with open(path, "w") as f:
                f.write(original.replace("labeled or not.", "labeled or not, by anyone.", 1))
            server.process.send_signal(signal.SIGHUP)
            deadline = time.time() + 20
            while '"msg":"reloaded' not in server.text():
                self.assertLess(time.time(), deadline)
                time.sleep(0.05)
            second = request(server, "GET", "/v1/rules").data["ruleset"]
            self.assertNotEqual(first, second)

            versions = request(server, "GET", "/v1/rules/versions", accept=MSGPACK).data
            self.assertEqual([v["ruleset"] for v in versions["versions"]], [first, second])
            manifest = request(server, "GET", "/v1/rules/" + first).data
            self.assertEqual(manifest["ruleset"], first)
            self.assertEqual([f["name"] for f in manifest["files"]],
                             ["elections.lua"] + [a + ".lua" for a in AREAS])
            old = request(server, "GET", "/v1/rules/%s/files/deepfake.lua" % first)
            self.assertEqual(old.content_type, "text/x-lua; charset=utf-8")
            self.assertEqual(old.raw.decode(), original)
            blob = os.path.join(server.data, "var", "rulesets", "blobs",
                                hashlib.sha256(original.encode()).hexdigest())
            self.assertTrue(os.path.exists(blob))
            diff = request(server, "GET", "/v1/rules/%s/diff/%s" % (first, second)).data
            self.assertEqual(diff, {"from": first, "to": second, "added": [], "removed": [],
                                    "changed": ["deepfake.lua"],
                                    "unchanged": ["elections.lua"] + [a + ".lua" for a in AREAS
                                                                      if a != "deepfake"]})
            self.assertError(request(server, "GET", "/v1/rules/rs-0000000000000000"), 404,
                             "unknown_ruleset", "ruleset")
            # A damaged manifest (no ruleset, files not a list) is the store's fault: a 500
            # naming it, and the server keeps serving.
            stored = os.path.join(server.data, "var", "rulesets")
            for damaged, text in (("rs-00000000000000d1", '{"files": []}'),
                                  ("rs-00000000000000d2", '{"ruleset": "x", "files": 3}'),
                                  ("rs-00000000000000d3", '[1, 2]')):
                with open(os.path.join(stored, damaged + ".json"), "w") as f:
                    f.write(text)
                for path in ("/v1/rules/%s/diff/%s" % (first, damaged),
                             "/v1/rules/%s/diff/%s" % (damaged, first),
                             "/v1/rules/%s/files/deepfake.lua" % damaged):
                    self.assertError(request(server, "GET", path), 500, "internal", None,
                                     "the stored manifest of %s is damaged" % damaged)
            self.assertEqual(request(server, "GET", "/healthz").status, 200)
            for escape in ("/v1/rules/..%2f..%2fetc%2fpasswd", "/v1/rules/rs-..%2f..%2f"):
                refused = request(server, "GET", escape, extra=("--path-as-is",))
                self.assertEqual(refused.status, 404)
                self.assertIn(refused.data["error"], ("unknown_ruleset", "not_found"))
            self.assertError(request(server, "GET", "/v1/rules/%s/files/nope.lua" % first), 404,
                             "not_found")
            self.assertEqual(server.stop(), 0)

            # Used again: the first version restored into a fresh directory is the same ruleset.
            result = subprocess.run([ARGS.epcsd, "--data", os.path.join(server.data, "var"),
                                     "--restore-rules", first, "--rules", restored],
                                    capture_output=True, text=True, timeout=60)
            self.assertEqual(result.returncode, 0, result.stderr)
            again = Server(rules=restored)
            try:
                self.assertEqual(request(again, "GET", "/v1/rules").data["ruleset"], first)
            finally:
                again.cleanup()
            missing = subprocess.run([ARGS.epcsd, "--data", os.path.join(server.data, "var"),
                                      "--restore-rules", "rs-0000000000000000", "--rules",
                                      restored], capture_output=True, text=True, timeout=60)
            self.assertEqual(missing.returncode, 1)
            self.assertIn("no stored ruleset rs-0000000000000000", missing.stderr)
        finally:
            server.cleanup()
            shutil.rmtree(rules)
            shutil.rmtree(restored)

    def test_editing_the_rules_directory_reloads(self):
        """No signal: a saved edit is picked up by the directory watch, a broken one refused."""
        rules = tempfile.mkdtemp(prefix="epcs-test-watch-")
        copy_rules(rules)
        server = Server(rules=rules)
        try:
            self.assertIn('"component":"watch","msg":"reloading %s when it changes"' % rules,
                          server.text())
            document = {"election": "na22", "area": "publication_ceremony",
                        "date": "2024-01-10",
                        "activity": {"kind": "publication_ceremony",
                                     "book_related_to_candidate": True}}
            before = check(server, document).data
            self.assertEqual(before["verdict"], "allowed")
            path = os.path.join(rules, "publication_ceremony.lua")
            with open(path) as f:
                source = f.read()
            # An amendment to D-91 that forgets the file's own tests (p15 says D-91 is allowed)
            # is refused, and the running rules keep answering.
            with open(path, "w") as f:
                f.write(source.replace("from = D(90)", "from = D(91)", 1))
            deadline = time.time() + 20
            while time.time() < deadline and "reload refused" not in server.text():
                time.sleep(0.1)
            self.assertIn("reload refused, the running ruleset stays: the rule tests of",
                          server.text())
            self.assertIn("publication_ceremony.lua: FAIL p15", server.text())
            self.assertEqual(check(server, document).data, before)
            # A consistent amendment (here: clearer wording) is taken up.
            with open(path, "w") as f:
                f.write(source.replace("whoever wrote it.", "whoever wrote the book.", 1))
            while time.time() < deadline and '"msg":"reloaded' not in server.text():
                time.sleep(0.1)
            inside = dict(document, date="2024-02-01")
            after = check(server, inside).data
            self.assertTrue(after["reason"].endswith("whoever wrote the book."), after)
            self.assertNotEqual(after["ruleset"], before["ruleset"])
            self.assertEqual(server.stop(), 0)
        finally:
            server.cleanup()
            shutil.rmtree(rules)

    def test_admin_reload_answers_what_happened(self):
        rules = tempfile.mkdtemp(prefix="epcs-test-admin-")
        copy_rules(rules)
        server = Server("--no-watch-rules", rules=rules)
        try:
            first = request(server, "GET", "/v1/rules").data["ruleset"]
            same = request(server, "POST", "/v1/admin/rules/reload", accept=JSON)
            self.assertEqual(same.status, 200)
            self.assertEqual(same.data, {"status": "unchanged", "ruleset": first,
                                         "previous": first, "milliseconds": 0.0})
            path = os.path.join(rules, "deepfake.lua")
            with open(path) as f:
                source = f.read()
            with open(path, "w") as f:
                f.write(source.replace("labeled or not.", "labeled or not, by anyone.", 1))
            changed = request(server, "POST", "/v1/admin/rules/reload", accept=MSGPACK)
            self.assertEqual(changed.status, 200)
            self.assertEqual((changed.data["status"], changed.data["previous"]),
                             ("activated", first))
            second = changed.data["ruleset"]
            self.assertNotEqual(second, first)
            self.assertGreater(changed.data["milliseconds"], 0)
            self.assertEqual(request(server, "GET", "/v1/rules").data["ruleset"], second)
            with open(path, "w") as f:
                f.write("\n\nreturn epcs.area{name = 'deepfake',\n")
            broken = request(server, "POST", "/v1/admin/rules/reload")
            self.assertEqual(broken.status, 422)
            self.assertEqual((broken.data["status"], broken.data["ruleset"],
                              broken.data["error"], broken.data["file"], broken.data["line"]),
                             ("refused", second, "rules_refused", "deepfake.lua", 4))
            self.assertIn("deepfake.lua:4:", broken.data["message"])
            # A consistent edit that breaks the file's own tests is refused with the failure.
            with open(path, "w") as f:
                f.write(source.replace("from = D(90)", "from = D(89)", 1))
            failing = request(server, "POST", "/v1/admin/rules/reload")
            self.assertEqual(failing.status, 422)
            self.assertRegex(failing.data["message"],
                             r"^the rule tests of rs-[0-9a-f]{16} fail: deepfake.lua: FAIL ")
            self.assertEqual(request(server, "GET", "/v1/rules").data["ruleset"], second)
            self.assertError(request(server, "GET", "/v1/admin/rules/reload"), 405,
                             "method_not_allowed")
            self.assertEqual(server.stop(), 0)
        finally:
            server.cleanup()
            shutil.rmtree(rules)

    def test_a_future_version_takes_over_on_its_date(self):
        """Loaded ahead of time, a version effective later decides from that day, no reload."""
        rules = tempfile.mkdtemp(prefix="epcs-test-future-")
        copy_rules(rules)
        path = os.path.join(rules, "deepfake.lua")
        with open(path) as f:
            source = f.read()
        amended = source.replace("    },\n    tests = {", "        {id = 'deepfake/82-8/2027-06-01', "
                                 "effective_from = '2027-06-01', window = campaign_window, "
                                 "evaluate = evaluate},\n    },\n    tests = {", 1)
        self.assertNotEqual(amended, source)
        with open(path, "w") as f:
            f.write(amended)
        server = Server("--no-watch-rules", rules=rules)
        try:
            versions = {a["name"]: a["versions"] for a in
                        request(server, "GET", "/v1/rules").data["areas"]}
            self.assertEqual([v["id"] for v in versions["deepfake"]],
                             ["deepfake/82-8/2024-01-29", "deepfake/82-8/2027-06-01"])
            document = {"election": "na23", "area": "deepfake",
                        "activity": {"kind": "post", "deepfake": True, "purpose": "campaign",
                                     "labeled": True}}
            for date, rule in (("2027-05-31", "deepfake/82-8/2024-01-29"),
                               ("2027-06-01", "deepfake/82-8/2027-06-01")):
                verdict = check(server, dict(document, date=date)).data
                self.assertEqual((verdict["rule"], verdict["verdict"]), (rule, "allowed"))
            self.assertEqual(server.text().count('"msg":"reloaded'), 0)
            self.assertEqual(server.stop(), 0)
        finally:
            server.cleanup()
            shutil.rmtree(rules)

    def test_sigint_on_idle_server(self):
        server = Server()
        try:
            server.process.send_signal(signal.SIGINT)
            self.assertEqual(server.process.wait(30), 0)
        finally:
            server.cleanup()

    def refused_start(self, *extra, rules=None, status=1, plugins=None):
        server = Server(*extra, rules=rules, expect_start=False, plugins=plugins)
        try:
            self.assertEqual(server.process.wait(30), status)
            return server.text()
        finally:
            server.cleanup()

    def test_refuses_to_start_without_plugins_or_rules(self):
        empty = tempfile.mkdtemp(prefix="epcs-test-empty-")
        try:
            log = self.refused_start("--plugins", empty)
            self.assertIn("no usable plugin in " + empty, log)
            log = self.refused_start(rules=empty)
            self.assertIn("refusing to start: %s fails (%s/elections.lua: cannot read: No such "
                          "file or directory) and no ruleset was ever activated" % (empty, empty),
                          log)
            copy_rules(empty)
            with open(os.path.join(empty, "deepfake.lua"), "w") as f:
                f.write("return epcs.area{name = 'deepfake',\n  article = '82-8'\n")
            log = self.refused_start(rules=empty)
            self.assertRegex(log, r"refusing to start: .* fails \(deepfake.lua:\d+: '\}' expected")
        finally:
            shutil.rmtree(empty)

    def test_rule_tests_command(self):
        """--test-rules passes on the bundled rules and catches amendments that break them."""
        bundled = subprocess.run([ARGS.epcsd, "--plugins", ARGS.plugins, "--test-rules",
                                  ARGS.rules], capture_output=True, text=True, timeout=60)
        self.assertEqual(bundled.returncode, 0, bundled.stdout + bundled.stderr)
        self.assertRegex(bundled.stdout, r"deepfake\.lua: \d+ tests \(13 from the tests "
                                         r"table, 18 generated: boundary probes, "
                                         r"coverage\): \d+ passed, 0 failed")
        self.assertRegex(bundled.stdout.splitlines()[-1],
                         r"^ruleset rs-[0-9a-f]{16}: \d+ passed, 0 failed$")
        amended = tempfile.mkdtemp(prefix="epcs-test-amended-")
        try:
            copy_rules(amended)
            with open(os.path.join(ARGS.rules, "deepfake.lua")) as f:
                source = f.read()
            # A window one day short: the hand-written D-90 tests notice.
            with open(os.path.join(amended, "deepfake.lua"), "w") as f:
                f.write(source.replace("from = D(90)", "from = D(89)", 1))
            short = subprocess.run([ARGS.epcsd, "--plugins", ARGS.plugins, "--test-rules",
                                    amended], capture_output=True, text=True, timeout=60)
            self.assertEqual(short.returncode, 1)
            self.assertIn("deepfake.lua: FAIL p07: D-90 of 2026-06-03: verdict is \"allowed\", "
                          "expected \"prohibited\"", short.stdout)
            # A rule that forgets the window altogether: the generated probes notice.
            with open(os.path.join(amended, "deepfake.lua"), "w") as f:
                f.write(source.replace("if q.date >= from and q.date <= to then",
                                       "if false then", 1))
            blind = subprocess.run([ARGS.epcsd, "--plugins", ARGS.plugins, "--test-rules",
                                    amended], capture_output=True, text=True, timeout=60)
            self.assertEqual(blind.returncode, 1)
            self.assertIn("deepfake.lua: FAIL probe deepfake/82-8/2024-01-29, local9 2026-03-05 "
                          "(first day of the window): verdict is \"allowed\", expected "
                          "\"prohibited\"", blind.stdout)
            # epcsd refuses to serve rules whose own tests fail.
            log = self.refused_start(rules=amended)
            self.assertRegex(log, r"refusing to start: \S+ fails \(the rule tests of rs-[0-9a-f]{16} "
                                  r"fail: deepfake.lua: FAIL ")
        finally:
            shutil.rmtree(amended)

    def test_impact_of_an_amendment(self):
        """Art. 93(1) from D-180 to D-120: exactly the checks between D-180 and D-121 flip."""
        before = tempfile.mkdtemp(prefix="epcs-test-impact-")
        try:
            copy_rules(before)
            path = os.path.join(before, "advertising.lua")
            with open(path) as f:
                source = f.read()
            # The rules as they stood before the amendment: D-180 throughout.
            self.assertIn("days = 120,", source)
            with open(path, "w") as f:
                f.write(source.replace("days = 120,", "days = 180,"))
            ad = {"kind": "advertisement", "medium": "outdoor", "shows_name": "party"}
            checks = [
                {"election": "na22", "area": "advertising", "date": "2023-10-20", "activity": ad},
                {"election": "na22", "date": "2023-12-01", "activity": ad},
                {"election": "na22", "area": "advertising", "date": "2023-12-20", "activity": ad},
                {"election": "na22", "area": "advertising", "date": "2024-02-10", "activity": ad},
                {"election": "pres20", "area": "advertising", "date": "2021-10-10",
                 "activity": ad},
                {"election": "na22", "area": "deepfake", "date": "2024-02-10",
                 "activity": {"kind": "post", "deepfake": True, "purpose": "campaign"}},
                {"election": "na99", "area": "advertising", "activity": ad},
            ]
            for kind in (JSON, MSGPACK):
                with tempfile.NamedTemporaryFile(suffix=".checks") as file:
                    file.write(encode({"checks": checks}, kind))
                    file.flush()
                    result = subprocess.run(
                        [ARGS.epcsd, "--plugins", ARGS.plugins, "--rules", before, "--impact",
                         ARGS.rules, "--checks", file.name],
                        capture_output=True, text=True, timeout=60)
                self.assertEqual(result.returncode, 0, result.stderr)
                report = json.loads(result.stdout)
                self.assertEqual((report["checks"], report["changed"]), (7, 2))
                self.assertEqual(report["changed_by_area"], {"advertising": 1,
                                                             "(all areas)": 1})
                self.assertEqual([c["index"] for c in report["changes"]], [0, 1])
                first = report["changes"][0]
                self.assertEqual((first["before"]["verdict"], first["before"]["article"]),
                                 ("prohibited", "93(1)"))
                self.assertEqual((first["after"]["verdict"], first["after"]["article"]),
                                 ("allowed", "93"))
                self.assertEqual(first["check"], checks[0])
                self.assertEqual((report["changes"][1]["before"]["verdict"],
                                  report["changes"][1]["after"]["verdict"]),
                                 ("prohibited", "allowed"))
            # The same over HTTP, from the running (amended) rules back to the old ones.
            server = Server()
            try:
                for kind in (JSON, MSGPACK):
                    response = request(server, "POST", "/v1/admin/rules/impact",
                                       encode({"candidate": before, "checks": checks}, kind),
                                       kind)
                    self.assertEqual(response.status, 200, response.raw)
                    report = response.data
                    self.assertEqual((report["checks"], report["changed"]), (7, 2))
                    self.assertEqual([c["index"] for c in report["changes"]], [0, 1])
                    self.assertEqual((report["changes"][0]["before"]["article"],
                                      report["changes"][0]["after"]["article"]), ("93", "93(1)"))
                missing = request(server, "POST", "/v1/admin/rules/impact",
                                  encode({"candidate": "/nonexistent", "checks": []}, JSON), JSON)
                self.assertEqual((missing.status, missing.data["error"]),
                                 (422, "rules_refused"))
                self.assertIn("/nonexistent/elections.lua: cannot read", missing.data["message"])
                self.assertError(request(server, "POST", "/v1/admin/rules/impact",
                                         encode({"checks": []}, JSON), JSON), 400,
                                 "bad_request", "candidate")
            finally:
                self.assertEqual(server.stop(), 0)
                server.cleanup()
            bad = subprocess.run([ARGS.epcsd, "--plugins", ARGS.plugins, "--impact", before,
                                  "--checks", "/nonexistent.json"],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(bad.returncode, 1)
            self.assertIn("--checks /nonexistent.json: No such file or directory", bad.stderr)
        finally:
            shutil.rmtree(before)

    def test_bad_flags(self):
        for flags, message in [(("--threads", "zero"), "--threads must be a whole number"),
                               (("--tls-cert", "x.pem"), "--tls-cert and --tls-key go together"),
                               (("--bogus",), "unknown option '--bogus'"),
                               (("--listen", "nohostport"),
                                "--listen must be HOST:PORT or [IPV6]:PORT with a port from 0 to "
                                "65535, got 'nohostport'")]:
            result = subprocess.run([ARGS.epcsd, "--plugins", ARGS.plugins, "--rules",
                                     ARGS.rules, "--data", tempfile.gettempdir() + "/epcs-x"]
                                    + list(flags), capture_output=True, text=True, timeout=30)
            self.assertNotEqual(result.returncode, 0, flags)
            self.assertIn(message, result.stderr)

    def test_tls_alpn_h2(self):
        scratch = tempfile.mkdtemp(prefix="epcs-test-tls-")
        cert, key = os.path.join(scratch, "cert.pem"), os.path.join(scratch, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "2", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        server = Server(tls=(cert, key))
        try:
            self.assertIn("listening on https://127.0.0.1:", server.text())
            response = check(server, {"election": "na22", "area": "deepfake",
                                      "date": "2024-01-29",
                                      "activity": {"kind": "post", "deepfake": True,
                                                   "purpose": "campaign"}})
            self.assertEqual(response.version, "2")
            self.assertEqual((response.data["verdict"], response.data["article"]),
                             ("prohibited", "82-8(1)"))
            old = subprocess.run(["curl", "-sS", "-k", "--tls-max", "1.1", "--tlsv1.0",
                                  server.url("/healthz")], capture_output=True)
            self.assertNotEqual(old.returncode, 0, "TLS 1.1 was accepted")
            self.assertEqual(server.stop(), 0)
        finally:
            server.cleanup()
            shutil.rmtree(scratch)


def run_suite(cases_required=True, cases_must_exist=False):
    """Reads the command line every integration suite shares into ARGS, then runs the tests of
    the suite started as a script (unittest's `__main__`) with the rest of it."""
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--epcsd", required=True)
    parser.add_argument("--plugins", required=True)
    parser.add_argument("--rules", required=True)
    parser.add_argument("--cases", required=cases_required)
    ARGS, rest = parser.parse_known_args()
    if cases_must_exist and not os.path.exists(ARGS.cases):
        sys.exit("the shared legal test cases are missing: " + ARGS.cases)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    run_suite(cases_must_exist=True)
