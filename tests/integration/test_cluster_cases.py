#!/usr/bin/python3
"""Reports and requests across replicas: two real epcsd on one PostgreSQL database.

With --store postgresql://... the case store is tables every replica shares: a report filed on
one replica is read on the other under the same id, and its request answered there, every step
in both replicas' GET /v1/decisions; one filing sent to both at once under one Idempotency-Key
makes one report, both answers the first; and while the database cannot be reached (through a
relay that stops answering, or drops every connection) a filing, and a read, is answered 503
store_unavailable within --store-timeout, never a 500 or a hang, and works again by itself.

The database is the scratch PostgreSQL ctest starts (fixture `postgresql`, EPCS_TEST_PG); every
test gets a schema of its own. Run through ctest, or directly with EPCS_TEST_PG set:
    tests/integration/test_cluster_cases.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from pg_relay import Relay  # noqa: E402
from test_api import JSON, EpcsTest, Server, encode, request  # noqa: E402
from test_cases import FALSE_FACT, fresh  # noqa: E402
from test_cluster_keys import bearer, create_key  # noqa: E402
from test_cluster_rules import fresh_schema  # noqa: E402
from test_service import wait_for  # noqa: E402


def post_report(server, report, token=None, key=None):
    extra = list(bearer(token)) if token else []
    if key is not None:
        extra += ["-H", "idempotency-key: " + key]
    return request(server, "POST", "/v1/reports", encode(report, JSON), JSON, JSON, extra=extra)


class ClusterCasesTest(EpcsTest):
    def setUp(self):
        self.uri = fresh_schema("test_cluster_cases")
        self.servers = []
        self.tokens = {partner: create_key(self.uri, partner, role)
                       for partner, role in [("nec", "staff"), ("naver", "partner")]}

    def tearDown(self):
        for server in self.servers:
            server.cleanup()

    def replica(self):
        server = Server("--store", self.uri, "--audit", "sync", auth=True)
        self.servers.append(server)
        return server

    def call(self, server, who, method, path, body=None):
        return request(server, method, path, encode(body, JSON) if body is not None else None,
                       JSON if body is not None else None, JSON,
                       extra=bearer(self.tokens[who]))

    def logged(self, server, ids):
        """The entries of the decision log with these ids, as `server` lists them."""
        wanted, found = set(ids), {}

        def complete():
            response = self.call(server, "nec", "GET",
                                 "/v1/decisions?after=%d&limit=1000" % (min(wanted) - 1))
            self.assertEqual(response.status, 200, response.raw)
            found.update({e["id"]: e for e in response.data["decisions"] if e["id"] in wanted})
            return len(found) == len(wanted)
        wait_for(complete, "entries missing from the decision log: %s" % (wanted - set(found)))
        return [found[i] for i in sorted(wanted)]

    def test_a_report_filed_on_one_replica_is_answered_on_the_other(self):
        a, b = self.replica(), self.replica()
        self.assertIn("case store on PostgreSQL", a.text())
        report = fresh(FALSE_FACT)
        filed = post_report(a, report, self.tokens["nec"])
        self.assertEqual(filed.status, 201, filed.raw)
        report_id = filed.document["id"]
        deletion_id = filed.document["requests"][0]["id"]
        # The same report on both, under the same id.
        on_a = self.call(a, "nec", "GET", "/v1/reports/%d" % report_id)
        on_b = self.call(b, "nec", "GET", "/v1/reports/%d" % report_id)
        self.assertEqual(on_b.status, 200, on_b.raw)
        self.assertEqual(on_b.document, on_a.document)
        self.assertEqual(on_b.document["url"], report["url"])
        # The platform's queue on the other replica holds the request; it answers there.
        queue = self.call(b, "naver", "GET", "/v1/partners/me/requests")
        self.assertEqual([r["id"] for r in queue.data["requests"]], [deletion_id])
        answered = self.call(b, "naver", "POST", "/v1/requests/%d/response" % deletion_id,
                             {"status": "done"})
        self.assertEqual(answered.status, 200, answered.raw)
        self.assertEqual(answered.data["status"], "done")
        again = self.call(a, "naver", "POST", "/v1/requests/%d/response" % deletion_id,
                          {"status": "done"})
        self.assertError(again, 409, "request_closed", "id")
        history = self.call(a, "nec", "GET", "/v1/reports/%d" % report_id).document["history"]
        steps = [(step["event"], step["request"], step["by"]) for step in history]
        self.assertIn(("request_answered", deletion_id, "naver"), steps)
        # The report's decision and every step in both replicas' decision log, committed with
        # the steps.
        for server in (a, b):
            decision, = self.logged(server, [filed.document["decision"]])
            self.assertEqual((decision["partner"], decision["verdict"]), ("nec", "prohibited"))
            steps = self.logged(server, [step["decision"] for step in history])
            self.assertEqual([(s["event"], s["subject"]) for s in steps],
                             [(step["event"], step["request"] or report_id) for step in history])
        # The other replica's next report takes the next id.
        other = post_report(b, fresh(FALSE_FACT), self.tokens["nec"])
        self.assertEqual(other.status, 201, other.raw)
        self.assertGreater(other.document["id"], report_id)

    def test_one_idempotency_key_sent_to_both_replicas_makes_one_report(self):
        a, b = self.replica(), self.replica()
        for round_ in range(5):
            report = fresh(FALSE_FACT)
            answers = [None, None]

            def send(index, server):
                answers[index] = post_report(server, report, self.tokens["nec"],
                                             key="both-%d" % round_)
            threads = [threading.Thread(target=send, args=(i, s)) for i, s in enumerate((a, b))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for answer in answers:
                self.assertEqual(answer.status, 201, answer.raw)
            self.assertEqual(answers[0].raw, answers[1].raw)
            replayed = ["idempotent-replayed: true" in answer.headers for answer in answers]
            self.assertEqual(sorted(replayed), [False, True])
            listed = self.call(a, "nec", "GET", "/v1/reports?limit=1000").document["reports"]
            self.assertEqual([r["url"] for r in listed].count(report["url"]), 1)


class CaseStoreOutageTest(EpcsTest):
    """PostgreSQL away for the case store: a filing or a read is 503 store_unavailable within
    --store-timeout, nothing is stored, and the next one after it is back works."""

    TIMEOUT_MS = 500

    def setUp(self):
        fresh_schema("test_case_store_outage")
        self.relay = Relay(os.environ["EPCS_TEST_PG"])
        self.addCleanup(self.relay.stop)
        self.server = Server("--store", self.relay.uri("test_case_store_outage"),
                             "--store-timeout", str(self.TIMEOUT_MS))
        self.addCleanup(self.server.cleanup)

    def outage(self, begin):
        before = post_report(self.server, fresh(FALSE_FACT))
        self.assertEqual(before.status, 201, before.raw)
        begin()
        during = fresh(FALSE_FACT)
        started = time.monotonic()
        response = post_report(self.server, during)
        took = time.monotonic() - started
        self.assertError(response, 503, "store_unavailable", None,
                         "the case store cannot be reached now; retry (under the same "
                         "Idempotency-Key a retry never stores twice)")
        self.assertIn("retry-after: 1", response.headers)
        # The timeout and the few milliseconds around it: never a hang.
        print("\n  a filing without the database answered 503 after %.0f ms" % (took * 1000))
        self.assertLess(took, self.TIMEOUT_MS / 1000 + 1)
        listed = request(self.server, "GET", "/v1/reports", accept=JSON)
        self.assertError(listed, 503, "store_unavailable", None,
                         "the case store cannot be reached now; try again")
        self.relay.resume()
        after = fresh(FALSE_FACT)
        answers = []

        def works():
            answers.append(post_report(self.server, after))
            return answers[-1].status == 201
        wait_for(works, "filings still refused after the database came back")
        urls = [r["url"] for r in request(self.server, "GET", "/v1/reports?limit=1000",
                                          accept=JSON).document["reports"]]
        self.assertIn(after["url"], urls)
        self.assertNotIn(during["url"], urls)
        # Logged, with why: an operator sees the database, not the route, is the matter.
        self.assertIn('"msg":"filing a report: ', self.server.text())

    def test_a_database_that_stops_answering(self):
        self.outage(self.relay.pause)

    def test_a_database_that_drops_every_connection(self):
        self.outage(self.relay.cut)


if __name__ == "__main__":
    test_api.run_suite(cases_required=False)
