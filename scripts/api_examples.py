#!/usr/bin/python3
"""Prints the per-area examples of docs/api.md from a running epcsd.

    scripts/api_examples.py http://127.0.0.1:8080 > /tmp/examples.md

The integration suite reads the same blocks back out of docs/api.md and replays them against
the real server, so the documented examples cannot drift from what epcsd answers.
"""
import json
import subprocess
import sys

import msgpack

# One realistic request per area, in the order the areas are documented.
EXAMPLES = [
    ("deepfake", {"election": "na22", "area": "deepfake", "date": "2024-02-15",
                  "actor": {"kind": "voter"},
                  "activity": {"kind": "post", "deepfake": True, "purpose": "campaign",
                               "labeled": True}}),
    ("legislative_report", {"election": "na22", "area": "legislative_report",
                            "date": "2024-01-08", "actor": {"kind": "na_member"},
                            "activity": {"kind": "report", "channel": "mail",
                                         "arrival_date": "2024-01-11"}}),
    ("publication_ceremony", {"election": "na22", "area": "publication_ceremony",
                              "date": "2024-02-01", "actor": {"kind": "publisher"},
                              "activity": {"kind": "publication_ceremony",
                                           "book_related_to_candidate": True}}),
    ("advertising", {"election": "na22", "area": "advertising", "date": "2024-02-10",
                     "actor": {"kind": "business"},
                     "activity": {"kind": "advertisement", "medium": "broadcast",
                                  "regular_commercial": True, "related_to_election": False,
                                  "representative_is_prospective_candidate": True,
                                  "appears": False}}),
    ("resignation", {"election": "na22", "area": "resignation", "date": "2024-03-11",
                     "actor": {"kind": "journalist"},
                     "activity": {"kind": "run_for_office", "seat": "proportional",
                                  "received_date": "2024-03-11"}}),
    ("false_information", {"election": "na22", "area": "false_information",
                           "date": "2024-03-20", "actor": {"kind": "voter"},
                           "activity": {"kind": "posting", "category": "false_fact",
                                        "intent": "to_defeat", "target": "candidate"}}),
]


def ask(base, document):
    result = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-H", "content-type: application/json",
         "--data-binary", json.dumps(document), base + "/v1/check"],
        capture_output=True, check=True)
    return json.loads(result.stdout)


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
    areas = json.loads(subprocess.run(["curl", "-sS", "--http2-prior-knowledge",
                                       base + "/v1/areas"], capture_output=True,
                                      check=True).stdout)
    served = {a["name"] for a in areas["areas"]}
    for name, document in EXAMPLES:
        if name not in served:
            continue
        answer = ask(base, document)
        answer["ruleset"] = "rs-…"
        print("<!-- example: %s -->" % name)
        print("#### %s\n" % name)
        print("Request, as JSON (`content-type: application/json`):\n")
        print("```json\n%s\n```\n" % json.dumps(document, ensure_ascii=False, indent=2))
        print("The same request as msgpack (`content-type: application/msgpack`), in hex:\n")
        print("```text\n%s\n```\n" % msgpack.packb(document).hex(" "))
        print("Answer (the same map in either encoding; `ruleset` is the active version id):\n")
        print("```json\n%s\n```\n" % json.dumps(answer, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
