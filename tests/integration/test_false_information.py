#!/usr/bin/python3
"""Integration tests of the false_information area's reading of Arts. 250, 251 and 82-4 on the
real epcsd over HTTP/2: whom the articles protect (a party is not a person Art. 251 protects;
candidates' families are), false facts in a party primary (250(3)), slander of prospective
candidates after the Constitutional Court's 2023Hun-Ba78, who receives a referral (the police
for an investigation request, the prosecutors for an accusation, as the dated policy of the
rule file says), and what the case store files from each verdict's actions.

Shares the harness of test_api.py and test_cases.py. Run through ctest, or directly:
    tests/integration/test_false_information.py --epcsd build/epcsd --plugins build/plugins \
        --rules lua_rules --cases ../shared/cases/public.tsv
"""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import JSON, MSGPACK, Server  # noqa: E402
from test_cases import CaseTest, deletion_action  # noqa: E402
from test_service import create_key  # noqa: E402

PENALTY_250_2 = ("Art. 250(2): imprisonment of up to 7 years or a fine of KRW 5 million to "
                 "30 million")
PENALTY_250_3_ELECT = ("Art. 250(3): imprisonment of up to 3 years or a fine of up to KRW 6 "
                       "million (the acts of 250(1) in a party primary)")
PENALTY_250_3_DEFEAT = ("Art. 250(3): imprisonment of up to 5 years or a fine of up to KRW 10 "
                        "million (the acts of 250(2) in a party primary)")
PENALTY_251 = "Art. 251: imprisonment of up to 3 years or a fine of up to KRW 5 million"


def posting(date="2024-03-01", election="na22", **facts):
    return {"election": election, "area": "false_information", "date": date,
            "activity": dict(kind="posting", **facts)}


def referral(form, to, article, penalty):
    return {"kind": "referral", "form": form, "to": to, "article": article, "due_hours": 24,
            "penalty": penalty}


class FalseInformationTest(CaseTest):
    """Keys for a platform, the police, the prosecutors and the commission's staff."""

    @classmethod
    def make_keys(cls):
        cls.scratch = tempfile.mkdtemp(prefix="epcs-test-fi-")
        cls.keys = os.path.join(cls.scratch, "keys")
        cls.tokens = {partner: create_key(cls.keys, partner, role) for partner, role in
                      [("naver", "partner"), ("police", "partner"), ("prosecutors", "partner"),
                       ("nec", "staff")]}

    @classmethod
    def setUpClass(cls):
        cls.make_keys()
        cls.server = Server("--keys", cls.keys, auth=True)

    def decide(self, document):
        """The verdict, asked in both encodings, which must agree."""
        answers = []
        for kind in (MSGPACK, JSON):
            response = self.call("nec", "POST", "/v1/check", document, kind)
            self.assertEqual(response.status, 200, response.raw)
            answers.append(response.document)
        first, second = answers
        first.pop("decision")
        second.pop("decision")
        self.assertEqual(first, second)
        return first

    def report(self, url, category, **facts):
        response = self.call("nec", "POST", "/v1/reports", {
            "url": url, "platform": "naver", "election": "na22", "category": category,
            "date": "2024-03-01", "facts": facts})
        self.assertEqual(response.status, 201, response.raw)
        return response.document

    def test_a_party_is_not_protected_by_article_251(self):
        verdict = self.decide(posting(category="slander", target="party", true_facts=False,
                                      public_interest=False))
        self.assertEqual((verdict["verdict"], verdict["article"], verdict["exception"],
                          verdict["deadline"]),
                         ("allowed", "251", "not_protected", "2024-04-10"))
        self.assertNotIn("actions", verdict)
        self.assertNotIn("penalty", verdict)
        self.assertIn("not a party as this posting concerns it", verdict["reason"])
        filed = self.report("https://blog.naver.com/fi/party", "slander", target="party",
                            true_facts=False, public_interest=False)
        self.assertEqual((filed["status"], filed["requests"]), ("no_action", []))

    def test_whom_article_250_protects(self):
        cases = [
            ({"target": "candidate_family", "intent": "to_defeat"}, "prohibited", "250(2)"),
            ({"target": "party", "intent": "to_elect", "support_for": "candidate"},
             "prohibited", "250(1)"),
            ({"target": "party", "intent": "to_defeat", "support_for": "none"}, "allowed",
             "250"),
            ({"target": "other", "intent": "to_defeat", "support_for": "none"}, "allowed",
             "250"),
        ]
        for facts, verdict, article in cases:
            with self.subTest(facts=facts):
                answer = self.decide(posting(category="false_fact", **facts))
                self.assertEqual((answer["verdict"], answer["article"]), (verdict, article))
                self.assertEqual("actions" in answer, verdict == "prohibited")
        asked = self.decide(posting(category="false_fact", intent="to_elect", target="party"))
        self.assertEqual((asked["verdict"], asked["article"], asked["missing"]),
                         ("needs_facts", "250", ["activity.support_for"]))
        asked = self.decide(posting(category="slander", true_facts=False))
        self.assertEqual(asked["missing"], ["activity.target"])

    def test_false_facts_in_a_party_primary(self):
        elect = self.decide(posting("2026-04-01", "local9", category="false_fact",
                                    intent="to_elect", target="primary_contender"))
        self.assertEqual((elect["verdict"], elect["article"], elect["penalty"], elect["deadline"]),
                         ("prohibited", "250(3)", PENALTY_250_3_ELECT, "2026-06-03"))
        self.assertEqual(elect["actions"][1], referral("investigation_request", "police",
                                                       "250(3)", PENALTY_250_3_ELECT))
        defeat = self.decide(posting("2026-04-01", "local9", category="false_fact",
                                     intent="to_defeat", target="primary_contender_family"))
        self.assertEqual((defeat["article"], defeat["penalty"]), ("250(3)", PENALTY_250_3_DEFEAT))
        after = self.decide(posting("2026-06-04", "local9", category="false_fact",
                                    intent="to_defeat", target="primary_contender"))
        self.assertEqual((after["verdict"], after["exception"]), ("allowed", "after_election_day"))

    def test_support_for_contradicting_the_target_is_refused(self):
        for kind in (MSGPACK, JSON):
            response = self.call("nec", "POST", "/v1/check", posting(
                category="false_fact", intent="to_elect", target="candidate",
                support_for="candidate"), kind)
            self.assertError(response, 422, "invalid_fact", "activity.support_for",
                             "activity.support_for is for a target that is a party or another "
                             "person or group; a posting about a (prospective) candidate, a "
                             "primary contender or their family is judged as about them")

    def test_slander_of_a_prospective_candidate_is_deleted_not_referred(self):
        verdict = self.decide(posting(category="slander", target="prospective_candidate",
                                      true_facts=False))
        self.assertEqual((verdict["verdict"], verdict["article"], verdict["actions"]),
                         ("prohibited", "82-4(2)", [deletion_action()]))
        self.assertNotIn("penalty", verdict)
        self.assertIn("2023Hun-Ba78", verdict["reason"])
        filed = self.report("https://blog.naver.com/fi/prospective", "slander",
                            target="prospective_candidate", true_facts=False)
        self.assertEqual([(r["kind"], r["to"]) for r in filed["requests"]],
                         [("deletion_request", "naver")])
        # Before 2013-06-28 Art. 251 still punished it.
        before = self.decide(posting("2013-06-27", "byel2021_busan", category="slander",
                                     target="prospective_candidate", true_facts=False))
        self.assertEqual((before["article"], before["penalty"]), ("251", PENALTY_251))

    def test_referrals_go_where_the_policy_says(self):
        """An unidentified poster: an investigation request, in the police's queue; an
        identified one: an accusation, in the prosecutors'."""
        unknown = self.report("https://blog.naver.com/fi/unknown", "false_fact",
                              intent="to_defeat", target="candidate")
        known = self.report("https://blog.naver.com/fi/known", "false_fact", intent="to_defeat",
                            target="candidate", poster_identified=True)
        self.assertEqual([(r["kind"], r["to"], r["action"].get("form")) for r in
                          unknown["requests"]],
                         [("deletion_request", "naver", None),
                          ("referral", "police", "investigation_request")])
        self.assertEqual(known["requests"][1]["action"],
                         referral("accusation", "prosecutors", "250(2)", PENALTY_250_2))
        first = "?after=%d" % (unknown["requests"][0]["id"] - 1)
        self.assertEqual([r["id"] for r in self.queue("police", first)["requests"]],
                         [unknown["requests"][1]["id"]])
        self.assertEqual([r["id"] for r in self.queue("prosecutors", first)["requests"]],
                         [known["requests"][1]["id"]])
        # The deletion request's escalation (the platform ignoring it twice) is an accusation.
        self.assertEqual(unknown["requests"][0]["action"]["escalation"]["to"], "prosecutors")

    def test_a_dated_policy_entry_takes_over_from_its_day(self):
        """Staff add an entry to a policy parameter: postings from its day get it, earlier
        ones keep the entry before."""
        rules = tempfile.mkdtemp(prefix="epcs-test-fi-rules-")
        try:
            test_api.copy_rules(rules)
            path = os.path.join(rules, "false_information.lua")
            with open(path, encoding="utf-8") as f:
                source = f.read()
            anchor = "investigation requests to the police\"},\n"
            self.assertEqual(source.count(anchor), 1)
            source = source.replace(anchor, anchor + (
                '        {from = "2024-03-02", value = "cyber_bureau", source = "drill"},\n'))
            with open(path, "w", encoding="utf-8") as f:
                f.write(source)
            server = Server(rules=rules)
            try:
                for date, to in (("2024-03-01", "police"), ("2024-03-02", "cyber_bureau")):
                    response = test_api.check(server, posting(date, category="false_fact",
                                                              intent="to_defeat",
                                                              target="candidate"), JSON)
                    self.assertEqual(response.status, 200, response.raw)
                    self.assertEqual(response.data["actions"][1]["to"], to)
                self.assertEqual(server.stop(), 0)
            finally:
                server.cleanup()
        finally:
            shutil.rmtree(rules)


if __name__ == "__main__":
    test_api.run_suite()
