#!/usr/bin/python3
"""Integration tests: the law as epcs applies it, beyond the shared public cases.

Every row of tests/cases/*.tsv (the project's legal cases, one file per area) goes through the
real server in both encodings, and the rule API's guarantees that keep the rule files faithful
are attacked through the real CLI: an area that does not say which actor kinds it leaves out,
and a by-election without the day its cause was confirmed. Shares the harness of test_api.py.
Run through ctest, or directly:
    tests/integration/test_legal.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules --cases ../shared/cases/public.tsv
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, MSGPACK, EpcsTest, ServerTest, check, copy_rules  # noqa: E402

CASES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cases")
EXPECT_KEYS = {"exception", "deadline", "window", "missing", "rule"}


def parse_pairs(text):
    """`k=v; k=v` as a dict; `true`/`false` become booleans."""
    pairs = {}
    for pair in text.split(";"):
        key, value = pair.strip().split("=", 1)
        pairs[key] = test_api.parse_value(value)
    return pairs


def load_project_cases():
    """Every row of tests/cases/*.tsv as a dict with a ready request document."""
    cases = []
    for path in sorted(glob.glob(os.path.join(CASES_DIR, "*.tsv"))):
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if line.startswith("#") or not line.strip():
                    continue
                columns = line.rstrip("\n").split("\t")
                assert len(columns) == 10, "%s:%d has %d columns" % (path, number, len(columns))
                cid, election, area, date, actor, activity, verdict, article, expect, note = columns
                expected = {} if expect == "-" else parse_pairs(expect)
                assert set(expected) <= EXPECT_KEYS, "%s:%d: %s" % (path, number, expect)
                cases.append({
                    "id": cid, "file": os.path.basename(path), "area": area, "verdict": verdict,
                    "article": article, "expect": expected, "note": note,
                    "document": {"election": election, "area": area, "date": date,
                                 "activity": parse_pairs(activity)},
                })
                if actor != "-":
                    cases[-1]["document"]["actor"] = {"kind": actor}
    return cases


def run_rule_tests(rules):
    return subprocess.run([test_api.ARGS.epcsd, "--plugins", test_api.ARGS.plugins,
                           "--test-rules", rules], capture_output=True, text=True, timeout=120)


def refused_edit(name, old, new):
    """--test-rules on the bundled rules with one edit: asserts it fails, returns its output."""
    rules = edited_rules(name, old, new)
    try:
        result = run_rule_tests(rules)
    finally:
        shutil.rmtree(rules)
    assert result.returncode == 1, result.stdout + result.stderr
    return result


def edited_rules(name, old, new):
    """A copy of the bundled rules with `old` replaced once by `new` in file `name`."""
    directory = tempfile.mkdtemp(prefix="epcs-test-legal-")
    copy_rules(directory)
    path = os.path.join(directory, name)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    assert source.count(old) >= 1, "%s lacks %r" % (name, old)
    with open(path, "w", encoding="utf-8") as f:
        f.write(source.replace(old, new, 1))
    return directory


class ProjectCasesTest(ServerTest):
    """tests/cases/*.tsv through the real server."""

    def assert_expected(self, verdict, case):
        self.assertEqual(verdict["verdict"], case["verdict"], case["note"])
        self.assertEqual(verdict["article"], case["article"], case["note"])
        self.assertEqual(verdict["area"], case["area"])
        for key, value in case["expect"].items():
            if key == "window":
                start, end = value.split("..")
                self.assertEqual(verdict.get("window"), {"from": start, "to": end}, case["note"])
            elif key == "missing":
                self.assertEqual(verdict.get("missing"), value.split(","), case["note"])
            else:
                self.assertEqual(verdict.get(key), value, case["note"])
        if "exception" not in case["expect"]:
            self.assertNotIn("exception", verdict, case["note"])

    def test_every_project_case(self):
        cases = load_project_cases()
        ids = [c["id"] for c in cases]
        self.assertEqual(len(ids), len(set(ids)), "duplicate case ids")
        self.assertGreaterEqual(len(cases), 19)
        for case in cases:
            for kind in (MSGPACK, JSON):
                with self.subTest(case=case["id"], encoding=kind):
                    response = check(self.server, case["document"], kind)
                    self.assertEqual(response.status, 200, response.raw)
                    self.assert_expected(response.data, case)

    def test_every_case_is_a_rule_test_too(self):
        """Each row is also in its rule file's tests, so --test-rules and amendments see it."""
        for case in load_project_cases():
            with open(os.path.join(test_api.ARGS.rules, case["area"] + ".lua"),
                      encoding="utf-8") as f:
                self.assertIn('name = "%s: ' % case["id"], f.read(), case["file"])


class AdvertisingFactsTest(ServerTest):
    """Art. 93's ad methods: why a claimed method is refused, and facts that contradict."""

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



class FidelityGuardsTest(EpcsTest):
    """What the rule API refuses or fails so that the rule files keep stating the law."""

    def test_an_actor_kind_left_unstated_fails_the_rule_tests(self):
        result = refused_edit("legislative_report.lua", '"platform", "other"}', '"platform"}')
        self.assertIn("legislative_report.lua: FAIL coverage of legislative_report "
                      "(activities *): actor kind 'other': actor kind 'other' is neither "
                      "covered nor left out by a provision: state which", result.stdout)
        self.assertRegex(result.stdout, r"legislative_report\.lua: \d+ tests .*: \d+ passed, "
                                        r"1 failed")

    def test_a_left_out_kind_is_probed_against_the_rules(self):
        """Rules that judge a kind their statement leaves out fail its probe, by name."""
        result = refused_edit("legislative_report.lua",
                              "    local left_out = COVERAGE:left_out(q)\n    if left_out then\n"
                              "        return left_out\n    end\n", "")
        for kind in ("voter", "other"):
            self.assertIn("legislative_report.lua: FAIL coverage of legislative_report "
                          "(activities *): Art. 111(1) leaves out '%s': " % kind, result.stdout)

    def test_a_kind_both_covered_and_left_out_is_refused_at_load(self):
        result = refused_edit("resignation.lua", 'kinds = {"voter", "reserve_force_commander"',
                              'kinds = {"public_official", "voter", "reserve_force_commander"')
        self.assertRegex(result.stderr, r"resignation\.lua:\d+: coverage entry 1: actor kind "
                                        r"'public_official' is listed twice")

    def test_an_unknown_actor_kind_is_refused_at_load(self):
        result = refused_edit("legislative_report.lua", '"platform", "other"}',
                              '"platform", "other", "mayor"}')
        self.assertRegex(result.stderr, r"legislative_report\.lua:\d+: coverage entry 1: "
                                        r"'mayor' is no actor kind of SPEC section 5")

    def test_an_area_without_coverage_is_refused_at_load(self):
        result = refused_edit("deepfake.lua",
                              'coverage = epcs.coverage {{everyone = "82-8(1)"}},', "")
        self.assertIn("area 'deepfake' needs coverage = epcs.coverage{...}", result.stderr)

    def test_a_policy_entry_without_its_source_is_refused(self):
        result = refused_edit("false_information.lua",
                              'source = "commission practice, set by staff: its reading of',
                              'origin = "commission practice, set by staff: its reading of')
        self.assertRegex(result.stderr, r"false_information\.lua:\d+: policy deletion_due_hours"
                                        r"\[1\] needs from, value and source")

    def test_a_by_election_without_its_cause_is_refused(self):
        result = refused_edit("elections.lua", 'cause_confirmed = "2024-03-09",', "")
        self.assertIn("election 'ganghwa2024': a by-election needs cause_confirmed, the day its "
                      "cause was confirmed", result.stderr)


AMEND_RULES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docker",
                           "amend-rules.py")


class ContainerAmendmentTest(EpcsTest):
    """The two amendments docker/test.sh mounts into the image, checked here against the built
    epcsd: a rule edit that breaks them fails this suite, not only the container stage."""

    def amended(self, variant):
        rules = tempfile.mkdtemp(prefix="epcs-test-amend-")
        self.addCleanup(shutil.rmtree, rules)
        copy_rules(rules)
        subprocess.run([sys.executable, AMEND_RULES, rules, variant], check=True, timeout=30)
        return run_rule_tests(rules)

    def test_the_amendment_with_its_tests_passes(self):
        result = self.amended("accepted")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        # The amendment's one test replaces deepfake.lua's table; four of false_information.lua
        # give way to one.
        self.assertRegex(result.stdout, r"deepfake\.lua: \d+ tests \(1 from the tests table, ")
        bundled = run_rule_tests(test_api.ARGS.rules).stdout
        tables = [int(re.search(r"false_information\.lua: \d+ tests \((\d+) from the tests "
                                r"table", out).group(1)) for out in (bundled, result.stdout)]
        self.assertEqual(tables[1], tables[0] - 3)
        self.assertRegex(result.stdout, r"(?m)^ruleset rs-[0-9a-f]{16}: \d+ passed, 0 failed$")

    def test_the_amendment_without_its_tests_is_refused(self):
        result = self.amended("refused")
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertRegex(result.stdout, r"deepfake\.lua: FAIL .*: verdict is \"allowed\", "
                                        r"expected \"prohibited\"")


if __name__ == "__main__":
    test_api.run_suite()
