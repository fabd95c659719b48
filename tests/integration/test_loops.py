#!/usr/bin/python3
"""Integration tests that no event loop runs blocking work, on the real epcsd over HTTP/2 with
one worker (--threads 1), so that every request shares the loop of the checks that probe it:

- a route whose blocking part is held up (a stored file or a rule file replaced by a FIFO
  nobody writes yet, the decision log's page file likewise, the keys file's lock held by
  another process) leaves the loop answering checks, and answers as documented once it is let
  go;
- with 100,000 reports and 100,000 logged decisions, a check answers at p99 under 5 ms while
  100,000-row CSV exports, rule reloads, impact analyses of 1000 checks and partner-filtered
  decision listings run one after another, each kind alone and all four at once.

Shares the harness of test_api.py and the load helpers of test_cases_hardening.py. Run through
ctest, or directly:
    tests/integration/test_loops.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules --cases ../shared/cases/public.tsv
"""

import errno
import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, EpcsTest, Server, encode, request  # noqa: E402
from test_cases_hardening import (CHECK, EXPORT_PATH, PROBE_P99_US, PROBE_RATE,  # noqa: E402
                                  PROBE_SECONDS, SEEDED, fetch, finished, h2load, seed)
from test_service import bearer, create_key, wait_for  # noqa: E402

# How long a check on the worker may take while another request of it is held up: far more
# than a check needs on a loaded machine, far less than the hold.
LOOP_FREE_SECONDS = 5
# Time for a request sent in the background to reach what holds it up.
REACH_SECONDS = 1.0
# Four loads at once fill both cores of the test machine, which other work shares: more
# chances than test_cases_hardening.py's single load gets.
ATTEMPTS = 8
# Under ThreadSanitizer a 100,000-row export beside three other loads takes longer than the
# probe's window: the loads then run this much longer, so that one finishes and is counted.
TSAN_EXPORT_EXTRA_SECONDS = 40

AD = {"kind": "advertisement", "medium": "outdoor", "shows_name": "party"}
# Under the amendment (Art. 93(1) back to D-180) only the second of these changes.
IMPACT_CHECKS = [
    {"election": "na22", "area": "advertising", "date": "2023-12-20", "activity": AD},
    {"election": "na22", "area": "advertising", "date": "2023-10-20", "activity": AD},
    CHECK]
# A partner-filtered listing that no page can skip: every page holds deepfake decisions and
# allowed ones, none both, so each of the 100,000 is decoded and none is listed.
FILTERED_LISTING = "/v1/decisions?partner=local&area=deepfake&verdict=allowed&limit=1000"


def copy_rules(prefix):
    directory = tempfile.mkdtemp(prefix=prefix)
    shutil.rmtree(directory)
    shutil.copytree(test_api.ARGS.rules, directory)
    return directory


def amend_advertising(directory):
    """Art. 93(1)'s window as before the 2023-08-30 amendment: D-180 instead of D-120."""
    path = os.path.join(directory, "advertising.lua")
    with open(path) as f:
        source = f.read()
    amended = source.replace("days = 120,", "days = 180,")
    assert amended != source
    return amended


class Pending:
    """One request sent with curl in the background, answered later."""

    def __init__(self, server, method, path, body=None, extra=(), max_time=60):
        self.scratch = tempfile.mkdtemp(prefix="epcs-test-pending-")
        self.out = os.path.join(self.scratch, "body")
        command = ["curl", "-sS", "--max-time", str(max_time), "--http2-prior-knowledge", "-X",
                   method, "-o", self.out, "-w", "%{http_code}"]
        if body is not None:
            request_path = os.path.join(self.scratch, "request")
            with open(request_path, "wb") as f:
                f.write(encode(body, JSON))
            command += ["-H", "content-type: " + JSON, "--data-binary", "@" + request_path]
        command += list(extra)
        command.append(server.url(path))
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)

    def answer(self):
        """(status, body bytes) once it is answered; curl must not fail."""
        try:
            out, err = self.process.communicate(timeout=60)
            if self.process.returncode != 0:
                raise AssertionError("curl failed (%d): %s" % (self.process.returncode, err))
            with open(self.out, "rb") as f:
                return int(out), f.read()
        finally:
            shutil.rmtree(self.scratch)

    def gone(self):
        """curl's exit status once it has given up (28: its --max-time ran out)."""
        try:
            self.process.communicate(timeout=60)
            return self.process.returncode
        finally:
            shutil.rmtree(self.scratch)


class Stall:
    """`path` replaced by a FIFO: whoever opens it to read waits there until `release`."""

    def __init__(self, path):
        self.path = path
        self.kept = path + ".kept"
        with open(path, "rb") as f:
            self.content = f.read()
        os.rename(path, self.kept)
        os.mkfifo(path, 0o600)
        self.released = False

    def release(self, content=None):
        """Lets the reader waiting at the FIFO go with `content` (the file's own by default),
        after putting the file back, so that whatever opens it next reads the file itself.
        Fails when nobody has opened the FIFO within 10 s."""
        deadline = time.time() + 10
        while True:
            try:
                # Succeeds only while a reader waits in its open().
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO or time.time() > deadline:
                    raise AssertionError("nobody came to read %s" % self.path)
                time.sleep(0.02)
        os.replace(self.kept, self.path)
        self.released = True
        os.set_blocking(fd, True)
        data = memoryview(self.content if content is None else content)
        while data:
            data = data[os.write(fd, data):]
        os.close(fd)

    def cleanup(self):
        """After a failure: lets any waiting reader go (it reads nothing) and puts the file
        back, so that the server can stop."""
        if self.released:
            return
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        os.replace(self.kept, self.path)


class LoopFreeTest(EpcsTest):
    def assertLoopFree(self, server, pending, what, extra=()):
        """While `pending` is held up, a check on the same worker is answered at once and
        `pending` is still waiting."""
        time.sleep(REACH_SECONDS)
        started = time.monotonic()
        result = subprocess.run(
            ["curl", "-sS", "--max-time", str(LOOP_FREE_SECONDS), "--http2-prior-knowledge",
             "-o", "/dev/null", "-w", "%{http_code}", "-H", "content-type: " + JSON,
             "--data-binary", json.dumps(CHECK)] + list(extra) + [server.url("/v1/check")],
            capture_output=True, text=True)
        self.assertEqual(result.returncode, 0,
                         "a check was not answered within %d s while %s was held up: the "
                         "worker's loop waits with it (%s)"
                         % (LOOP_FREE_SECONDS, what, result.stderr.strip()))
        self.assertEqual(result.stdout, "200")
        self.assertIsNone(pending.process.poll(),
                          "%s was answered before it could read (after %.1f s)"
                          % (what, time.monotonic() - started))


class StalledRouteTest(LoopFreeTest):
    """Stored rules, reloads, impact, replay and decision reads held up at a file."""

    @classmethod
    def setUpClass(cls):
        cls.rules = copy_rules("epcs-test-loops-rules-")
        cls.server = Server("--threads", "1", "--no-watch-rules", "--case-sweep", "3600000",
                            rules=cls.rules)
        cls.var = os.path.join(cls.server.data, "var")

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.rules)
        assert status == 0, "epcsd exited with %d" % status

    def running(self):
        return request(self.server, "GET", "/v1/rules").data["ruleset"]

    def manifest(self, ruleset):
        with open(os.path.join(self.var, "rulesets", ruleset + ".json")) as f:
            return json.load(f)

    def blob(self, ruleset, name):
        sha = [f["sha256"] for f in self.manifest(ruleset)["files"] if f["name"] == name][0]
        return os.path.join(self.var, "rulesets", "blobs", sha)

    def held(self, path, method, route, body=None, content=None):
        """`route` sent while `path` is a FIFO, the loop seen free meanwhile, then let go with
        `content`: the route's (status, body)."""
        stall = Stall(path)
        try:
            pending = Pending(self.server, method, route, body)
            self.assertLoopFree(self.server, pending, "%s %s" % (method, route))
            stall.release(content)
            return pending.answer()
        finally:
            stall.cleanup()

    def test_stored_rule_file(self):
        ruleset = self.running()
        path = self.blob(ruleset, "deepfake.lua")
        with open(path, "rb") as f:
            text = f.read()
        status, body = self.held(path, "GET", "/v1/rules/%s/files/deepfake.lua" % ruleset)
        self.assertEqual((status, body), (200, text))

    def test_stored_manifest_and_diff(self):
        ruleset = self.running()
        path = os.path.join(self.var, "rulesets", ruleset + ".json")
        status, body = self.held(path, "GET", "/v1/rules/" + ruleset)
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), self.manifest(ruleset))
        status, body = self.held(path, "GET", "/v1/rules/%s/diff/%s" % (ruleset, ruleset))
        self.assertEqual(status, 200, body)
        names = [f["name"] for f in self.manifest(ruleset)["files"]]
        self.assertEqual(json.loads(body), {"from": ruleset, "to": ruleset, "added": [],
                                            "removed": [], "changed": [], "unchanged": names})
        # A damaged manifest read off the loop is still a 500 naming it.
        status, body = self.held(path, "GET", "/v1/rules/" + ruleset, content=b"{\"x\": 1}")
        self.assertEqual(status, 500, body)
        self.assertEqual(json.loads(body), {
            "error": "internal", "message": "the stored manifest of %s is damaged" % ruleset})

    def test_stored_versions(self):
        path = os.path.join(self.var, "rulesets", "activations.jsonl")
        status, body = self.held(path, "GET", "/v1/rules/versions")
        self.assertEqual(status, 200, body)
        listed = json.loads(body)
        self.assertEqual(listed["activations"][0]["by"], "start")
        self.assertIn(self.running(), [v["ruleset"] for v in listed["versions"]])

    def test_reload(self):
        ruleset = self.running()
        path = os.path.join(self.rules, "publication_ceremony.lua")
        status, body = self.held(path, "POST", "/v1/admin/rules/reload")
        self.assertEqual(status, 200, body)
        self.assertEqual(json.loads(body), {"status": "unchanged", "ruleset": ruleset,
                                            "previous": ruleset, "milliseconds": 0})
        # Refused: the running rules stay, and the answer names file and line.
        status, body = self.held(path, "POST", "/v1/admin/rules/reload", content=b"return {\n")
        self.assertEqual(status, 422, body)
        refused = json.loads(body)
        self.assertEqual({k: refused[k] for k in ("status", "ruleset", "error", "file", "line")},
                         {"status": "refused", "ruleset": ruleset, "error": "rules_refused",
                          "file": "publication_ceremony.lua", "line": 2})
        self.assertIn("publication_ceremony.lua", refused["message"])
        self.assertEqual(self.running(), ruleset)

    def test_impact(self):
        candidate = copy_rules("epcs-test-loops-impact-")
        try:
            amended = amend_advertising(candidate).encode()
            path = os.path.join(candidate, "advertising.lua")
            body = {"candidate": candidate, "checks": IMPACT_CHECKS}
            status, answer = self.held(path, "POST", "/v1/admin/rules/impact", body, amended)
            self.assertEqual(status, 200, answer)
            report = json.loads(answer)
            self.assertEqual((report["active"], report["checks"], report["changed"]),
                             (self.running(), 3, 1))
            self.assertEqual(report["changed_by_area"], {"advertising": 1})
            self.assertEqual(len(report["changes"]), 1)
            change = report["changes"][0]
            self.assertEqual((change["index"], change["check"]), (1, IMPACT_CHECKS[1]))
            self.assertEqual((change["before"]["verdict"], change["before"]["article"],
                              change["after"]["verdict"], change["after"]["article"]),
                             ("allowed", "93", "prohibited", "93(1)"))
            # A candidate that does not load: 422 naming file and line.
            status, answer = self.held(path, "POST", "/v1/admin/rules/impact", body,
                                       b"local x = \n")
            self.assertEqual(status, 422, answer)
            refused = json.loads(answer)
            self.assertEqual((refused["error"], refused["file"], refused["line"]),
                             ("rules_refused", "advertising.lua", 2))
        finally:
            shutil.rmtree(candidate)

    def test_replay_restores_a_stored_version(self):
        """A decision made under a version no longer running replays under it, restored from
        the rule store while the loop goes on."""
        decided = test_api.check(self.server, CHECK, JSON)
        self.assertEqual(decided.status, 200, decided.raw)
        old = decided.data["ruleset"]
        decision = decided.decisions[0]
        path = os.path.join(self.rules, "deepfake.lua")
        with open(path) as f:
            source = f.read()
        try:
            with open(path, "w") as f:
                f.write(source.replace("labeled or not.", "labeled or not, as amended."))
            reload = request(self.server, "POST", "/v1/admin/rules/reload")
            self.assertEqual(reload.data["status"], "activated", reload.raw)
            wait_for(lambda: request(self.server, "GET", "/v1/decisions/%d" % decision).status
                     == 200, "decision %d never reached the log" % decision)
            status, body = self.held(self.blob(old, "deepfake.lua"), "POST",
                                     "/v1/decisions/%d/replay" % decision)
            self.assertEqual(status, 200, body)
            replay = json.loads(body)
            self.assertEqual((replay["ruleset"], replay["same"]), (old, True))
            self.assertEqual(replay["replayed"], decided.data)
            self.assertEqual(replay["logged"]["id"], decision)
            self.assertEqual(replay["logged"]["answer"], decided.document)
            # Under the running version (a fresh engine on the pool thread): the same answer.
            again = test_api.check(self.server, CHECK, JSON)
            wait_for(lambda: request(self.server, "GET", "/v1/decisions/%d" % again.decisions[0])
                     .status == 200, "the second decision never reached the log")
            replay = request(self.server, "POST", "/v1/decisions/%d/replay" % again.decisions[0])
            self.assertEqual(replay.status, 200, replay.raw)
            self.assertEqual((replay.data["ruleset"], replay.data["same"]),
                             (again.data["ruleset"], True))
            self.assertEqual(replay.data["replayed"], again.data)
        finally:
            with open(path, "w") as f:
                f.write(source)
            self.assertEqual(request(self.server, "POST", "/v1/admin/rules/reload").status, 200)

    def test_decision_reads(self):
        """Listings and reads of the decision log wait at its page file off the loop; a page
        file that cannot be read is a 500, and the next read works again."""
        decided = test_api.check(self.server, CHECK, JSON)
        decision = decided.decisions[0]
        wait_for(lambda: request(self.server, "GET", "/v1/decisions/%d" % decision).status
                 == 200, "decision %d never reached the log" % decision)
        pages = os.path.join(self.var, "decisions.pages")
        listing = "/v1/decisions?after=%d&partner=local" % (decision - 1)
        for route, message in [(listing, "the decision log query failed"),
                               ("/v1/decisions/%d" % decision, "the decision log cannot be read")]:
            # Let go with nothing: the FIFO in its place cannot be read at an offset.
            status, body = self.held(pages, "GET", route, content=b"")
            self.assertEqual(status, 500, body)
            self.assertEqual(json.loads(body), {"error": "internal", "message": message})
        listed = request(self.server, "GET", listing)
        self.assertEqual(listed.status, 200, listed.raw)
        # The checks that probed the loop meanwhile follow it.
        self.assertEqual(listed.data["decisions"][0]["id"], decision)
        self.assertEqual(listed.data["decisions"][0]["answer"], decided.document)
        # A client that leaves while its listing waits: nobody is answered, the worker serves on.
        stall = Stall(pages)
        try:
            pending = Pending(self.server, "GET", listing, max_time=REACH_SECONDS + 1)
            self.assertEqual(pending.gone(), 28)
            stall.release(b"")
        finally:
            stall.cleanup()
        self.assertEqual(request(self.server, "GET", listing).data["decisions"][0]["id"],
                         decision)
        self.assertEqual(test_api.check(self.server, CHECK, JSON).status, 200)


class StalledKeysTest(LoopFreeTest):
    """Key writes waiting for the keys file's lock (an `epcsd keys` run elsewhere holds it)."""

    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.mkdtemp(prefix="epcs-test-loops-keys-")
        cls.keys = os.path.join(cls.scratch, "keys")
        cls.partner = create_key(cls.keys, "naver", "partner")
        cls.admin = create_key(cls.keys, "nec-admin", "admin")
        cls.server = Server("--threads", "1", "--keys", cls.keys, auth=True)

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.scratch)
        assert status == 0, "epcsd exited with %d" % status

    def held(self, method, route, body=None):
        lock = open(self.keys + ".lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            pending = Pending(self.server, method, route, body, extra=bearer(self.admin))
            self.assertLoopFree(self.server, pending, "%s %s" % (method, route),
                                bearer(self.partner))
            fcntl.flock(lock, fcntl.LOCK_UN)
            status, answer = pending.answer()
            return status, json.loads(answer)
        finally:
            lock.close()

    def test_create_and_revoke_wait_for_the_lock_off_the_loop(self):
        status, key = self.held("POST", "/v1/admin/keys",
                                {"partner": "kakao", "role": "partner", "rate": 50})
        self.assertEqual(status, 201, key)
        self.assertEqual((key["partner"], key["role"], key["rate"]), ("kakao", "partner", 50))
        self.assertEqual(key["token"][5:21], key["id"])
        with open(self.keys) as f:
            self.assertIn(key["id"] + " kakao partner ", f.read())
        self.assertEqual(test_api.request(self.server, "POST", "/v1/check",
                                          encode(CHECK, JSON), JSON,
                                          extra=bearer(key["token"])).status, 200)
        status, revoked = self.held("DELETE", "/v1/admin/keys/" + key["id"])
        self.assertEqual((status, revoked), (200, {"revoked": key["id"]}))
        self.assertEqual(test_api.request(self.server, "POST", "/v1/check",
                                          encode(CHECK, JSON), JSON,
                                          extra=bearer(key["token"])).status, 401)
        status, unknown = self.held("DELETE", "/v1/admin/keys/" + key["id"])
        self.assertEqual((status, unknown), (404, {"error": "unknown_key", "field": "id",
                                                   "message": "no key " + key["id"]}))
        # Refused before the lock is taken: answered at once, the lock held or not.
        refused = test_api.request(self.server, "POST", "/v1/admin/keys",
                                   encode({"partner": "Not A Partner", "role": "partner"}, JSON),
                                   JSON, extra=bearer(self.admin))
        self.assertError(refused, 400, "bad_request", "partner",
                         "partner 'Not A Partner' must be 1-63 of a-z 0-9 _ - .")


def impact_checks(count):
    """`count` different checks (no two alike, so that no verdict cache answers them)."""
    checks = []
    for n in range(count):
        day = "2023-%02d-%02d" % (1 + n % 12, 1 + (n // 12) % 28)
        checks.append(dict(IMPACT_CHECKS[0] if n % 2 == 0 else CHECK, date=day))
    return checks


def logged_checks(count):
    """Deepfake checks in the window (prohibited) and advertising outside it (allowed), one
    after the other: every page of the log has both, and no deepfake check is allowed."""
    ad = {"election": "na22", "area": "advertising", "date": "2023-06-01", "activity": AD}
    return [CHECK if n % 2 == 0 else ad for n in range(count)]


def thread_cpu(pid):
    """Nanoseconds of CPU time a process's threads have used, summed by thread name (epcsd
    names its loops epcs-worker-N and the store's threads epcs-store)."""
    totals = {}
    for task in glob.glob("/proc/%d/task/*" % pid):
        try:
            with open(os.path.join(task, "comm")) as f:
                name = f.read().strip()
            with open(os.path.join(task, "schedstat")) as f:
                used = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        totals[name] = totals.get(name, 0) + used
    return totals


class LoopLatencyTest(EpcsTest):
    """One worker with 100,000 reports and requests and 100,000 logged decisions."""

    LOADS = ("export", "reload", "impact", "listing")
    # The pool must do at least this many times the loop's work: the loop only parses
    # requests, decides the probe's checks and sends answers.
    POOL_OVER_LOOP = 4

    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.mkdtemp(prefix="epcs-test-loops-latency-")
        cls.data = os.path.join(cls.scratch, "var")
        cls.rules = copy_rules("epcs-test-loops-latency-rules-")
        cls.candidate = copy_rules("epcs-test-loops-latency-candidate-")
        amended = amend_advertising(cls.candidate)
        with open(os.path.join(cls.candidate, "advertising.lua"), "w") as f:
            f.write(amended)
        flags = ("--threads", "1", "--case-sweep", "3600000", "--no-watch-rules", "--data",
                 cls.data)
        first = Server(*flags, rules=cls.rules)
        assert first.stop() == 0
        first.cleanup()
        seed(cls.data, SEEDED)
        cls.server = Server(*flags, rules=cls.rules)
        batch = encode({"checks": logged_checks(1000)}, JSON)
        for _ in range(SEEDED // 1000):
            response = request(cls.server, "POST", "/v1/check/batch", batch, JSON)
            assert response.status == 200, response.raw
        last = response.decisions[-1]
        wait_for(lambda: request(cls.server, "GET", "/v1/decisions/%d" % last).status == 200,
                 "the seeded decisions never reached the log", timeout=60)
        cls.bodies = {}
        for name, document in [("check", CHECK), ("reload", {}),
                               ("impact", {"candidate": cls.candidate,
                                           "checks": impact_checks(1000)})]:
            cls.bodies[name] = os.path.join(cls.scratch, name)
            with open(cls.bodies[name], "wb") as f:
                f.write(encode(document, JSON))

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.scratch)
        shutil.rmtree(cls.rules)
        shutil.rmtree(cls.candidate)
        assert status == 0, "epcsd exited with %d" % status

    def load(self, name, seconds, log):
        if name == "export":
            return h2load(self.server, EXPORT_PATH, seconds, log)
        if name == "listing":
            return h2load(self.server, FILTERED_LISTING, seconds, log)
        path = {"reload": "/v1/admin/rules/reload", "impact": "/v1/admin/rules/impact"}[name]
        return h2load(self.server, path, seconds, log, body=self.bodies[name])

    def assertAnswers(self):
        """What each load's requests answer, once, before they are timed."""
        export = fetch(self.server, EXPORT_PATH)
        self.assertEqual(len(export.split(b"\r\n")), SEEDED + 2)
        ruleset = request(self.server, "GET", "/v1/rules").data["ruleset"]
        reload = request(self.server, "POST", "/v1/admin/rules/reload")
        self.assertEqual(reload.data, {"status": "unchanged", "ruleset": ruleset,
                                       "previous": ruleset, "milliseconds": 0})
        with open(self.bodies["impact"], "rb") as f:
            impact = request(self.server, "POST", "/v1/admin/rules/impact", f.read(), JSON)
        self.assertEqual(impact.status, 200, impact.raw)
        report = impact.data
        # The advertising checks dated from D-180 to D-121 (2023-10-13 to 2023-12-11) change.
        changed = [n for n, c in enumerate(impact_checks(1000)) if c["area"] == "advertising"
                   and "2023-10-13" <= c["date"] <= "2023-12-11"]
        self.assertEqual((report["checks"], report["changed"]), (1000, len(changed)))
        self.assertEqual([c["index"] for c in report["changes"]], changed)
        self.assertEqual(report["changed_by_area"], {"advertising": len(changed)})
        listed = request(self.server, "GET", FILTERED_LISTING)
        self.assertEqual(listed.data, {"decisions": [], "next": None})

    def probe_during(self, loads, scratch, attempt):
        """One measurement: `loads` one request after another for PROBE_SECONDS + 2 s, the
        probe in the middle. The probe's latencies (microseconds), sorted, and how many checks
        it made; what each load did."""
        cpu_before = thread_cpu(self.server.process.pid)
        runs = {}
        seconds = PROBE_SECONDS + 2
        if os.environ.get("EPCS_TSAN") == "1" and "export" in loads:
            seconds += TSAN_EXPORT_EXTRA_SECONDS
        for name in loads:
            log = os.path.join(scratch, "%s-%d" % (name, attempt))
            runs[name] = (self.load(name, seconds, log), log)
        time.sleep(1)
        probe_log = os.path.join(scratch, "probe-%d" % attempt)
        probe = h2load(self.server, "/v1/check", PROBE_SECONDS, probe_log, PROBE_RATE,
                       self.bodies["check"], True)
        probed, output = finished(self, probe, probe_log)
        self.assertEqual({status for _, status, _ in probed}, {"200"}, output)
        done = {}
        for name, (process, log) in runs.items():
            done[name], load_output = finished(self, process, log)
            self.assertTrue(done[name], "no %s request finished within %d s: %s"
                            % (name, seconds, load_output))
            self.assertEqual({status for _, status, _ in done[name]}, {"200"}, name)
            self.assertIn("%d succeeded, 0 failed, 0 errored" % len(done[name]), load_output)
        cpu_after = thread_cpu(self.server.process.pid)
        loop, pool = (cpu_after.get(name, 0) - cpu_before.get(name, 0)
                      for name in ("epcs-worker-0", "epcs-store"))
        self.assertGreater(loop, 0, "no thread of epcsd is named epcs-worker-0")
        # CPU time, not waiting: this holds however busy the machine is.
        self.assertLess(loop * self.POOL_OVER_LOOP, pool,
                        "the loop used %d ms of CPU, the thread pool %d ms, while %s ran: the "
                        "loop does their work" % (loop // 1000000, pool // 1000000, loads))
        first, last = probed[0][0], probed[-1][0]
        loads_done = {}
        for name in loads:
            # Requests of the load that overlapped the probe, and the share of the probe's
            # checks that started while one of them was underway.
            overlapping = [r for r in done[name] if r[0] <= last and r[0] + r[2] >= first]
            during = sum(1 for start, _, _ in probed
                         if any(b <= start <= b + took for b, _, took in overlapping))
            loads_done[name] = "%d requests, %d%% of the checks during one" % (
                len(overlapping), 100 * during // len(probed))
            self.assertGreaterEqual(len(overlapping), 1, "%s: %s" % (name, loads_done[name]))
            self.assertGreaterEqual(during, len(probed) // 10,
                                    "%s was hardly underway: %s" % (name, loads_done[name]))
        return sorted(us for _, _, us in probed), loads_done

    def assertLoopFree(self, loads):
        """While `loads` run, the loop uses a fraction of the CPU time the thread pool uses for
        them, and a check on the same worker, 200 a second, answers at p99 under 5 ms (and all
        of them in time). The machine is shared, so up to ATTEMPTS measurements are taken and
        the first whose latencies hold passes; with the loads on the loop none does (each of
        them stalls it for tens to hundreds of milliseconds). A sanitized build spends several
        times the CPU on every request and every load: there the CPU claim is checked on one
        measurement and the latencies are only reported, the latency goal being the optimised
        build's. (The exports alone: test_cases_hardening.py's LoopTest.)"""
        self.assertAnswers()
        sanitized = os.environ.get("EPCS_SANITIZED") == "1"
        measured = []
        wanted = int(PROBE_RATE * PROBE_SECONDS * 0.9)
        with tempfile.TemporaryDirectory() as scratch:
            for attempt in range(1 if sanitized else ATTEMPTS):
                latencies, loads_done = self.probe_during(loads, scratch, attempt)
                p99 = latencies[int(len(latencies) * 0.99) - 1]
                measured.append("p99 %d us over %d checks (slowest %s) during %s"
                                % (p99, len(latencies), latencies[-3:], loads_done))
                if p99 < PROBE_P99_US and len(latencies) >= wanted:
                    break
        if sanitized:
            print("sanitized build, latencies not asserted: " + "; ".join(measured),
                  file=sys.stderr)
            return
        self.assertLess(p99, PROBE_P99_US, "; ".join(measured))
        self.assertGreaterEqual(len(latencies), wanted,
                                "the probe could not keep its pace: %s" % "; ".join(measured))

    def test_all_four_at_once(self):
        self.assertLoopFree(self.LOADS)

    def test_reloads(self):
        self.assertLoopFree(("reload",))

    def test_impacts(self):
        self.assertLoopFree(("impact",))

    def test_filtered_listings(self):
        self.assertLoopFree(("listing",))


if __name__ == "__main__":
    test_api.run_suite()
