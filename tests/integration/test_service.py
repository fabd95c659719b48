#!/usr/bin/python3
"""Integration tests of what a compliance service owes its users: the decision log, API keys
and roles, rate limits, metrics, readiness and JSON logs, on the real epcsd over HTTP/2.

Shares the harness of test_api.py. Run through ctest, or directly:
    tests/integration/test_service.py --epcsd build/epcsd --plugins build/plugins \
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
from test_api import (JSON, MSGPACK, EpcsTest, Server, ServerTest, check, encode,  # noqa: E402
                      request)

DEEPFAKE_IN_WINDOW = {
    "election": "na22", "area": "deepfake", "date": "2024-02-15", "actor": {"kind": "voter"},
    "activity": {"kind": "post", "deepfake": True, "purpose": "campaign", "labeled": True}}
DEEPFAKE_BEFORE_WINDOW = dict(DEEPFAKE_IN_WINDOW, date="2023-12-01")


def bearer(token):
    return ("-H", "authorization: Bearer " + token)


def create_key(keys, partner, role, rate=None):
    command = [test_api.ARGS.epcsd, "keys", "create", "--keys", keys, "--partner", partner,
               "--role", role]
    if rate is not None:
        command += ["--rate", str(rate)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True)
    token = result.stdout.strip()
    assert re.fullmatch(r"epcs_[0-9a-f]{16}_[0-9a-f]{64}", token), result.stdout
    return token


def key_id(token):
    return token[5:21]


def wait_for(predicate, message, timeout=10):
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(message)
        time.sleep(0.05)


class AccessControlTest(EpcsTest):
    """Keys from the keys file, hashed; partner, staff and admin roles; 401 and 403."""

    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.mkdtemp(prefix="epcs-test-keys-")
        cls.keys = os.path.join(cls.scratch, "keys")
        cls.partner = create_key(cls.keys, "naver", "partner")
        cls.staff = create_key(cls.keys, "nec", "staff")
        cls.admin = create_key(cls.keys, "nec-admin", "admin")
        cls.server = Server("--keys", cls.keys, auth=True)

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.scratch)
        assert status == 0, "epcsd exited with %d" % status

    def call(self, method, path, token=None, body=None, kind=JSON):
        return request(self.server, method, path, encode(body, kind) if body is not None else None,
                       kind if body is not None else None, extra=bearer(token) if token else ())

    def test_keys_file_keeps_hashes_only(self):
        with open(self.keys) as f:
            text = f.read()
        for token in (self.partner, self.staff, self.admin):
            self.assertIn(key_id(token), text)
            self.assertNotIn(token[22:], text)
        self.assertEqual(os.stat(self.keys).st_mode & 0o777, 0o600)

    def test_probes_need_no_key(self):
        self.assertEqual(self.call("GET", "/healthz").status, 200)
        ready = self.call("GET", "/readyz")
        self.assertEqual(ready.status, 200)
        # Anyone may ask: it tells whether keys are asked, not how many there are.
        self.assertEqual(ready.data["auth"], "keys")
        self.assertNotIn("keys", ready.data)

    def test_missing_or_wrong_key_is_401(self):
        missing = self.call("POST", "/v1/check", body=DEEPFAKE_IN_WINDOW)
        self.assertError(missing, 401, "unauthorized", "authorization",
                         "this route needs an API key: Authorization: Bearer <token>")
        self.assertIn('www-authenticate: bearer realm="epcs"', missing.headers)
        forged = self.partner[:-1] + ("0" if self.partner[-1] != "0" else "1")
        for token in (forged, "epcs_nothing", self.partner[:-1]):
            self.assertError(self.call("POST", "/v1/check", token, DEEPFAKE_IN_WINDOW), 401,
                             "unauthorized", "authorization",
                             "the API key is not valid: unknown, revoked or mistyped")
        basic = request(self.server, "GET", "/v1/areas", extra=("-H", "authorization: Basic eA=="))
        self.assertError(basic, 401, "unauthorized", "authorization",
                         "the Authorization header must be Bearer <token>")

    def test_each_role_reaches_its_routes(self):
        partner_routes = [("POST", "/v1/check", DEEPFAKE_IN_WINDOW), ("GET", "/v1/areas", None),
                          ("GET", "/v1/elections", None), ("GET", "/v1/elections/na22", None),
                          ("GET", "/v1/elections/na22/calendar", None),
                          ("GET", "/v1/rules", None), ("GET", "/v1/rules/versions", None),
                          ("POST", "/v1/check/batch", {"checks": [DEEPFAKE_IN_WINDOW]})]
        staff_routes = [("GET", "/metrics", None), ("GET", "/v1/decisions", None),
                        ("POST", "/v1/admin/rules/reload", None)]
        admin_routes = [("GET", "/v1/admin/keys", None)]
        allowed = {"partner": partner_routes, "staff": partner_routes + staff_routes,
                   "admin": partner_routes + staff_routes + admin_routes}
        tokens = {"partner": self.partner, "staff": self.staff, "admin": self.admin}
        for role, token in tokens.items():
            for method, path, body in partner_routes + staff_routes + admin_routes:
                with self.subTest(role=role, path=path):
                    response = self.call(method, path, token, body)
                    if (method, path, body) in allowed[role]:
                        self.assertEqual(response.status, 200, response.raw)
                    else:
                        needed = "admin" if path.startswith("/v1/admin/keys") else "staff"
                        self.assertError(response, 403, "forbidden", None,
                                         "key %s of partner %s has the role %s; %s needs %s"
                                         % (key_id(token), {"partner": "naver", "staff": "nec"}
                                            [role], role, path, needed))

    def test_decisions_name_the_partner(self):
        answer = self.call("POST", "/v1/check", self.partner, DEEPFAKE_IN_WINDOW)
        self.assertEqual(answer.status, 200)
        decision = answer.decisions[0]

        def logged():
            return self.call("GET", "/v1/decisions/%d" % decision, self.staff).status == 200
        wait_for(logged, "decision %d never reached the log" % decision)
        record = self.call("GET", "/v1/decisions/%d" % decision, self.staff).data
        self.assertEqual(record["partner"], "naver")
        self.assertEqual(record["answer"], answer.document)

    def test_admin_creates_and_revokes_keys(self):
        created = self.call("POST", "/v1/admin/keys", self.admin,
                            {"partner": "kakao", "role": "partner", "rate": 50})
        self.assertEqual(created.status, 201, created.raw)
        key = created.data
        self.assertEqual((key["partner"], key["role"], key["rate"]), ("kakao", "partner", 50))
        self.assertEqual(key_id(key["token"]), key["id"])
        self.assertEqual(self.call("POST", "/v1/check", key["token"], DEEPFAKE_IN_WINDOW).status,
                         200)
        listed = self.call("GET", "/v1/admin/keys", self.admin).data["keys"]
        self.assertIn({"id": key["id"], "partner": "kakao", "role": "partner", "rate": 50,
                       "created": key["created"]}, listed)
        self.assertNotIn("token", json.dumps(listed))
        self.assertError(self.call("POST", "/v1/admin/keys", self.admin,
                                   {"partner": "kakao", "role": "root"}),
                         400, "bad_request", "role", "role must be partner, staff or admin")
        self.assertError(self.call("POST", "/v1/admin/keys", self.admin, {"role": "partner"}),
                         400, "bad_request", "partner", "partner is required")
        revoked = self.call("DELETE", "/v1/admin/keys/" + key["id"], self.admin)
        self.assertEqual(revoked.data, {"revoked": key["id"]})
        self.assertEqual(self.call("POST", "/v1/check", key["token"], DEEPFAKE_IN_WINDOW).status,
                         401)
        self.assertError(self.call("DELETE", "/v1/admin/keys/" + key["id"], self.admin), 404,
                         "unknown_key", "id", "no key " + key["id"])

    def test_command_line_revocation_takes_effect_while_running(self):
        token = create_key(self.keys, "google", "partner")

        def status():
            return self.call("GET", "/v1/areas", token).status
        wait_for(lambda: status() == 200, "a key added by epcsd keys create was not picked up")
        listed = subprocess.run([test_api.ARGS.epcsd, "keys", "list", "--keys", self.keys],
                                capture_output=True, text=True, check=True).stdout
        self.assertRegex(listed, r"%s\s+google\s+partner\s+default" % key_id(token))
        subprocess.run([test_api.ARGS.epcsd, "keys", "revoke", key_id(token), "--keys",
                        self.keys], check=True, capture_output=True)
        wait_for(lambda: status() == 401, "a revoked key still works")
        again = subprocess.run([test_api.ARGS.epcsd, "keys", "revoke", key_id(token), "--keys",
                                self.keys], capture_output=True, text=True)
        self.assertEqual(again.returncode, 1)
        self.assertIn("no key %s in %s" % (key_id(token), self.keys), again.stderr)


class StartupRefusalTest(EpcsTest):
    """Keys are not optional off this machine, and a broken keys file is named."""

    def test_no_auth_only_on_loopback(self):
        server = Server("--listen", "0.0.0.0:0", expect_start=False)
        try:
            self.assertEqual(server.process.wait(30), 1)
            self.assertIn("--listen 0.0.0.0:0 is not a loopback address: --no-auth (no API keys) "
                          "is for development on this machine only", server.text())
        finally:
            server.cleanup()

    def test_malformed_keys_file(self):
        scratch = tempfile.mkdtemp(prefix="epcs-test-keys-")
        keys = os.path.join(scratch, "keys")
        with open(keys, "w") as f:
            f.write("# keys\n0123456789abcdef naver superuser %s 0 2026-01-01T00:00:00Z\n"
                    % ("0" * 64))
        server = Server("--keys", keys, auth=True, expect_start=False)
        try:
            self.assertEqual(server.process.wait(30), 1)
            self.assertIn("%s:2: role 'superuser' must be partner, staff or admin" % keys,
                          server.text())
        finally:
            server.cleanup()
            shutil.rmtree(scratch)

    def test_flags(self):
        for flags, message in [(("--no-auth", "--keys", "k"), "--no-auth asks for no keys"),
                               (("--audit", "later"), "--audit must be async, sync or off"),
                               (("--max-streams", "0"), "--max-streams must be a whole number"),
                               (("--rate-limit", "-1"), "--rate-limit must be a whole number")]:
            result = subprocess.run([test_api.ARGS.epcsd] + list(flags), capture_output=True,
                                    text=True, timeout=30)
            self.assertEqual(result.returncode, 2, flags)
            self.assertIn(message, result.stderr)
        result = subprocess.run([test_api.ARGS.epcsd, "keys", "create", "--partner", "x"],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 2)
        self.assertIn("--partner and --role are required", result.stderr)


class LimitsTest(EpcsTest):
    """Per-key rate limits: a batch costs one per check."""

    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.mkdtemp(prefix="epcs-test-keys-")
        cls.keys = os.path.join(cls.scratch, "keys")
        cls.slow = create_key(cls.keys, "slow", "partner")
        cls.fast = create_key(cls.keys, "fast", "partner", rate=1000)
        cls.server = Server("--keys", cls.keys, "--rate-limit", "1", auth=True)

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.scratch)
        assert status == 0, "epcsd exited with %d" % status

    def test_rate_limit_per_key(self):
        # One a second holds a burst of two.
        def areas(token):
            return request(self.server, "GET", "/v1/areas", extra=bearer(token))
        self.assertEqual([areas(self.slow).status for _ in range(2)], [200, 200])
        limited = areas(self.slow)
        self.assertError(limited, 429, "rate_limited", None,
                         "key %s of partner slow is limited to 1 requests a second (a batch "
                         "counts its checks); retry after 1 s" % key_id(self.slow))
        self.assertIn("retry-after: 1\r\n", limited.headers)
        # The other key has its own bucket and its own rate.
        self.assertEqual({areas(self.fast).status for _ in range(10)}, {200})
        time.sleep(2.2)
        # A batch of more checks than the burst holds is taken once the bucket is full, and
        # paid off before the key's next request: one a second on average all the same.
        batch_sent = time.monotonic()
        batch = request(self.server, "POST", "/v1/check/batch",
                        encode({"checks": [DEEPFAKE_IN_WINDOW] * 5}, MSGPACK), MSGPACK,
                        extra=bearer(self.slow))
        self.assertEqual(batch.status, 200, batch.raw)
        self.assertEqual(len(batch.data["results"]), 5)
        limited = areas(self.slow)
        self.assertError(limited, 429, "rate_limited", None,
                         "key %s of partner slow is limited to 1 requests a second (a batch "
                         "counts its checks); retry after 4 s" % key_id(self.slow))
        self.assertIn("retry-after: 4\r\n", limited.headers)
        # Not yet full: a big batch is told when it will be. The debt of 3 is paid 4 s after
        # the first batch and the bucket full 5 s after it; halfway, timed from the sending of
        # each (not from the answers and the request between), a slow client start shifts
        # neither out of that second.
        time.sleep(max(0.0, batch_sent + 4.5 - time.monotonic()))
        batch = request(self.server, "POST", "/v1/check/batch",
                        encode({"checks": [DEEPFAKE_IN_WINDOW] * 5}, MSGPACK), MSGPACK,
                        extra=bearer(self.slow))
        self.assertEqual(batch.status, 429, batch.raw)
        self.assertIn("retry-after: 1\r\n", batch.headers)
        time.sleep(1.2)
        batch = request(self.server, "POST", "/v1/check/batch",
                        encode({"checks": [DEEPFAKE_IN_WINDOW] * 2}, MSGPACK), MSGPACK,
                        extra=bearer(self.slow))
        self.assertEqual(batch.status, 200, batch.raw)


class DecisionLogTest(EpcsTest):
    """Every check is on record; staff list, filter, show and replay decisions."""

    @classmethod
    def setUpClass(cls):
        cls.rules = tempfile.mkdtemp(prefix="epcs-test-rules-")
        shutil.rmtree(cls.rules)
        shutil.copytree(test_api.ARGS.rules, cls.rules)
        cls.server = Server("--no-watch-rules", rules=cls.rules)

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.rules)
        assert status == 0, "epcsd exited with %d" % status

    def logged(self, decision):
        return request(self.server, "GET", "/v1/decisions/%d" % decision)

    def test_impact_on_recent_logged_checks(self):
        """Staff ask what an amendment would change on the latest checks partners made."""
        candidate = tempfile.mkdtemp(prefix="epcs-test-impact-")
        shutil.rmtree(candidate)
        shutil.copytree(test_api.ARGS.rules, candidate)
        try:
            path = os.path.join(candidate, "advertising.lua")
            with open(path) as f:
                source = f.read()
            with open(path, "w") as f:
                f.write(source.replace("days = 120,", "days = 180,"))
            ad = {"kind": "advertisement", "medium": "outdoor", "shows_name": "party"}
            checks = [
                {"election": "na22", "area": "advertising", "date": "2023-12-20", "activity": ad},
                {"election": "na22", "area": "advertising", "date": "2023-10-20", "activity": ad},
                DEEPFAKE_IN_WINDOW]
            ids = [check(self.server, c).decisions[0] for c in checks]
            wait_for(lambda: self.logged(ids[-1]).status == 200, "the checks were not logged")
            response = request(self.server, "POST", "/v1/admin/rules/impact",
                               encode({"candidate": candidate, "recent": 3}, JSON), JSON)
            self.assertEqual(response.status, 200, response.raw)
            report = response.data
            self.assertEqual((report["checks"], report["changed"]), (3, 1))
            self.assertEqual(report["changed_by_area"], {"advertising": 1})
            change = report["changes"][0]
            self.assertEqual((change["index"], change["check"]), (1, checks[1]))
            self.assertEqual((change["before"]["verdict"], change["after"]["verdict"]),
                             ("allowed", "prohibited"))
            both = request(self.server, "POST", "/v1/admin/rules/impact",
                           encode({"candidate": candidate, "recent": 3, "checks": []}, JSON), JSON)
            self.assertError(both, 400, "bad_request", "recent", "give checks or recent, not both")
        finally:
            shutil.rmtree(candidate)

    def test_list_filter_show_and_replay(self):
        before = check(self.server, DEEPFAKE_BEFORE_WINDOW, JSON)
        inside = check(self.server, DEEPFAKE_IN_WINDOW, MSGPACK)
        batch = request(self.server, "POST", "/v1/check/batch",
                        encode({"checks": [DEEPFAKE_IN_WINDOW, {"election": "nope"},
                                           DEEPFAKE_BEFORE_WINDOW]}, JSON), JSON)
        ids = before.decisions + inside.decisions + batch.decisions
        self.assertEqual(len(ids), 4)
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(batch.data["results"][1]["error"], "unknown_election")
        wait_for(lambda: self.logged(ids[-1]).status == 200, "the decisions were not written")

        shown = self.logged(inside.decisions[0]).data
        self.assertEqual(shown["answer"], inside.document)
        self.assertEqual(shown["request"], DEEPFAKE_IN_WINDOW)
        self.assertEqual({k: shown[k] for k in ("partner", "election", "date", "area", "verdict",
                                                "article", "ruleset")},
                         {"partner": "local", "election": "na22", "date": "2024-02-15",
                          "area": "deepfake", "verdict": "prohibited", "article": "82-8(1)",
                          "ruleset": inside.data["ruleset"]})
        self.assertRegex(shown["at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")

        def listed(query):
            response = request(self.server, "GET", "/v1/decisions?" + query)
            self.assertEqual(response.status, 200, response.raw)
            return response.data

        after = "after=%d" % (ids[0] - 1)
        prohibited = listed(after + "&area=deepfake&verdict=prohibited")
        self.assertEqual([d["id"] for d in prohibited["decisions"]], [ids[1], ids[2]])
        self.assertIsNone(prohibited["next"])
        page = listed(after + "&limit=3")
        self.assertEqual([d["id"] for d in page["decisions"]], ids[:3])
        self.assertEqual(page["next"], ids[2])
        self.assertEqual([d["id"] for d in listed("after=%d" % page["next"])["decisions"]],
                         [ids[3]])
        self.assertEqual(listed(after + "&from=2100-01-01")["decisions"], [])
        today = time.strftime("%Y-%m-%d", time.gmtime())
        self.assertEqual(len(listed(after + "&from=%s&partner=local&election=na22" % today)
                             ["decisions"]), 4)
        self.assertEqual(listed(after + "&partner=naver")["decisions"], [])
        for query, field, message in [
                ("verdict=maybe", "verdict", "verdict must be allowed, prohibited or needs_facts"),
                ("from=yesterday", "from", "from must be YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)"),
                ("limit=5000", "limit", "limit must be a whole number from 1 to 1000"),
                ("colour=red", "colour", "unknown filter 'colour': from, to, partner, area, "
                                         "verdict, election, after, limit"),
                ("from=2024-01-02&to=2024-01-01", "to", "to must come after from")]:
            self.assertError(request(self.server, "GET", "/v1/decisions?" + query), 400,
                             "bad_request", field, message)
        self.assertError(self.logged(1), 404, "unknown_decision", "id", "no decision 1 in the log")

        # An amendment is activated; a decision made before it replays under its own version.
        old_ruleset = inside.data["ruleset"]
        path = os.path.join(self.rules, "deepfake.lua")
        with open(path) as f:
            source = f.read()
        with open(path, "w") as f:
            f.write(source.replace("labeled or not.", "labeled or not, as amended."))
        reload = request(self.server, "POST", "/v1/admin/rules/reload")
        self.assertEqual(reload.data["status"], "activated", reload.raw)
        self.assertNotEqual(check(self.server, DEEPFAKE_IN_WINDOW).data["ruleset"], old_ruleset)
        replay = request(self.server, "POST", "/v1/decisions/%d/replay" % inside.decisions[0])
        self.assertEqual(replay.status, 200, replay.raw)
        self.assertEqual(replay.data["ruleset"], old_ruleset)
        self.assertTrue(replay.data["same"])
        self.assertEqual(replay.data["replayed"], inside.data)
        self.assertEqual(replay.data["logged"], shown)
        self.assertEqual(request(self.server, "GET", "/v1/decisions/%d/replay" % ids[0]).status,
                         405)


class SyncAuditTest(EpcsTest):
    """--audit sync: whatever was answered is on disk, even if epcsd is killed mid-load."""

    def test_every_answered_decision_survives_sigkill(self):
        data = tempfile.mkdtemp(prefix="epcs-test-audit-")
        server = Server("--audit", "sync", "--data", data)
        answered, failures, stop = [], [], threading.Event()
        body = encode(DEEPFAKE_IN_WINDOW, JSON)

        def client():
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                while not stop.is_set():
                    connection.request("POST", "/v1/check", body,
                                       {"content-type": JSON})
                    response = connection.getresponse()
                    document = json.loads(response.read())
                    if response.status == 200:
                        answered.append(document["decision"])
                    else:
                        failures.append(document)
            except (OSError, http.client.HTTPException, ValueError):
                pass  # the server was killed under us: what it answered before is what counts

        try:
            threads = [threading.Thread(target=client) for _ in range(8)]
            for thread in threads:
                thread.start()
            time.sleep(1.5)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(30)
            stop.set()
            for thread in threads:
                thread.join(30)
            self.assertEqual(failures, [])
            self.assertGreater(len(answered), 50, "too little load to prove anything")
            restarted = Server("--audit", "sync", "--data", data)
            try:
                stored, query = set(), "/v1/decisions?limit=1000"
                while True:
                    listed = request(restarted, "GET", query).data
                    stored.update(d["id"] for d in listed["decisions"])
                    if listed["next"] is None:
                        break
                    query = "/v1/decisions?limit=1000&after=%d" % listed["next"]
                missing = set(answered) - stored
                self.assertEqual(missing, set(), "answered but not in the log")
                sample = request(restarted, "GET", "/v1/decisions/%d" % answered[-1])
                self.assertEqual(sample.data["verdict"], "prohibited")
            finally:
                self.assertEqual(restarted.stop(), 0)
                restarted.cleanup()
        finally:
            server.cleanup()
            shutil.rmtree(data)


    def test_streams_of_one_connection_wait_their_turn(self):
        """--max-streams 3: of 8 streams on one connection, 3 are in progress (their answers
        held for a commit the test blocks), the other 5 wait in h2o, and all 8 then succeed."""
        data = tempfile.mkdtemp(prefix="epcs-test-audit-")
        server = Server("--audit", "sync", "--max-streams", "3", "--data", data)
        body = os.path.join(data, "check.json")
        with open(body, "wb") as f:
            f.write(encode(DEEPFAKE_IN_WINDOW, JSON))

        def held():
            text = request(server, "GET", "/metrics").raw.decode()
            return int(re.search(r"^epcs_held_answers (\d+)$", text, re.M).group(1))
        blocker = sqlite3.connect(os.path.join(data, "decisions.db"), isolation_level=None)
        try:
            # The writer waits for this lock (up to 5 s) while answers are held.
            blocker.execute("BEGIN IMMEDIATE")
            load = subprocess.Popen(["h2load", "-n", "8", "-c", "1", "-m", "8", "-d", body,
                                     "-H", "content-type: application/json",
                                     server.url("/v1/check")], stdout=subprocess.PIPE, text=True)
            wait_for(lambda: held() == 3, "three answers should be held", timeout=3)
            time.sleep(0.3)
            self.assertEqual(held(), 3)
            blocker.execute("COMMIT")
            output = load.communicate(timeout=30)[0]
            self.assertIn("8 succeeded, 0 failed, 0 errored", output)
            self.assertEqual(held(), 0)
        finally:
            blocker.close()
            self.assertEqual(server.stop(), 0)
            server.cleanup()
            shutil.rmtree(data)


class VerdictCacheTest(EpcsTest):
    """A remembered verdict is the verdict: with the cache on, first and repeated answers to
    every public case equal those of a server that remembers nothing."""

    def test_cached_answers_equal_fresh_ones(self):
        cached, fresh = Server(), Server("--verdict-cache", "0")
        try:
            documents = [case["document"] for case in test_api.load_cases(test_api.ARGS.cases)]
            documents.append(dict(DEEPFAKE_IN_WINDOW, area=None))
            documents[-1].pop("area")
            for document in documents:
                with self.subTest(document=document):
                    expected = check(fresh, document).data
                    self.assertEqual(check(cached, document).data, expected)
                    self.assertEqual(check(cached, document, JSON).data, expected)
        finally:
            statuses = [server.stop() for server in (cached, fresh)]
            for server in (cached, fresh):
                server.cleanup()
            self.assertEqual(statuses, [0, 0])


class ObservabilityTest(ServerTest):
    """GET /metrics in Prometheus text, GET /readyz, and JSON lines on stderr."""

    def metrics(self):
        response = request(self.server, "GET", "/metrics")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.content_type, "text/plain; version=0.0.4; charset=utf-8")
        samples = {}
        for line in response.raw.decode().splitlines():
            if line.startswith("#"):
                self.assertRegex(line, r"^# (HELP|TYPE) epcs_\w+ ")
                continue
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
        return samples

    def test_metrics_count_what_happened(self):
        before = self.metrics()
        for document in (DEEPFAKE_IN_WINDOW, DEEPFAKE_IN_WINDOW, DEEPFAKE_BEFORE_WINDOW):
            self.assertEqual(check(self.server, document).status, 200)
        bad = dict(DEEPFAKE_IN_WINDOW, activity={"kind": "post", "deepfake": "yes"})
        self.assertEqual(check(self.server, bad).status, 422)
        after = self.metrics()
        counted = {
            'epcs_requests_total{route="check",status="200"}': 3,
            'epcs_requests_total{route="check",status="422"}': 1,
            'epcs_request_duration_seconds_count{route="check"}': 4,
            'epcs_request_duration_seconds_bucket{route="check",le="+Inf"}': 4,
            'epcs_verdicts_total{area="deepfake",verdict="prohibited"}': 2,
            'epcs_verdicts_total{area="deepfake",verdict="allowed"}': 1,
            'epcs_verdicts_total{area="advertising",verdict="prohibited"}': 0,
            'epcs_rule_reloads_total{outcome="refused"}': 0,
        }
        for name, delta in counted.items():
            self.assertEqual(after.get(name, 0) - before.get(name, 0), delta, name)
        ruleset = request(self.server, "GET", "/v1/rules").data["ruleset"]
        gauges = {
            'epcs_ruleset_info{ruleset="%s",label=""}' % ruleset: 1,
            'epcs_workers': 2,
            'epcs_held_answers': 0,
            'epcs_decision_log_queue_limit': 100000,
            'epcs_decision_log_failed': 0,
        }
        for name, value in gauges.items():
            self.assertEqual(after.get(name), value, name)
        self.assertIn("epcs_decision_log_queue_depth", after)
        buckets = [v for k, v in after.items()
                   if k.startswith('epcs_request_duration_seconds_bucket{route="check"')]
        self.assertEqual(buckets, sorted(buckets), "histogram buckets must be cumulative")

    def test_readyz(self):
        ruleset = request(self.server, "GET", "/v1/rules").data["ruleset"]
        response = request(self.server, "GET", "/readyz")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.data, {"ready": True, "ruleset": ruleset,
                                         "rules": "current", "decision_log": "async", "queued": 0,
                                         "store": "up", "auth": "off"})

    def test_logs_are_json_lines(self):
        check(self.server, DEEPFAKE_IN_WINDOW)
        wait_for(lambda: '"path":"/v1/check"' in self.server.text(), "no access line")
        lines = [json.loads(line) for line in self.server.text().splitlines()]
        for line in lines:
            self.assertRegex(line["ts"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertIn(line["level"], ("debug", "info", "warn", "error"))
            self.assertIsInstance(line["component"], str)
        access = [line for line in lines if line["component"] == "access"
                  and line["path"] == "/v1/check" and line["status"] == 200]
        self.assertTrue(access)
        self.assertEqual({k: access[-1][k] for k in ("level", "method", "partner", "protocol")},
                         {"level": "info", "method": "POST", "partner": "local",
                          "protocol": "HTTP/2"})
        self.assertIsInstance(access[-1]["duration_us"], int)
        self.assertGreater(access[-1]["bytes"], 0)


if __name__ == "__main__":
    test_api.run_suite()
