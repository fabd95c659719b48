#!/usr/bin/python3
"""The advertising area (Art. 93) on the real epcsd over HTTP/2: every row of
tests/cases/advertising.tsv in both encodings (the methods the Act provides, by-elections, the
proviso for periodicals' sales ads, the Constitutional Court's gap), and the facts the plugin
refuses because they contradict each other.

Shares the harness of test_api.py. Run through ctest, or directly:
    tests/integration/test_advertising.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, MSGPACK, EpcsTest, Server, check, parse_value  # noqa: E402

CASES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cases",
                     "advertising.tsv")


def load_rows(path):
    """The rows of an area's cases file: the request, the verdict, article and expect keys."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cid, election, area, date, actor, activity, verdict, article, expect, note = \
                line.rstrip("\n").split("\t")
            facts = dict((k.strip(), parse_value(v.strip())) for k, v in
                         (pair.split("=", 1) for pair in activity.split(";")))
            document = {"election": election, "area": area, "date": date, "activity": facts}
            if actor != "-":
                document["actor"] = {"kind": actor}
            expected = {} if expect == "-" else dict(
                (k.strip(), v.strip()) for k, v in (p.split("=", 1) for p in expect.split(";")))
            rows.append((cid, document, verdict, article, expected, note))
    return rows


class AdvertisingTest(EpcsTest):
    @classmethod
    def setUpClass(cls):
        cls.server = Server()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def assertRow(self, cid, data, verdict, article, expected):
        self.assertEqual((data["verdict"], data["article"]), (verdict, article), cid)
        for key, value in expected.items():
            if key == "window":
                self.assertEqual("%s..%s" % (data["window"]["from"], data["window"]["to"]),
                                 value, cid)
            elif key == "missing":
                self.assertEqual(data["missing"], value.split(","), cid)
            else:
                self.assertEqual(data[key], value, cid)

    def test_every_case_row(self):
        rows = load_rows(CASES)
        self.assertEqual([r[0] for r in rows], ["a%02d" % i for i in range(1, len(rows) + 1)])
        for cid, document, verdict, article, expected, note in rows:
            for kind in (MSGPACK, JSON):
                response = check(self.server, document, kind)
                self.assertEqual(response.status, 200, "%s: %s" % (cid, response.raw))
                self.assertRow(cid, response.data, verdict, article, expected)

    def test_refused_method_says_why(self):
        """A prospective candidate's 'Art. 69' ad before the election period: prohibited, and
        the reason names the days Art. 69(1) allows."""
        data = check(self.server, {
            "election": "na22", "area": "advertising", "date": "2024-02-10",
            "actor": {"kind": "prospective_candidate"},
            "activity": {"kind": "advertisement", "medium": "newspaper",
                         "shows_name": "prospective_candidate", "authorized_by": "69"}}).data
        self.assertEqual((data["verdict"], data["article"]), ("prohibited", "93(2)"))
        self.assertNotIn("exception", data)
        self.assertIn("Art. 69(1) newspaper ads run only from 2024-03-28, the first day of the "
                      "election period, to 2024-04-08", data["reason"])
        self.assertIn("선거기간개시일인 2024-03-28부터 2024-04-08까지만", data["reason_ko"])

    def test_contradicting_facts_are_refused(self):
        base = {"election": "na22", "area": "advertising", "date": "2024-04-01",
                "activity": {"kind": "advertisement", "medium": "newspaper",
                             "shows_name": "party", "authorized_by": "69"}}
        party = dict(base, activity=dict(base["activity"], advertiser="recommending_party",
                                         party_recommended=True))
        head = dict(base, election="ganghwa2024", date="2024-10-05",
                    activity=dict(base["activity"], local_race="local_head",
                                  seat="constituency"))
        for kind in (MSGPACK, JSON):
            self.assertError(check(self.server, party, kind), 422, "invalid_fact",
                             "activity.party_recommended",
                             "activity.party_recommended describes a candidate placing the ad, "
                             "but activity.advertiser is 'recommending_party'")
            self.assertError(check(self.server, head, kind), 422, "invalid_fact",
                             "activity.seat",
                             "activity.seat names a council or National Assembly seat, but "
                             "activity.local_race is a head's race, which has none")
            bad = dict(base, activity=dict(base["activity"], advertiser="the mayor"))
            self.assertError(check(self.server, bad, kind), 422, "invalid_fact",
                             "activity.advertiser",
                             "activity.advertiser: unknown value 'the mayor'")
        # The same facts without the contradiction are answered.
        fine = dict(party, activity=dict(party["activity"], seat="proportional"))
        del fine["activity"]["party_recommended"]
        data = check(self.server, fine).data
        self.assertEqual((data["verdict"], data["exception"]),
                         ("allowed", "method_provided_by_act"))


if __name__ == "__main__":
    test_api.run_suite(cases_required=False)
