#!/usr/bin/python3
"""Integration tests of the router on the real epcsd: which path is which route, which methods
each takes (405 with the exact Allow), which paths are 404, the role asked before any of it
(401, 403 and 429 come before 405), how an id after a prefix reaches its handler, and the
metrics label every answer is counted under.

Shares the harness of test_api.py. Run through ctest, or directly:
    tests/integration/test_routes.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules --cases ../shared/cases/public.tsv
"""

import collections
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, EpcsTest, Server, encode, request  # noqa: E402
from test_service import bearer, create_key, key_id  # noqa: E402

SLANDER = {"url": "https://story.kakao.com/routes/1", "platform": "kakao", "election": "na22",
           "category": "slander", "date": "2024-03-05",
           "facts": {"target": "candidate", "true_facts": False, "public_interest": True,
                     "poster_identified": True}}
NO_KEY = "this route needs an API key: Authorization: Bearer <token>"
# A key id of the right length that no key has.
ABSENT_KEY = "ffffffffffffffff"


def no_route(path):
    return (404, "not_found", None, "no route " + path)


def wrong_method(method, path, allow):
    return (405, "method_not_allowed", None, "%s %s: use %s" % (method, path, allow))


class RoutesTest(EpcsTest):
    """Every route group on one server with keys: partner, staff and admin."""

    @classmethod
    def setUpClass(cls):
        cls.scratch = tempfile.mkdtemp(prefix="epcs-test-routes-")
        cls.keys = os.path.join(cls.scratch, "keys")
        cls.tokens = {"partner": create_key(cls.keys, "kakao", "partner"),
                      "staff": create_key(cls.keys, "nec", "staff"),
                      "admin": create_key(cls.keys, "nec-admin", "admin"),
                      # Less than one request a second: its second request within a few
                      # seconds is over the limit whatever the machine's load.
                      "slow": create_key(cls.keys, "slow", "partner", rate=0.1)}
        cls.server = Server("--keys", cls.keys, auth=True)

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        shutil.rmtree(cls.scratch)
        assert status == 0, "epcsd exited with %d" % status

    def setUp(self):
        self.counted = collections.Counter()

    def call(self, who, method, path, body=None):
        return request(self.server, method, path,
                       encode(body, JSON) if body is not None else None,
                       JSON if body is not None else None,
                       extra=bearer(self.tokens[who]) if who else ())

    def forbidden(self, who, role, path, needs):
        token = self.tokens[who]
        partner = {"partner": "kakao", "staff": "nec"}[who]
        return (403, "forbidden", None, "key %s of partner %s has the role %s; %s needs %s"
                % (key_id(token), partner, role, path, needs))

    def expect(self, who, method, path, label, answer, allow=None, body=None):
        """Sends the request and asserts its status, error, field, message and Allow; counts
        it under `label` for assertCounted."""
        response = self.call(who, method, path, body)
        status, code, field, message = answer
        where = "%s %s as %s" % (method, path, who)
        if code is None:
            self.assertEqual(response.status, status, "%s: %r" % (where, response.raw))
        else:
            with self.subTest(where):
                self.assertError(response, status, code, field, message)
        allows = [line[len("allow: "):].strip() for line in response.headers.splitlines()
                  if line.startswith("allow: ")]
        self.assertEqual(allows, [allow.lower()] if allow else [], where)
        self.counted[(label, status)] += 1
        return response

    def metrics(self):
        response = request(self.server, "GET", "/metrics", extra=bearer(self.tokens["staff"]))
        self.assertEqual(response.status, 200, response.raw)
        samples = {}
        for line in response.raw.decode().splitlines():
            if line.startswith("epcs_requests_total{"):
                name, value = line.rsplit(" ", 1)
                samples[name] = int(value)
        return samples

    def assertCounted(self, before, after):
        """Each label and status counted exactly as often as `expect` sent it (and the
        /metrics request that took `before`)."""
        self.counted[("metrics", 200)] += 1
        series = set(before) | set(after)
        changed = {name: after.get(name, 0) - before.get(name, 0) for name in series}
        wanted = {'epcs_requests_total{route="%s",status="%d"}' % key: count
                  for key, count in self.counted.items()}
        self.assertEqual({k: v for k, v in changed.items() if v}, wanted)

    def test_methods_allowed_per_route(self):
        before = self.metrics()
        for method, path, label, allow in [
                ("GET", "/v1/check", "check", "POST"),
                ("PUT", "/v1/check/batch", "check_batch", "POST"),
                ("DELETE", "/v1/areas", "areas", "GET"),
                ("POST", "/v1/rules", "rules", "GET"),
                ("POST", "/v1/rules/versions", "rules_stored", "GET"),
                ("DELETE", "/v1/rules/anything/at/all", "rules_stored", "GET"),
                ("POST", "/v1/elections", "elections", "GET"),
                ("POST", "/v1/elections/na22", "election", "GET"),
                ("DELETE", "/v1/elections/na22/calendar", "election", "GET"),
                ("DELETE", "/v1/reports", "reports", "GET, POST"),
                ("POST", "/v1/reports/1", "reports", "GET"),
                ("POST", "/v1/partners/me/requests", "partner_requests", "GET"),
                ("DELETE", "/v1/requests/1", "requests", "GET"),
                ("GET", "/v1/requests/1/response", "requests", "POST")]:
            self.expect("partner", method, path, label, wrong_method(method, path, allow),
                        allow)
        for method, path, label, allow in [
                ("DELETE", "/metrics", "metrics", "GET"),
                ("POST", "/v1/decisions", "decisions", "GET"),
                ("POST", "/v1/decisions/1", "decisions", "GET"),
                ("GET", "/v1/decisions/1/replay", "decisions", "POST"),
                ("GET", "/v1/admin/rules/reload", "admin_reload", "POST"),
                ("PUT", "/v1/admin/rules/impact", "admin_impact", "POST"),
                ("GET", "/v1/reports/1/confirm", "report_review", "POST"),
                ("DELETE", "/v1/reports/1/dismiss", "report_review", "POST"),
                ("DELETE", "/v1/admin/partners/kakao", "admin_partners", "GET, PUT"),
                ("POST", "/v1/admin/partners/Bad!", "admin_partners", "GET, PUT")]:
            self.expect("staff", method, path, label, wrong_method(method, path, allow), allow)
        for method, path, allow in [
                ("PATCH", "/v1/admin/keys", "GET, POST"),
                ("GET", "/v1/admin/keys/" + ABSENT_KEY, "DELETE"),
                ("POST", "/v1/admin/keys/a/b", "DELETE")]:
            self.expect("admin", method, path, "admin_keys", wrong_method(method, path, allow),
                        allow)
        # Probes need no key, so their 405 needs none either.
        self.expect(None, "POST", "/healthz", "healthz", wrong_method("POST", "/healthz", "GET"),
                    "GET")
        self.expect(None, "PUT", "/readyz", "readyz", wrong_method("PUT", "/readyz", "GET"),
                    "GET")
        self.assertCounted(before, self.metrics())

    def test_unknown_paths_are_404_without_a_key(self):
        before = self.metrics()
        for path in ["/", "/v2/check", "/v1/check/", "/v1/checks", "/v1/elections/",
                     "/v1/rules/", "/v1/decisions/", "/v1/reports/", "/v1/requests",
                     "/v1/requests/", "/v1/admin/keys/", "/v1/admin/partners",
                     "/v1/admin/partners/", "/v1/partners/me", "/v1/admin/rules",
                     "/healthz/x", "/metricsx"]:
            self.expect(None, "GET", path, "not_found", no_route(path))
        self.expect(None, "DELETE", "/nowhere", "not_found", no_route("/nowhere"))
        self.assertCounted(before, self.metrics())

    def test_paths_under_a_route_that_none_takes_are_404_after_its_role(self):
        """Below a route's prefix, a path no row takes is the route's 404: its key is asked
        first, whatever the method, and it is counted under the route's label."""
        before = self.metrics()
        for path, label in [("/v1/elections/na22/nope", "election"),
                            ("/v1/elections/na22/calendar/x", "election"),
                            ("/v1/reports/1/requests", "reports"),
                            ("/v1/requests/1/answer", "requests"),
                            ("/v1/requests/1/response/x", "requests")]:
            self.expect(None, "DELETE", path, label, (401, "unauthorized", "authorization",
                                                      NO_KEY))
            for method in ("GET", "DELETE"):
                self.expect("partner", method, path, label, no_route(path))
        for path, label in [("/v1/decisions/1/x", "decisions"),
                            ("/v1/decisions/1/replay/x", "decisions"),
                            ("/v1/admin/partners/kakao/x", "admin_partners")]:
            self.expect("partner", "DELETE", path, label,
                        self.forbidden("partner", "partner", path, "staff"))
            for method in ("GET", "DELETE"):
                self.expect("staff", method, path, label, no_route(path))
        self.assertCounted(before, self.metrics())

    def test_role_and_rate_come_before_the_method(self):
        before = self.metrics()
        self.expect(None, "DELETE", "/v1/check", "check",
                    (401, "unauthorized", "authorization", NO_KEY))
        self.expect(None, "GET", "/v1/reports/1/confirm", "report_review",
                    (401, "unauthorized", "authorization", NO_KEY))
        for method, path, label, needs in [
                ("DELETE", "/metrics", "metrics", "staff"),
                ("PATCH", "/v1/decisions", "decisions", "staff"),
                ("GET", "/v1/reports/1/confirm", "report_review", "staff"),
                ("GET", "/v1/reports/1/dismiss", "report_review", "staff"),
                ("PUT", "/v1/admin/rules/reload", "admin_reload", "staff"),
                ("DELETE", "/v1/admin/partners/kakao", "admin_partners", "staff"),
                ("PATCH", "/v1/admin/keys", "admin_keys", "admin")]:
            self.expect("partner", method, path, label,
                        self.forbidden("partner", "partner", path, needs))
        for method, path in [("PATCH", "/v1/admin/keys"), ("GET", "/v1/admin/keys/x/y")]:
            self.expect("staff", method, path, "admin_keys",
                        self.forbidden("staff", "staff", path, "admin"))
        # The slow key's first request takes its one token; the next one is over the limit
        # before its method is looked at.
        self.expect("slow", "GET", "/v1/areas", "areas", (200, None, None, None))
        limited = self.expect("slow", "DELETE", "/v1/check", "check",
                              (429, "rate_limited", None, None))
        self.assertIn("retry-after: ", limited.headers)
        self.assertIn("is limited to 0.1 requests a second", limited.data["message"])
        self.assertCounted(before, self.metrics())

    def test_ids_after_a_prefix_reach_their_handler(self):
        before = self.metrics()
        ok = (200, None, None, None)
        election = self.expect("partner", "GET", "/v1/elections/na22", "election", ok)
        self.assertEqual(election.data["election"]["day"], "2024-04-10")
        self.assertNotIn("items", election.data)
        calendar = self.expect("partner", "GET", "/v1/elections/na22/calendar", "election", ok)
        self.assertIn({"area": "deepfake", "kind": "window", "article": "82-8",
                       "from": "2024-01-11", "to": "2024-04-10"},
                      [{k: item[k] for k in ("area", "kind", "article", "from", "to")}
                       for item in calendar.data["items"] if item["area"] == "deepfake"])
        self.expect("partner", "GET", "/v1/elections/zz9", "election",
                    (404, "unknown_election", "election",
                     "no election 'zz9'; GET /v1/elections lists them"))
        self.expect("partner", "GET", "/v1/elections/zz9/calendar", "election",
                    (404, "unknown_election", "election",
                     "no election 'zz9'; GET /v1/elections lists them"))
        self.expect("partner", "GET", "/v1/rules/versions", "rules_stored", ok)
        self.expect("partner", "GET", "/v1/rules/nope", "rules_stored",
                    (404, "unknown_ruleset", "ruleset", None))
        self.expect("staff", "GET", "/v1/decisions/abc", "decisions",
                    (400, "bad_request", "id",
                     "a decision id is a whole number, as in the verdict's decision"))
        self.expect("staff", "POST", "/v1/decisions/abc/replay", "decisions",
                    (400, "bad_request", "id",
                     "a decision id is a whole number, as in the verdict's decision"))
        self.expect("staff", "GET", "/v1/decisions/123456789012345678901234", "decisions",
                    no_route("/v1/decisions/123456789012345678901234"))
        self.expect("partner", "GET", "/v1/requests/abc", "requests",
                    (400, "bad_request", "id",
                     "a request id is a whole number, as the queue lists it"))
        self.expect("partner", "POST", "/v1/requests/abc/response", "requests",
                    (400, "bad_request", "id",
                     "a request id is a whole number, as the queue lists it"))
        self.expect("partner", "GET", "/v1/reports/abc", "reports",
                    (400, "bad_request", "id",
                     "a report id is a whole number, as POST /v1/reports gave it"))
        self.expect("staff", "POST", "/v1/reports/abc/confirm", "report_review",
                    (400, "bad_request", "id",
                     "a report id is a whole number, as POST /v1/reports gave it"))
        self.expect("staff", "POST", "/v1/reports/99999999/confirm", "report_review",
                    (404, "unknown_report", "id", "no report 99999999"))
        # The dismissal is told from the confirmation: only it needs a reason.
        self.expect("staff", "POST", "/v1/reports/99999999/dismiss", "report_review",
                    (400, "bad_request", "reason", "a dismissal needs a reason"), body={})
        self.expect("staff", "GET", "/v1/admin/partners/Bad!", "admin_partners",
                    (400, "bad_request", "id", "a partner id is 1-63 of a-z 0-9 _ - ."))
        self.expect("staff", "GET", "/v1/admin/partners/nobody", "admin_partners",
                    (404, "unknown_partner", "id", None))
        self.expect("admin", "DELETE", "/v1/admin/keys/short", "admin_keys",
                    (404, "unknown_key", "id", "no key short"))
        self.expect("admin", "DELETE", "/v1/admin/keys/" + ABSENT_KEY, "admin_keys",
                    (404, "unknown_key", "id", "no key " + ABSENT_KEY))
        listed = self.expect("admin", "GET", "/v1/admin/keys", "admin_keys", ok)
        self.assertIn(key_id(self.tokens["slow"]), [k["id"] for k in listed.data["keys"]])
        self.expect("partner", "GET", "/v1/partners/me/requests", "partner_requests", ok)
        self.assertCounted(before, self.metrics())

    def test_a_review_path_must_end_in_its_action(self):
        """POST /v1/reports/{id}/confirm and /dismiss take one id: a path with more between the
        id and the action is no review (it confirmed the report, even for a dismissal)."""
        filed = self.call("partner", "POST", "/v1/reports", SLANDER)
        self.assertEqual(filed.status, 201, filed.raw)
        report = filed.document["id"]
        self.assertEqual(filed.document["status"], "held")
        before = self.metrics()
        for action in ("dismiss", "confirm"):
            path = "/v1/reports/%d/x/%s" % (report, action)
            self.expect("staff", "POST", path, "reports", no_route(path),
                        body={"reason": "not a review"})
        self.assertCounted(before, self.metrics())
        held = self.call("staff", "GET", "/v1/reports/%d" % report)
        self.assertEqual(held.status, 200, held.raw)
        self.assertEqual(held.document["status"], "held")
        dismissed = self.call("staff", "POST", "/v1/reports/%d/dismiss" % report,
                              {"reason": "not a statement of fact"})
        self.assertEqual((dismissed.status, dismissed.document["status"]), (200, "dismissed"))


class NoAuthRoutesTest(EpcsTest):
    """--no-auth: no route asks for a key, and the keys routes have no keys to manage."""

    @classmethod
    def setUpClass(cls):
        cls.server = Server()

    @classmethod
    def tearDownClass(cls):
        status = cls.server.stop()
        cls.server.cleanup()
        assert status == 0, "epcsd exited with %d" % status

    def test_keys_routes_answer_that_there_are_no_keys(self):
        for method, path in [("GET", "/v1/admin/keys"), ("POST", "/v1/admin/keys"),
                             ("PATCH", "/v1/admin/keys"), ("DELETE", "/v1/admin/keys/a"),
                             ("GET", "/v1/admin/keys/" + ABSENT_KEY)]:
            response = request(self.server, method, path)
            self.assertError(response, 404, "not_found", None,
                             "epcsd runs with --no-auth: there are no keys")
            self.assertNotIn("allow:", response.headers)

    def test_every_role_is_open(self):
        self.assertError(request(self.server, "DELETE", "/metrics"), 405, "method_not_allowed",
                         None, "DELETE /metrics: use GET")
        self.assertError(request(self.server, "GET", "/v1/decisions/1/x"), 404, "not_found",
                         None, "no route /v1/decisions/1/x")
        self.assertEqual(request(self.server, "GET", "/v1/decisions").status, 200)


if __name__ == "__main__":
    test_api.run_suite(cases_required=False)
