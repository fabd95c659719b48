#!/usr/bin/python3
"""Amends a copy of lua_rules/ the way commission staff would, for docker/test.sh.

Both variants narrow Art. 82-8's window from D-90 to D-30, so 2024-02-15 (D-55) falls outside
it. "refused" leaves the tests expecting D-90, so epcsd must refuse the ruleset; "accepted"
also replaces the tests that pinned the old window with ones for the new window, in
deepfake.lua and in false_information.lua (which judges reported deepfakes by the deepfake
area's window). The boundary probes follow the window by themselves.

    docker/amend-rules.py RULES_DIR refused|accepted

tests/integration/test_legal.py runs both against the built epcsd, so a rule edit that breaks
this amendment fails the test suite, not only the container stage.
"""

import os
import re
import sys

OLD_WINDOW = ("local campaign_window = epcs.window "
              "{from = D(90), to = D(0), from_cause_confirmed = true}")

DEEPFAKE_TESTS = '''
    tests = {
        {
            name = "amended to D-30: 2024-02-15 (D-55) is outside the window",
            election = "na22", date = "2024-02-15", actor = {kind = "voter"},
            activity = {kind = "post", deepfake = true, purpose = "campaign", labeled = true},
            expect = {verdict = "allowed", article = "82-8(2)",
                      window = {from = "2024-03-11", to = "2024-04-10"}},
        },
    },
}
'''

FALSE_INFORMATION_TEST = '''        {
            name = "amended to D-30: a labeled campaign deepfake at D-55 is allowed",
            election = "na22", date = "2024-02-15",
            activity = {kind = "posting", category = "deepfake", deepfake = true,
                        purpose = "campaign", labeled = true},
            expect = {verdict = "allowed", article = "82-8(2)",
                      window = {from = "2024-03-11", to = "2024-04-10"}},
        },
'''

# The tests of false_information.lua whose dates lie between D-90 and D-30 of their election.
PINNED = ("f17", "f18", "f20", "f24")


def amend_deepfake(path, accepted):
    text = open(path, encoding="utf-8").read()
    if text.count(OLD_WINDOW) != 1:
        sys.exit("amend-rules: %s no longer defines the D-90 window this amendment narrows" % path)
    text = text.replace(OLD_WINDOW, OLD_WINDOW.replace("D(90)", "D(30)"))
    if accepted:
        tests = re.compile(r"\n    tests = \{\n.*\n    \},\n\}\n*\Z", re.S)
        if not tests.search(text):
            sys.exit("amend-rules: %s no longer ends with the area's tests table" % path)
        text = tests.sub(DEEPFAKE_TESTS, text)
    open(path, "w", encoding="utf-8").write(text)


def amend_false_information(path):
    text = open(path, encoding="utf-8").read()
    pinned = re.compile(r'\n        \{\n            name = "(%s):.*?\n        \},' % "|".join(PINNED),
                        re.S)
    found = pinned.findall(text)
    if sorted(found) != sorted(PINNED):
        sys.exit("amend-rules: %s: expected the tests %s that pin the D-90 window, found %s"
                 % (path, ", ".join(PINNED), ", ".join(found) or "none"))
    text = pinned.sub("", text)
    head = "\n    tests = {\n"
    if text.count(head) != 1:
        sys.exit("amend-rules: %s has no single tests table" % path)
    text = text.replace(head, head + FALSE_INFORMATION_TEST)
    open(path, "w", encoding="utf-8").write(text)


def main():
    if len(sys.argv) != 3 or sys.argv[2] not in ("refused", "accepted"):
        sys.exit("usage: amend-rules.py RULES_DIR refused|accepted")
    rules, variant = sys.argv[1], sys.argv[2]
    amend_deepfake(os.path.join(rules, "deepfake.lua"), variant == "accepted")
    if variant == "accepted":
        amend_false_information(os.path.join(rules, "false_information.lua"))


if __name__ == "__main__":
    main()
