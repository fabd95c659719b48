#!/usr/bin/python3
"""The decision log on PostgreSQL through the real epcsd (--store URI): checks are answered
with decision ids that GET /v1/decisions lists and gets, they survive a restart, two epcsd on
one database never give the same id, and SIGKILL under --audit sync loses no answered decision.

The database is the scratch PostgreSQL ctest starts (fixture `postgresql`, EPCS_TEST_PG); every
test gets a schema of its own. Run through ctest, or directly with EPCS_TEST_PG set:
    tests/integration/test_store_postgresql.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules --cases ../shared/cases/public.tsv
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, EpcsTest, Server, check, request  # noqa: E402
from test_durability import DurabilityTest, Load, logged_decisions  # noqa: E402

CAMPAIGN = {"election": "na22", "area": "deepfake", "date": "2024-02-15",
            "activity": {"kind": "post", "deepfake": True, "purpose": "campaign"}}


def psql(uri, sql):
    """Runs `sql` at `uri`; its output, unaligned, without headers."""
    return subprocess.run(["psql", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", uri, "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def fresh_schema(name):
    """A connection URI whose tables live in schema `name`, made empty."""
    base = os.environ.get("EPCS_TEST_PG")
    if not base:
        raise AssertionError("EPCS_TEST_PG is not set: run through ctest, which starts a "
                             "scratch PostgreSQL (tests/scripts/pg_scratch.sh)")
    psql(base, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s" % (name, name))
    return base + ("&" if "?" in base else "?") + "options=-csearch_path%3D" + name


class StorePostgresqlTest(DurabilityTest):
    def setUp(self):
        self.uri = fresh_schema("test_store_" + self._testMethodName[5:25])
        self.servers = []
        self.dirs = []

    def tearDown(self):
        for server in self.servers:
            server.cleanup()
        for directory in self.dirs:
            shutil.rmtree(directory, ignore_errors=True)

    def data_dir(self):
        directory = tempfile.mkdtemp(prefix="epcs-test-store-pg-")
        self.dirs.append(directory)
        return directory

    def replica(self, *extra):
        server = Server("--store", self.uri, *extra)
        self.servers.append(server)
        return server

    def decide(self, server, count):
        """Answers `count` checks; their decision ids, in order."""
        ids = []
        for _ in range(count):
            response = check(server, CAMPAIGN)
            self.assertEqual(response.status, 200, response.raw)
            self.assertEqual(response.data["verdict"], "prohibited")
            ids.append(response.document["decision"])
        return ids

    def test_checks_are_logged_listed_and_got(self):
        server = self.replica("--audit", "sync")
        self.assertIn("decision log on PostgreSQL, journals in", server.text())
        ids = self.decide(server, 5)
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 5)
        listed = request(server, "GET", "/v1/decisions?limit=3")
        self.assertEqual(listed.status, 200, listed.raw)
        self.assertEqual([d["id"] for d in listed.data["decisions"]], ids[:3])
        self.assertEqual(listed.data["next"], ids[2])
        rest = request(server, "GET", "/v1/decisions?limit=3&after=%d" % ids[2])
        self.assertEqual([d["id"] for d in rest.data["decisions"]], ids[3:])
        self.assertIsNone(rest.data["next"])
        shown = request(server, "GET", "/v1/decisions/%d" % ids[1], accept=JSON)
        self.assertEqual(shown.status, 200, shown.raw)
        self.assertEqual(shown.document["id"], ids[1])
        self.assertEqual(shown.document["request"], CAMPAIGN)
        self.assertEqual(shown.document["verdict"], "prohibited")
        self.assertEqual(shown.document["answer"]["decision"], ids[1])
        filtered = request(server, "GET", "/v1/decisions?area=advertising")
        self.assertEqual(filtered.data["decisions"], [])
        self.assertError(request(server, "GET", "/v1/decisions/%d" % (ids[-1] + 1000)), 404,
                         "unknown_decision", "id", "no decision %d in the log" % (ids[-1] + 1000))
        # Pages in the database, nothing of the log in the data directory but its journals and
        # its lock.
        self.assertEqual(psql(self.uri, "SELECT sum(count) FROM epcs_decision_pages"), "5")
        kept = os.listdir(os.path.join(server.data, "var"))
        self.assertNotIn("decisions.db", kept)
        self.assertIn("decisions.lock", kept)

    def test_decisions_survive_a_restart(self):
        data = self.data_dir()
        first = self.replica("--data", data)
        before = self.decide(first, 4)
        self.assertEqual(first.stop(), 0)
        second = self.replica("--data", data)
        after = self.decide(second, 2)
        # A new run: ids go on above the last one's (the replica's own row of epcs_runs, the
        # one it beats with, took a number between them).
        self.assertGreater(after[0] >> 32, before[0] >> 32)
        stored = logged_decisions(second)
        self.assertEqual(sorted(stored), before + after)
        self.assertEqual(stored[before[0]]["request"], CAMPAIGN)

    def test_two_replicas_on_one_database_give_distinct_ids(self):
        a = self.replica()
        b = self.replica()
        from_a = self.decide(a, 20)
        from_b = self.decide(b, 20)
        self.assertEqual(set(from_a) & set(from_b), set())
        self.assertNotEqual(from_a[0] >> 32, from_b[0] >> 32)
        # Each replica lists what both decided, once the async writers have committed.
        deadline = time.monotonic() + 10
        while True:
            seen_by_a, seen_by_b = logged_decisions(a), logged_decisions(b)
            if len(seen_by_a) == 40 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(sorted(seen_by_a), sorted(from_a + from_b))
        self.assertEqual(sorted(seen_by_b), sorted(from_a + from_b))
        # One row per replica among those that beat (GET /v1/admin/cluster lists them), and one
        # per decision log, which names its ids.
        self.assertEqual(psql(self.uri, "SELECT count(*) FROM epcs_runs WHERE beats"), "2")
        self.assertEqual(psql(self.uri, "SELECT count(*) FROM epcs_runs WHERE NOT beats"), "2")

    def test_sigkill_in_sync_mode_loses_nothing_answered(self):
        data = self.data_dir()
        server = self.replica("--data", data, "--audit", "sync")
        load = Load(server)
        try:
            load.start()
            time.sleep(2.0)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(30)
            load.finish()
            self.assertEqual(load.unexpected, [])
            self.assertEqual(load.refused, [])
            self.assertGreater(len(load.answered), 200, "too little load to prove anything")
            restarted = self.replica("--data", data, "--audit", "sync")
            self.assertAllLogged(restarted, load.answered)
            self.assertEqual(restarted.stop(), 0)
        finally:
            load.finish()


if __name__ == "__main__":
    test_api.run_suite(cases_required=False)
