#!/usr/bin/python3
"""Rulesets across replicas: two real epcsd on one PostgreSQL database (--store URI).

A replica joins with the cluster's active ruleset, not its own directory's; an activation on
one (a directory reload, or POST /v1/admin/rules/activate by id) is served by the other within
a second, the time printed (tens of milliseconds on a quiet machine; a loaded CI machine
took 287 ms once, so this is not where the deployment's 250 ms goal is judged); two activations decided on the same epoch cannot both win (409 stale_epoch); and a
replica that cannot switch turns /readyz false and answers checks 503 until it can, by itself.

The database is the scratch PostgreSQL ctest starts (fixture `postgresql`, EPCS_TEST_PG); every
test gets a schema of its own. Run through ctest, or directly with EPCS_TEST_PG set:
    tests/integration/test_cluster_rules.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, EpcsTest, Server, check, copy_rules, encode, request  # noqa: E402
from pg_relay import Relay  # noqa: E402

CAMPAIGN = {"election": "na22", "area": "deepfake", "date": "2024-02-15",
            "activity": {"kind": "post", "deepfake": True, "purpose": "campaign"}}
# An activation's way to the other replica: the announcement, the restore, the compile and the
# rule tests (427 of them). Sanitized builds run the compile and the tests several times slower;
# a machine busy with other work slows all of it.
FOLLOW_LIMIT_S = 2.0 if os.environ.get("EPCS_SANITIZED") == "1" else 1.0


def fresh_schema(name):
    """A connection URI whose tables live in schema `name`, made empty."""
    base = os.environ.get("EPCS_TEST_PG")
    if not base:
        raise AssertionError("EPCS_TEST_PG is not set: run through ctest, which starts a "
                             "scratch PostgreSQL (tests/scripts/pg_scratch.sh)")
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", base, "-c",
                    "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s" % (name, name)],
                   check=True, capture_output=True)
    return base + ("&" if "?" in base else "?") + "options=-csearch_path%3D" + name


def amended_rules(tag):
    """A copy of the bundled rules whose deepfake file carries one more comment: a new id."""
    directory = tempfile.mkdtemp(prefix="epcs-test-cluster-rules-")
    copy_rules(directory)
    with open(os.path.join(directory, "deepfake.lua"), "a") as f:
        f.write("-- %s\n" % tag)
    return directory


def rules_of(server):
    response = request(server, "GET", "/v1/rules", accept=JSON)
    assert response.status == 200, response.raw
    return response.document


def activate(server, ruleset, epoch):
    return request(server, "POST", "/v1/admin/rules/activate",
                   encode({"ruleset": ruleset, "epoch": epoch}, JSON), JSON, JSON)


def cluster_of(server):
    response = request(server, "GET", "/v1/admin/cluster", accept=JSON)
    assert response.status == 200, response.raw
    return response.document


def wait_listed(test, server, wanted, timeout=5):
    """The cluster as `server` lists it once `wanted(rows by pid)` holds (replicas beat once a
    second), as {pid: row}."""
    deadline = time.monotonic() + timeout
    while True:
        cluster = cluster_of(server)
        rows = {row["pid"]: row for row in cluster["replicas"]}
        if wanted(rows):
            return cluster, rows
        test.assertLess(time.monotonic(), deadline, cluster)
        time.sleep(0.1)


def wait_serving(server, ruleset, epoch, timeout):
    """Seconds until `server` serves `ruleset` at `epoch`, polled as fast as curl goes."""
    started = time.monotonic()
    while True:
        response = request(server, "GET", "/v1/rules", accept=JSON)
        # 503 while the replica is behind: it answers by no rules rather than old ones.
        rules = response.document if response.status == 200 else {"ruleset": None, "epoch": 0}
        if rules["ruleset"] == ruleset and rules["epoch"] == epoch:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError("still serving %s at epoch %d, not %s at %d"
                                 % (rules["ruleset"], rules["epoch"], ruleset, epoch))
        time.sleep(0.005)


class ClusterRulesTest(EpcsTest):
    def setUp(self):
        self.uri = fresh_schema("test_cluster_rules")
        self.dirs = []
        self.servers = []

    def tearDown(self):
        for server in self.servers:
            server.cleanup()
        for directory in self.dirs:
            shutil.rmtree(directory, ignore_errors=True)

    def replica(self, rules, *extra, expect_start=True):
        server = Server("--store", self.uri, *extra, rules=rules, expect_start=expect_start)
        self.servers.append(server)
        return server

    def rules(self, tag):
        directory = amended_rules(tag)
        self.dirs.append(directory)
        return directory

    def two_versions(self):
        """Replicas A and B, and the two stored versions: A's first directory, then its
        amendment, which both serve at epoch 2 once this returns."""
        rules_a = self.rules("first")
        a = self.replica(rules_a)
        first = rules_of(a)["ruleset"]
        b = self.replica(self.rules("b's own"))
        with open(os.path.join(rules_a, "deepfake.lua"), "a") as f:
            f.write("-- amended on A\n")
        deadline = time.monotonic() + 10
        while rules_of(a)["ruleset"] == first:
            self.assertLess(time.monotonic(), deadline, a.text())
            time.sleep(0.05)
        second = rules_of(a)["ruleset"]
        self.assertEqual(rules_of(a)["epoch"], 2)
        wait_serving(b, second, 2, 10)
        return a, b, first, second

    def test_a_replica_joins_with_the_clusters_ruleset(self):
        a = self.replica(self.rules("a"))
        joined = rules_of(a)
        self.assertEqual(joined["epoch"], 1)
        # B's own directory holds other rules: it serves the cluster's all the same, and its
        # start records nothing.
        b = self.replica(self.rules("b"))
        served = rules_of(b)
        self.assertEqual(served["ruleset"], joined["ruleset"])
        self.assertEqual(served["epoch"], 1)
        self.assertTrue(served["directory"].endswith("/rulesets/following"), served)
        self.assertIn("serving the cluster's active ruleset %s (epoch 1)" % joined["ruleset"],
                      b.text())
        history = request(b, "GET", "/v1/rules/versions", accept=JSON).document["activations"]
        self.assertEqual([entry["to"] for entry in history], [joined["ruleset"]])
        self.assertEqual(check(b, CAMPAIGN).data["verdict"], "prohibited")

    def test_an_activation_is_served_by_the_other_replica_within_a_second(self):
        a, b, first, second = self.two_versions()
        response = activate(a, first, 2)
        self.assertEqual(response.status, 200, response.raw)
        self.assertEqual(response.document, {"status": "activated", "ruleset": first,
                                             "previous": second, "epoch": 3})
        took = wait_serving(b, first, 3, 10)
        print("\nan activation on A was served by B %.0f ms after A answered" % (took * 1000))
        self.assertLess(took, FOLLOW_LIMIT_S)
        self.assertIn("serving %s, activated elsewhere (epoch 3)" % first, b.text())
        # B's answer to the same activation: it is what the store holds, nothing recorded.
        self.assertEqual(activate(b, first, 3).document,
                         {"status": "unchanged", "ruleset": first, "epoch": 3})
        history = request(b, "GET", "/v1/rules/versions", accept=JSON).document["activations"]
        self.assertEqual([entry["to"] for entry in history], [first, second, first])

    def test_the_cluster_lists_every_replica_with_the_ruleset_it_serves(self):
        a, b, first, second = self.two_versions()
        pid_a, pid_b = a.process.pid, b.process.pid
        serving = lambda ruleset, epoch: lambda rows: all(  # noqa: E731
            pid in rows and (rows[pid]["ruleset"], rows[pid]["epoch"], rows[pid]["state"],
                             rows[pid]["ready"]) == (ruleset, epoch, "live", True)
            for pid in (pid_a, pid_b))
        cluster, rows = wait_listed(self, b, serving(second, 2))
        self.assertEqual(cluster["live"], 2)
        self.assertEqual(len(cluster["replicas"]), 2)
        self.assertEqual((rows[pid_a]["self"], rows[pid_b]["self"]), (False, True))
        self.assertNotEqual(rows[pid_a]["run"], rows[pid_b]["run"])
        self.assertEqual(rows[pid_a]["audit"], "async")
        self.assertLess(rows[pid_a]["heartbeat_age_ms"], 3000)
        self.assertLess(cluster["read_age_ms"], 1500)
        # An activation on B shows as A's ruleset in B's list once A served it and beat.
        self.assertEqual(activate(b, first, 2).status, 200)
        wait_listed(self, b, serving(first, 3))
        # A replica that cannot serve the cluster's ruleset says so.
        following = os.path.join(a.data, "var", "rulesets", "following")
        shutil.rmtree(following)
        with open(following, "w") as f:
            f.write("not a directory\n")
        self.assertEqual(activate(b, second, 3).status, 200)
        wait_listed(self, b, lambda rows: (rows[pid_a]["ready"], rows[pid_a]["ruleset"],
                                           rows[pid_b]["ruleset"]) == (False, first, second))
        os.unlink(following)
        wait_listed(self, b, serving(second, 4))
        # One stopped is listed as stopped, and the live count drops.
        self.assertEqual(a.stop(), 0)
        cluster, rows = wait_listed(self, b, lambda rows: rows[pid_a]["state"] == "stopped")
        self.assertEqual(cluster["live"], 1)

    def test_a_replica_killed_falls_silent(self):
        a = self.replica(self.rules("a"))
        b = self.replica(self.rules("b"))
        pid_b = b.process.pid
        wait_listed(self, a, lambda rows: pid_b in rows and rows[pid_b]["state"] == "live")
        b.process.kill()
        b.process.wait()
        started = time.monotonic()
        cluster, rows = wait_listed(self, a, lambda rows: rows[pid_b]["state"] == "silent",
                                    timeout=10)
        took = time.monotonic() - started
        print("\na replica killed was listed as silent %.1f s later" % took)
        # EPCS_REPLICA_LIVE_MS, and a beat's period around it.
        self.assertGreater(took, 3)
        self.assertEqual(cluster["live"], 1)
        self.assertGreaterEqual(rows[pid_b]["heartbeat_age_ms"], 5000)

    def test_two_activations_on_one_epoch_cannot_both_win(self):
        a, b, first, second = self.two_versions()
        self.assertEqual(activate(b, first, 2).status, 200)
        # A decided on epoch 2 too, before it heard of B's.
        self.assertError(activate(a, second, 2), 409, "stale_epoch", "epoch",
                         "the rules moved on since epoch 2: epoch 3 serves %s; read "
                         "GET /v1/rules again and decide on what it says" % first)
        wait_serving(a, first, 3, 10)
        history = request(a, "GET", "/v1/rules/versions", accept=JSON).document["activations"]
        self.assertEqual(len(history), 3)

    def test_activations_that_name_no_stored_version_are_refused(self):
        a = self.replica(self.rules("a"))
        epoch = rules_of(a)["epoch"]
        self.assertError(activate(a, "rs-0123456789abcdef", epoch), 404, "unknown_ruleset",
                         "ruleset", "no stored ruleset rs-0123456789abcdef; "
                         "GET /v1/rules/versions lists them")
        self.assertError(activate(a, "deepfake.lua", epoch), 400, "bad_request", "ruleset",
                         "ruleset must be a version id (rs- and 16 hex digits), as "
                         "GET /v1/rules/versions lists them")
        for bad in (None, -1, "1", 1.5):
            body = {"ruleset": rules_of(a)["ruleset"]}
            if bad is not None:
                body["epoch"] = bad
            response = request(a, "POST", "/v1/admin/rules/activate", encode(body, JSON), JSON,
                               JSON)
            self.assertError(response, 400, "bad_request", "epoch",
                             "epoch must be the whole number GET /v1/rules says, the view the "
                             "activation is decided on")
        self.assertEqual(rules_of(a)["epoch"], epoch)

    def test_a_replica_that_cannot_switch_leaves_the_rotation_until_it_can(self):
        a, b, first, second = self.two_versions()
        # Where B restores a version to compile it is taken by a file: B cannot switch.
        following = os.path.join(b.data, "var", "rulesets", "following")
        shutil.rmtree(following)
        with open(following, "w") as f:
            f.write("not a directory\n")
        self.assertEqual(activate(a, first, 2).status, 200)
        reason = ("this replica cannot serve the active ruleset %s (epoch 3): stored ruleset %s "
                  "cannot be restored into %s" % (first, first, following))
        deadline = time.monotonic() + 10
        while request(b, "GET", "/readyz", accept=JSON).status != 503:
            self.assertLess(time.monotonic(), deadline, b.text())
            time.sleep(0.05)
        ready = request(b, "GET", "/readyz", accept=JSON).document
        self.assertEqual((ready["ready"], ready["rules"], ready["reason"]),
                         (False, "behind", reason))
        # Rather than decide by rules the cluster has left.
        self.assertError(check(b, CAMPAIGN, JSON, JSON), 503, "not_ready", None, reason)
        # Mended, B catches up at its next look (every 2 s) without being told.
        os.unlink(following)
        took = wait_serving(b, first, 3, 10)
        self.assertLess(took, 5)
        ready = request(b, "GET", "/readyz", accept=JSON)
        self.assertEqual(ready.status, 200, ready.raw)
        self.assertEqual(ready.document["rules"], "current")
        self.assertEqual(check(b, CAMPAIGN).data["verdict"], "prohibited")

    def test_a_replica_that_cannot_serve_the_clusters_ruleset_does_not_start(self):
        a = self.replica(self.rules("a"))
        active = rules_of(a)["ruleset"]
        # Without the deepfake area, the stored files load as another ruleset.
        plugins = tempfile.mkdtemp(prefix="epcs-test-cluster-plugins-")
        self.dirs.append(plugins)
        for name in os.listdir(test_api.ARGS.plugins):
            if name.endswith(".so") and name != "deepfake.so":
                os.symlink(os.path.abspath(os.path.join(test_api.ARGS.plugins, name)),
                           os.path.join(plugins, name))
        b = Server("--store", self.uri, rules=self.rules("b"), plugins=plugins,
                   expect_start=False)
        self.servers.append(b)
        self.assertNotEqual(b.process.wait(timeout=30), 0)
        self.assertIn("refusing to start: the cluster's active ruleset %s (epoch 1) cannot be "
                      "served here" % active, b.text())


class StoreOutageTest(EpcsTest):
    """PostgreSQL away (through a relay that can stop answering, or drop every connection):
    answers are 200 or a coded 503 within --store-timeout, never a 500 or a hang (the rule
    store's reads, the decision log's); /readyz is false while it lasts; everything comes back
    by itself."""

    TIMEOUT_MS = 500

    def setUp(self):
        fresh_schema("test_store_outage")
        self.relay = Relay(os.environ["EPCS_TEST_PG"])
        self.addCleanup(self.relay.stop)
        self.rules = amended_rules("outage")
        self.addCleanup(shutil.rmtree, self.rules, True)
        self.server = Server("--store", self.relay.uri("test_store_outage"), "--store-timeout",
                             str(self.TIMEOUT_MS), rules=self.rules)
        self.addCleanup(self.server.cleanup)

    def wait_ready(self, status, timeout=15):
        deadline = time.monotonic() + timeout
        while True:
            response = request(self.server, "GET", "/readyz", accept=JSON)
            if response.status == status:
                return response.document
            self.assertLess(time.monotonic(), deadline, response.raw)
            time.sleep(0.1)

    def outage(self, begin):
        versions = request(self.server, "GET", "/v1/rules/versions", accept=JSON)
        self.assertEqual(versions.status, 200, versions.raw)
        begin()
        started = time.monotonic()
        response = request(self.server, "GET", "/v1/rules/versions", accept=JSON)
        took = time.monotonic() - started
        self.assertError(response, 503, "store_unavailable", None,
                         "the rule store cannot be reached now; try again")
        # The timeout, and the few milliseconds around it: never a hang.
        self.assertLess(took, self.TIMEOUT_MS / 1000 * 2 + 1)
        # The decision log's reads likewise (its writes wait in its queue meanwhile).
        for path in ("/v1/decisions?limit=5", "/v1/decisions/4294967297"):
            started = time.monotonic()
            response = request(self.server, "GET", path, accept=JSON)
            self.assertError(response, 503, "store_unavailable", None,
                             "the decision log cannot be reached now; try again")
            self.assertLess(time.monotonic() - started, self.TIMEOUT_MS / 1000 * 2 + 1)
        ready = self.wait_ready(503)
        self.assertEqual((ready["ready"], ready["store"]), (False, "down"))
        self.assertEqual(ready["reason"], "the store's database cannot be reached (tried every "
                         "2000 ms at most)")
        # Checks need no database: the rules are in memory.
        self.assertEqual(check(self.server, CAMPAIGN).data["verdict"], "prohibited")
        self.relay.resume()
        ready = self.wait_ready(200)
        self.assertEqual(ready["store"], "up")
        self.assertEqual(request(self.server, "GET", "/v1/rules/versions").status, 200)
        self.assertEqual(request(self.server, "GET", "/v1/decisions?limit=5").status, 200)
        self.assertIn("the rule store's database answers again", self.server.text())

    def test_a_database_that_stops_answering(self):
        self.outage(self.relay.pause)

    def test_a_database_that_drops_every_connection(self):
        self.outage(self.relay.cut)


class SingleNodeActivationTest(EpcsTest):
    """The embedded store activates by id and epoch the same way (--store sqlite)."""

    def test_activation_by_id_on_the_file_store(self):
        rules = amended_rules("single")
        self.addCleanup(shutil.rmtree, rules, True)
        server = Server(rules=rules)
        self.addCleanup(server.cleanup)
        first = rules_of(server)
        self.assertEqual(first["epoch"], 1)
        with open(os.path.join(rules, "deepfake.lua"), "a") as f:
            f.write("-- amended\n")
        deadline = time.monotonic() + 10
        while rules_of(server)["ruleset"] == first["ruleset"]:
            self.assertLess(time.monotonic(), deadline, server.text())
            time.sleep(0.05)
        second = rules_of(server)
        self.assertEqual(second["epoch"], 2)
        self.assertError(activate(server, first["ruleset"], 1), 409, "stale_epoch", "epoch",
                         "the rules moved on since epoch 1: epoch 2 serves %s; read "
                         "GET /v1/rules again and decide on what it says" % second["ruleset"])
        self.assertEqual(activate(server, first["ruleset"], 2).document,
                         {"status": "activated", "ruleset": first["ruleset"],
                          "previous": second["ruleset"], "epoch": 3})
        self.assertEqual(rules_of(server)["ruleset"], first["ruleset"])
        self.assertEqual(rules_of(server)["epoch"], 3)

    def test_the_cluster_of_one(self):
        server = Server()
        self.addCleanup(server.cleanup)
        cluster, rows = wait_listed(self, server, lambda rows: server.process.pid in rows)
        row = rows[server.process.pid]
        self.assertEqual((row["run"], row["state"], row["ready"], row["self"], row["epoch"],
                          row["audit"]), (1, "live", True, True, 1, "async"))
        self.assertEqual(row["ruleset"], rules_of(server)["ruleset"])
        self.assertEqual((cluster["live"], len(cluster["replicas"])), (1, 1))


if __name__ == "__main__":
    test_api.run_suite(cases_required=False)
