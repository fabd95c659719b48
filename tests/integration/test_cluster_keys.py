#!/usr/bin/python3
"""API keys and rate limits across replicas: two real epcsd on one PostgreSQL database.

With --store postgresql://... the keys are a table every replica reads: a key created on one
replica works on the other; one revoked on one is refused by the other within a second (the
change is announced, and polled for every second besides). Each replica takes a key's
requests from a token bucket of its own, and every 100 ms the replicas tell each other through
the database what their buckets gave out: two replicas under one key admit the key's rate
together, not twice it. While they cannot tell each other, each takes rate/N, N the live
replicas it last saw.

The database is the scratch PostgreSQL ctest starts (fixture `postgresql`, EPCS_TEST_PG); every
test gets a schema of its own. Run through ctest, or directly with EPCS_TEST_PG set:
    tests/integration/test_cluster_keys.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules
"""

import os
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, EpcsTest, Server, encode, request  # noqa: E402
from test_cluster_rules import fresh_schema  # noqa: E402
from pg_relay import Relay  # noqa: E402

# A revocation's way to the other replica: the announcement (or, lost, the next poll) and a
# reload of the keys. The promise is a second, whatever the build.
REVOCATION_LIMIT_S = 1.0
# The key's rate in the sharing tests, and how hard each replica is pushed: twice that, four
# times for the two together.
SHARED_RATE = 100
PUSH_RPS_PER_CLIENT = 100
PUSH_CLIENTS = 2
WARM_UP_S = 3
MEASURE_S = 4


def bearer(token):
    return ("-H", "authorization: Bearer " + token)


def key_id(token):
    return token[5:21]


def keys_command(uri, *args):
    return subprocess.run([test_api.ARGS.epcsd, "keys"] + list(args) + ["--store", uri],
                          capture_output=True, text=True, timeout=30)


def create_key(uri, partner, role, rate=None):
    extra = ["--rate", str(rate)] if rate is not None else []
    result = keys_command(uri, "create", "--partner", partner, "--role", role, *extra)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert re.fullmatch(r"epcs_[0-9a-f]{16}_[0-9a-f]{64}", token), result.stdout
    return token


def status_of(server, token):
    return request(server, "GET", "/v1/areas", extra=bearer(token)).status


def wait_status(server, token, status, timeout):
    """Seconds until `token` gets `status` from `server`, asked as fast as curl goes."""
    started = time.monotonic()
    while True:
        if status_of(server, token) == status:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError("key %s still not %d on port %d after %.1f s"
                                 % (key_id(token), status, server.port, timeout))


def push(server, token, counts, index):
    """h2load on /v1/areas at PUSH_CLIENTS x PUSH_RPS_PER_CLIENT a second: after WARM_UP_S,
    the 2xx and 4xx of MEASURE_S seconds into counts[index]."""
    result = subprocess.run(
        ["h2load", "-c", str(PUSH_CLIENTS), "-m", "1", "--rps", str(PUSH_RPS_PER_CLIENT),
         "--warm-up-time", "%ds" % WARM_UP_S, "-D", "%ds" % MEASURE_S,
         "-H", "authorization: Bearer " + token, server.url("/v1/areas")],
        capture_output=True, text=True, timeout=120)
    found = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", result.stdout)
    counts[index] = (int(found.group(1)), int(found.group(3)), int(found.group(4))) \
        if found else (result.returncode, result.stdout, result.stderr)


def push_together(servers, token):
    """Every server pushed at once; the (2xx, 4xx, 5xx) of each."""
    counts = [None] * len(servers)
    threads = [threading.Thread(target=push, args=(server, token, counts, i))
               for i, server in enumerate(servers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for count in counts:
        assert isinstance(count[0], int) and len(count) == 3 and isinstance(count[1], int), \
            "h2load failed: %r" % (count,)
    return counts


class ClusterKeysTest(EpcsTest):
    def setUp(self):
        self.uri = fresh_schema("test_cluster_keys")
        self.servers = []
        self.admin = create_key(self.uri, "nec-admin", "admin")

    def tearDown(self):
        for server in self.servers:
            server.cleanup()

    def replica(self, *extra, expect_start=True):
        server = Server("--store", self.uri, *extra, auth=True, expect_start=expect_start)
        self.servers.append(server)
        return server

    def call(self, server, method, path, body=None):
        return request(server, method, path, encode(body, JSON) if body is not None else None,
                       JSON if body is not None else None, JSON, extra=bearer(self.admin))

    def test_a_key_created_on_one_replica_works_on_the_other(self):
        a, b = self.replica(), self.replica()
        self.assertIn("1 API key(s) from postgresql:", b.text())
        created = self.call(a, "POST", "/v1/admin/keys",
                            {"partner": "kakao", "role": "partner", "rate": 50})
        self.assertEqual(created.status, 201, created.raw)
        key = created.data
        took = wait_status(b, key["token"], 200, 5)
        print("\n  a key created on A works on B after %.0f ms" % (took * 1000))
        self.assertLess(took, REVOCATION_LIMIT_S)
        # The same listing on both, as one replica gave it before.
        entry = {"id": key["id"], "partner": "kakao", "role": "partner", "rate": 50,
                 "created": key["created"]}
        for server in (a, b):
            listed = self.call(server, "GET", "/v1/admin/keys").data["keys"]
            self.assertIn(entry, listed)
            self.assertEqual(sorted(k["partner"] for k in listed), ["kakao", "nec-admin"])
        listed = keys_command(self.uri, "list")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertRegex(listed.stdout, r"%s\s+kakao\s+partner\s+50/s" % key["id"])
        # Bad requests get today's answers.
        self.assertError(self.call(b, "POST", "/v1/admin/keys", {"partner": "Has Space",
                                                                 "role": "partner"}),
                         400, "bad_request", "partner",
                         "partner 'Has Space' must be 1-63 of a-z 0-9 _ - .")
        self.assertError(self.call(b, "DELETE", "/v1/admin/keys/0123456789abcdef"), 404,
                         "unknown_key", "id", "no key 0123456789abcdef")

    def test_a_key_revoked_on_one_replica_is_refused_by_the_other_within_a_second(self):
        a, b = self.replica(), self.replica()
        for how in ("route", "command"):
            with self.subTest(how=how):
                token = create_key(self.uri, "naver-" + how, "partner", rate=1000)
                wait_status(a, token, 200, 5)
                wait_status(b, token, 200, 5)
                started = time.monotonic()
                if how == "route":
                    revoked = self.call(a, "DELETE", "/v1/admin/keys/" + key_id(token))
                    self.assertEqual(revoked.data, {"revoked": key_id(token)})
                else:
                    result = keys_command(self.uri, "revoke", key_id(token))
                    self.assertEqual(result.returncode, 0, result.stderr)
                    self.assertIn("key %s revoked in postgresql:" % key_id(token),
                                  result.stderr)
                took = time.monotonic() - started
                took += wait_status(b, token, 401, 5)
                print("\n  revoked (%s) on A, refused by B after %.0f ms" % (how, took * 1000))
                self.assertLess(took, REVOCATION_LIMIT_S)
                self.assertEqual(status_of(a, token), 401)
                self.assertError(self.call(b, "DELETE", "/v1/admin/keys/" + key_id(token)),
                                 404, "unknown_key", "id", "no key " + key_id(token))

    def test_two_replicas_under_one_key_admit_the_keys_rate(self):
        a, b = self.replica(), self.replica()
        token = create_key(self.uri, "portal", "partner", rate=SHARED_RATE)
        wait_status(a, token, 200, 5)
        wait_status(b, token, 200, 5)
        (ok_a, limited_a, failed_a), (ok_b, limited_b, failed_b) = push_together([a, b], token)
        self.assertEqual((failed_a, failed_b), (0, 0))
        # Each was asked four times the key's rate, and each refused most of it.
        self.assertGreater(limited_a, ok_a)
        self.assertGreater(limited_b, ok_b)
        ratio = (ok_a + ok_b) / MEASURE_S / SHARED_RATE
        print("\n  two replicas under one key of %d/s admitted %d + %d in %d s: %.3f of its "
              "rate" % (SHARED_RATE, ok_a, ok_b, MEASURE_S, ratio))
        self.assertGreaterEqual(ratio, 0.9)
        self.assertLessEqual(ratio, 1.1)
        # Both took their part, neither starved.
        self.assertGreater(min(ok_a, ok_b), 0.25 * (ok_a + ok_b))

    def test_without_the_database_each_replica_takes_its_share(self):
        a, b = self.replica(), self.replica()
        token = create_key(self.uri, "portal", "partner", rate=SHARED_RATE)
        wait_status(a, token, 200, 5)
        # A counts the live replicas with its beat, once a second: B started after A's first.
        time.sleep(1.5)
        # The usage table gone, as a database that cannot be written would leave it: each of
        # the two live replicas takes half the key's rate alone.
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", self.uri, "-c",
                        "ALTER TABLE epcs_key_usage RENAME TO epcs_key_usage_away"],
                       check=True, capture_output=True)
        deadline = time.monotonic() + 5
        while "each key's rate is divided by 2" not in a.text():
            self.assertLess(time.monotonic(), deadline, a.text())
            time.sleep(0.05)
        (ok, limited, failed), = push_together([a], token)
        ratio = ok / MEASURE_S / (SHARED_RATE / 2)
        print("\n  the usage not shared, one of two replicas admitted %d in %d s: %.3f of half "
              "the key's rate" % (ok, MEASURE_S, ratio))
        self.assertEqual(failed, 0)
        self.assertGreaterEqual(ratio, 0.9)
        self.assertLessEqual(ratio, 1.1)
        # Back: all of the rate again, by itself.
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", self.uri, "-c",
                        "ALTER TABLE epcs_key_usage_away RENAME TO epcs_key_usage"],
                       check=True, capture_output=True)
        deadline = time.monotonic() + 5
        while "sharing rate usage with the other replicas again" not in a.text():
            self.assertLess(time.monotonic(), deadline, a.text())
            time.sleep(0.05)
        (ok, limited, failed), = push_together([a], token)
        ratio = ok / MEASURE_S / SHARED_RATE
        print("  shared again, the same replica alone admitted %.3f of the key's rate" % ratio)
        self.assertGreaterEqual(ratio, 0.9)
        self.assertLessEqual(ratio, 1.1)

    def test_a_keys_file_is_refused_beside_the_database(self):
        server = self.replica("--keys", "/tmp/keys", expect_start=False)
        self.assertEqual(server.process.wait(30), 1)
        self.assertIn("--keys /tmp/keys names a keys file, but with --store postgresql://... the "
                      "keys are in PostgreSQL (epcsd keys ... --store URI): drop --keys",
                      server.text())
        result = keys_command(self.uri, "list", "--keys", "/tmp/keys")
        self.assertEqual(result.returncode, 2)
        self.assertIn("epcsd keys: --keys names a keys file, --store postgresql://... keeps the "
                      "keys in PostgreSQL: give one of them", result.stderr)


class KeyStoreOutageTest(EpcsTest):
    """PostgreSQL away (through a relay that stops answering): a key can be neither made nor
    revoked, and the admin routes say so with a coded 503 within --store-timeout; the keys
    already loaded keep working, and the changes work again once the database is back."""

    TIMEOUT_MS = 500

    def setUp(self):
        uri = fresh_schema("test_key_store_outage")
        self.admin = create_key(uri, "nec-admin", "admin")
        self.partner = create_key(uri, "naver", "partner")
        self.relay = Relay(os.environ["EPCS_TEST_PG"])
        self.addCleanup(self.relay.stop)
        self.server = Server("--store", self.relay.uri("test_key_store_outage"),
                             "--store-timeout", str(self.TIMEOUT_MS), auth=True)
        self.addCleanup(self.server.cleanup)

    def call(self, method, path, body=None):
        return request(self.server, method, path,
                       encode(body, JSON) if body is not None else None,
                       JSON if body is not None else None, JSON, extra=bearer(self.admin))

    def test_key_changes_answer_503_while_the_database_is_away(self):
        self.relay.pause()
        for method, path, body in (("POST", "/v1/admin/keys", {"partner": "kakao",
                                                               "role": "partner"}),
                                   ("DELETE", "/v1/admin/keys/" + key_id(self.partner), None)):
            started = time.monotonic()
            response = self.call(method, path, body)
            took = time.monotonic() - started
            self.assertError(response, 503, "store_unavailable", None,
                             "the key store cannot be reached now; try again")
            # The timeout for the connection and each statement, never a hang.
            self.assertLess(took, self.TIMEOUT_MS / 1000 * 3 + 1)
        # What was loaded still lets its holders in.
        self.assertEqual(status_of(self.server, self.partner), 200)
        self.relay.resume()
        deadline = time.monotonic() + 10
        while True:
            created = self.call("POST", "/v1/admin/keys", {"partner": "kakao", "role": "partner"})
            if created.status == 201 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(created.status, 201, created.raw)
        revoked = self.call("DELETE", "/v1/admin/keys/" + key_id(self.partner))
        self.assertEqual(revoked.status, 200, revoked.raw)
        self.assertEqual(revoked.data, {"revoked": key_id(self.partner)})


if __name__ == "__main__":
    test_api.run_suite(cases_required=False)
