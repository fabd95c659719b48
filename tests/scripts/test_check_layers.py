#!/usr/bin/python3
"""scripts/check_layers.py against small server trees, each breaking one rule of the layers.

Every tree is written to a temporary directory; the script must name the file, the line and
the rule, and exit 1; a tree that keeps the rules exits 0. The real server/ is checked by the
build itself (CMakeLists.txt). Run through ctest, or directly:
    tests/scripts/test_check_layers.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts",
                      "check_layers.py")

# A tree that keeps every rule: core below store and auth, http above them, cli on top.
GOOD = {
    "core/check.h": "#include <msgpack.h>\n#include \"epcs/plugin.h\"\n",
    "core/check.c": "#include \"check.h\"\n",
    "store/store.h": "#include \"check.h\"\n",
    "store/sqlite/cases.c": "#include <sqlite3.h>\n#include \"store.h\"\n",
    "auth/keys.h": "#include \"check.h\"\n",
    "http/server.h": "#include <h2o.h>\n#include <uv.h>\n#include \"store.h\"\n#include \"keys.h\"\n",
    "http/routes/check.c": "#include \"server.h\"\n#include <h2o/http2.h>\n",
    "cli/main.c": "#include \"server.h\"\n",
}


def run(tree):
    root = tempfile.mkdtemp(prefix="epcs-test-layers-")
    try:
        for path, text in tree.items():
            full = os.path.join(root, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
        result = subprocess.run([sys.executable, SCRIPT, root], capture_output=True, text=True,
                                timeout=30)
        return result.returncode, result.stdout.replace(root, "SERVER")
    finally:
        shutil.rmtree(root)


def broken(**changes):
    tree = dict(GOOD)
    tree.update(changes)
    return tree


class CheckLayersTest(unittest.TestCase):
    def assertBroken(self, tree, *lines):
        code, out = run(tree)
        self.assertEqual(code, 1, out)
        for line in lines:
            self.assertIn("check_layers: " + line + "\n", out)
        self.assertIn("check_layers: %d rule(s) broken in SERVER\n" % len(lines), out)

    def test_a_tree_in_layers_passes(self):
        code, out = run(GOOD)
        self.assertEqual(code, 0, out)
        self.assertEqual(out, "check_layers: 8 files of SERVER keep their layers\n")

    def test_core_may_not_include_the_transport(self):
        self.assertBroken(broken(**{"core/check.c": "#include \"check.h\"\n#include <h2o.h>\n"}),
                          "core/check.c:2: includes <h2o.h>, which only http/ may include")

    def test_only_http_includes_uv(self):
        self.assertBroken(broken(**{"store/sqlite/cases.c": "#include <sqlite3.h>\n#include <uv.h>\n"}),
                          "store/sqlite/cases.c:2: includes <uv.h>, which only http/ may include")

    def test_only_store_includes_sqlite(self):
        self.assertBroken(broken(**{"http/routes/check.c": "#include <sqlite3.h>\n"}),
                          "http/routes/check.c:1: includes <sqlite3.h>, which only store/ may "
                          "include")

    def test_a_lower_layer_may_not_include_a_higher_one(self):
        self.assertBroken(broken(**{"auth/keys.h": "#include \"server.h\"\n"}),
                          'auth/keys.h:1: includes "server.h" of http/, which auth/ may not (it '
                          "may include auth, core)",
                          "the folders include each other in a loop: auth -> http -> auth")

    def test_a_loop_between_folders_is_named(self):
        self.assertBroken(broken(**{"core/check.c": "#include \"check.h\"\n#include \"store.h\"\n"}),
                          'core/check.c:2: includes "store.h" of store/, which core/ may not (it '
                          "may include core)",
                          "the folders include each other in a loop: core -> store -> core")

    def test_a_file_outside_the_layers_is_refused(self):
        self.assertBroken(broken(**{"loose.c": "\n"}),
                          "loose.c: outside every layer folder (core, store, auth, http, cli)")

    def test_a_folder_that_is_no_layer_is_refused(self):
        self.assertBroken(broken(**{"misc/x.c": "\n"}),
                          "misc/x.c: folder misc/ is no layer (core, store, auth, http, cli)")

    def test_two_headers_of_one_name_are_refused(self):
        self.assertBroken(broken(**{"http/check.h": "\n"}),
                          "core/check.h: header name also used by http/check.h; includes would "
                          "be ambiguous")


if __name__ == "__main__":
    unittest.main()
