#!/usr/bin/python3
"""Integration tests: a plugin built against the previous plugin header, served by this epcsd.

tests/plugins/abi1_plugin.c is the publication_ceremony area compiled against ABI 1's header
(tests/plugins/abi1/epcs/plugin.h), whose fact value has no size. Put in place of the shipped
plugin, it must load, answer every check exactly as the shipped plugin does, and read every kind
of fact through the host API as it did when it was built, with nothing written past its struct
(it checks guard bytes after one copy; under ASan its exact-size heap copy would abort epcsd).
Shares the harness of test_api.py. Run through ctest, or directly:
    EPCS_TEST_PLUGIN_DIR=build/test_plugins tests/integration/test_plugin_abi.py \
        --epcsd build/epcsd --plugins build/plugins --rules lua_rules \
        --cases ../shared/cases/public.tsv
"""

import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_api  # noqa: E402
from test_api import AREAS, JSON, MSGPACK, EpcsTest, Server, check, request  # noqa: E402

AREA = "publication_ceremony"


def abi1_plugins():
    """A plugin directory with the shipped plugins, publication_ceremony's built against ABI 1."""
    directory = tempfile.mkdtemp(prefix="epcs-test-plugins-abi1-")
    for name in os.listdir(test_api.ARGS.plugins):
        if name.endswith(".so") and name != AREA + ".so":
            os.symlink(os.path.abspath(os.path.join(test_api.ARGS.plugins, name)),
                       os.path.join(directory, name))
    old = os.path.join(os.environ["EPCS_TEST_PLUGIN_DIR"], "abi1", "abi1.so")
    os.symlink(os.path.abspath(old), os.path.join(directory, AREA + ".so"))
    return directory


def documents():
    """The shared cases of the area and the rule file's other branches."""
    shared = [c["document"] for c in test_api.load_cases(test_api.ARGS.cases)
              if c["area"] == AREA]
    assert len(shared) == 2, shared
    base = {"election": "na22", "area": AREA, "actor": {"kind": "candidate"}}
    return shared + [
        dict(base, date="2024-02-01", activity={"kind": AREA, "book_related_to_candidate": False}),
        dict(base, date="2024-04-10", activity={"kind": AREA}),
        dict(base, date="2024-04-11", activity={"kind": AREA}),
        dict(base, election="pres21", date="2025-04-04",
             activity={"kind": AREA, "book_related_to_candidate": True}),
    ]


class OldAbiPluginTest(EpcsTest):
    @classmethod
    def setUpClass(cls):
        cls.plugins = abi1_plugins()
        cls.server = Server(plugins=cls.plugins)
        cls.shipped = Server()

    @classmethod
    def tearDownClass(cls):
        statuses = [cls.server.stop(), cls.shipped.stop()]
        log = cls.server.text()
        cls.server.cleanup()
        cls.shipped.cleanup()
        shutil.rmtree(cls.plugins)
        assert statuses == [0, 0], "epcsd exited with %s" % statuses
        assert "wrote past" not in log and "AddressSanitizer" not in log, log

    def test_loaded_beside_the_others(self):
        self.assertIn("loaded area 'publication_ceremony' (Art. 103(5)) from %s/%s.so"
                      % (self.plugins, AREA), self.server.text())
        areas = request(self.server, "GET", "/v1/areas").data["areas"]
        self.assertEqual([a["name"] for a in areas], AREAS)
        area = areas[AREAS.index(AREA)]
        self.assertEqual(area["description"],
                         "Art. 103(5), as a plugin built against ABI 1's header.")
        self.assertIn({"path": "activity.abi_probe", "type": "string"}, area["facts"])

    def test_answers_as_the_shipped_plugin(self):
        verdicts = set()
        for document in documents():
            for kind in (MSGPACK, JSON):
                with self.subTest(document=document, encoding=kind):
                    old = check(self.server, document, kind)
                    shipped = check(self.shipped, document, kind)
                    self.assertEqual(old.status, 200, old.raw)
                    self.assertEqual(shipped.status, 200, shipped.raw)
                    self.assertEqual(old.data, shipped.data)
                    verdicts.add(old.data["verdict"])
        self.assertEqual(verdicts, {"allowed", "prohibited", "needs_facts"})

    def test_reads_every_kind_of_fact_as_built(self):
        """The plugin refuses a request carrying abi_probe=echo with what it read: an enum, a
        boolean, a date (day number and text), the day of the act and a string."""
        document = {"election": "na22", "area": AREA, "date": "2024-02-01",
                    "actor": {"kind": "publisher"},
                    "activity": {"kind": AREA, "book_related_to_candidate": True,
                                 "abi_day": "2024-04-10", "abi_probe": "echo"}}
        for kind in (MSGPACK, JSON):
            with self.subTest(encoding=kind):
                self.assertError(
                    check(self.server, document, kind), 422, "invalid_fact",
                    field="activity.abi_probe",
                    message="read: actor.kind=2:publisher activity.kind=2:publication_ceremony "
                            "activity.book_related_to_candidate=bool:1 "
                            "activity.abi_day=date:19823:2024-04-10 date=date:19754: "
                            "activity.abi_probe=4:echo")

    def test_absent_facts_read_as_absent(self):
        document = {"election": "na22", "area": AREA, "date": "1970-01-01",
                    "activity": {"abi_probe": "echo"}}
        self.assertError(
            check(self.server, document), 422, "invalid_fact", field="activity.abi_probe",
            message="read: actor.kind=absent activity.kind=absent "
                    "activity.book_related_to_candidate=absent activity.abi_day=absent "
                    "date=date:0: activity.abi_probe=4:echo")


if __name__ == "__main__":
    test_api.run_suite(cases_must_exist=True)
