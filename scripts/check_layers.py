#!/usr/bin/python3
"""Fails when a file of server/ breaks the layering of docs/architecture.md.

server/ is in folders by layer. Each folder may include the headers of the folders listed for it
below and no others, the folder include graph must have no loop, and the system headers of the
transport and the databases belong to one folder each: nothing in core/ includes h2o, uv or a
database, only store/ includes sqlite3.h or libpq-fe.h, only http/ includes h2o.h or uv.h.

    scripts/check_layers.py [SERVER_DIR]        (default: server/ beside this script)

Prints one line per broken rule, naming the file, the line and the include, and exits 1; exits
0 with a one-line summary when every rule holds. The build runs it (CMakeLists.txt), so a file
that breaks a rule fails the build.
"""

import os
import re
import sys

# Which folders each folder's files may include from. Sub-folders belong to their top folder
# (http/routes/ is http/).
MAY_INCLUDE = {
    "core": {"core"},
    "store": {"core", "store"},
    "auth": {"core", "auth"},
    "http": {"core", "store", "auth", "http"},
    "cli": {"core", "store", "auth", "http", "cli"},
}

# System headers only one folder may include, by the path as written in the #include.
OWNED_HEADERS = [
    (re.compile(r"^(h2o\.h|h2o/.*)$"), "http"),
    (re.compile(r"^uv\.h$"), "http"),
    (re.compile(r"^sqlite3\.h$"), "store"),
    (re.compile(r"^libpq-fe\.h$"), "store"),
]

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def folder_of(server, path):
    rel = os.path.relpath(path, server)
    return rel.split(os.sep)[0] if os.sep in rel else None


def sources(server):
    for root, _, files in os.walk(server):
        for name in sorted(files):
            if name.endswith((".c", ".h")):
                yield os.path.join(root, name)


def header_folders(server, problems):
    """Each project header's folder, by the name files include it by (its base name)."""
    found = {}
    for path in sources(server):
        if not path.endswith(".h"):
            continue
        name = os.path.basename(path)
        if name in found:
            problems.append("%s: header name also used by %s; includes would be ambiguous"
                            % (os.path.relpath(path, server), found[name][1]))
        found[name] = (folder_of(server, path), os.path.relpath(path, server))
    return {name: folder for name, (folder, _) in found.items()}


def find_loop(edges):
    """A loop in the folder graph as a list of folders (first == last), or None."""
    done = set()

    def visit(node, trail):
        for nxt in sorted(edges.get(node, ())):
            if nxt in trail:
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in done:
                loop = visit(nxt, trail + [nxt])
                if loop:
                    return loop
        done.add(node)
        return None

    for node in sorted(edges):
        if node not in done:
            loop = visit(node, [node])
            if loop:
                return loop
    return None


def check(server):
    problems = []
    headers = header_folders(server, problems)
    edges = {}
    files = 0
    for path in sources(server):
        files += 1
        rel = os.path.relpath(path, server)
        folder = folder_of(server, path)
        if folder is None:
            problems.append("%s: outside every layer folder (%s)" % (rel, ", ".join(MAY_INCLUDE)))
            continue
        if folder not in MAY_INCLUDE:
            if folder != "compat":
                problems.append("%s: folder %s/ is no layer (%s)"
                                % (rel, folder, ", ".join(MAY_INCLUDE)))
            continue
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                match = INCLUDE.match(line)
                if not match:
                    continue
                quoted, name = match.group(1) == '"', match.group(2)
                for pattern, owner in OWNED_HEADERS:
                    if pattern.match(name) and folder != owner:
                        problems.append("%s:%d: includes <%s>, which only %s/ may include"
                                        % (rel, number, name, owner))
                if not quoted:
                    continue
                target = headers.get(os.path.basename(name))
                if target is None:
                    continue  # a public header (epcs/plugin.h) or a generated one
                if target != folder:
                    edges.setdefault(folder, set()).add(target)
                if target not in MAY_INCLUDE[folder]:
                    problems.append('%s:%d: includes "%s" of %s/, which %s/ may not (it may '
                                    "include %s)" % (rel, number, name, target, folder,
                                                     ", ".join(sorted(MAY_INCLUDE[folder]))))
    loop = find_loop(edges)
    if loop:
        problems.append("the folders include each other in a loop: %s" % " -> ".join(loop))
    return files, problems


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    server = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "server")
    server = os.path.normpath(server)
    files, problems = check(server)
    for problem in problems:
        print("check_layers: %s" % problem)
    if problems:
        print("check_layers: %d rule(s) broken in %s" % (len(problems), server))
        return 1
    print("check_layers: %d files of %s keep their layers" % (files, server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
