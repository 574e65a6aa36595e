#!/usr/bin/env python3
"""Compares the RBAC the chart renders with the permissions table a README states.

    chart-rbac.py --fullname citystack --release-namespace NS --watched a,b \\
        --render all=ALL.json --render namespaced=NS.json --render trusted=TRUSTED.json README.md...

Each --render is `helm template` output converted to JSON (kubectl create --dry-run=client
-o json): `all` with default values, `namespaced` with watchNamespaces=a,b, `trusted` with
azure.trustedNamespaces (and an identity) set. Each README holds a table between
`<!-- rbac-table -->` and `<!-- end rbac-table -->` with the columns
API group | Resource | Verbs | Names | Where | When, where Where is `watched namespaces`,
`release namespace` or `cluster` and When is `always` or `azure.trustedNamespaces set`;
Names is `any` or names, and a parenthesised remark in a cell is ignored.

A rule's place follows from the object holding it: the ClusterRole <fullname> (all
namespaces) or a Role in each watched namespace is `watched namespaces`; a Role in the
release namespace is `release namespace`; the ClusterRole <fullname>-selfcheck is `cluster`.
Any other Role or ClusterRole, a role without a binding to the chart's ServiceAccount, and any
difference in either direction (a grant the README omits, a README row the chart does not
grant) fails. Exit 0 when every README matches every render.
"""

import argparse
import json
import re
import sys

WHERE = ("watched namespaces", "release namespace", "cluster")
WHEN = ("always", "azure.trustedNamespaces set")


def readme_table(path):
    """The rows of the rbac-table of a README as (where, group, resource, names, verb) -> when."""
    with open(path) as f:
        text = f.read()
    match = re.search(r"<!-- rbac-table[^>]*-->\n(.*?)<!-- end rbac-table -->", text, re.S)
    if not match:
        raise ValueError(f"{path}: no <!-- rbac-table --> ... <!-- end rbac-table --> block")
    rows = {}
    lines = [l for l in match.group(1).splitlines() if l.startswith("|")]
    for line in lines[2:]:  # after the header and the --- line
        # A parenthesised remark in a cell explains; it is not part of the value.
        cells = [re.sub(r"\s*\([^)]*\)", "", c).strip().replace("`", "") for c in line.strip().strip("|").split("|")]
        if len(cells) != 6:
            raise ValueError(f"{path}: expected 6 cells in {line!r}")
        group, resource, verbs, names, where, when = cells
        group = "" if group == '""' else group
        if where not in WHERE or when not in WHEN:
            raise ValueError(f"{path}: Where must be one of {WHERE}, When one of {WHEN}: {line!r}")
        names = () if names == "any" else tuple(sorted(n.strip() for n in names.split(",")))
        for verb in (v.strip() for v in verbs.split(",")):
            key = (where, group, resource, names, verb)
            if key in rows:
                raise ValueError(f"{path}: {key} is listed twice")
            rows[key] = when
    return rows


def grants(role):
    """(group, resource, names, verb) of every rule of a Role or ClusterRole."""
    out = set()
    for rule in role.get("rules") or []:
        names = tuple(sorted(rule.get("resourceNames") or ()))
        for group in rule.get("apiGroups") or [""]:
            for resource in rule.get("resources") or []:
                for verb in rule.get("verbs") or []:
                    out.add((group, resource, names, verb))
    return out


def load(path):
    """The objects of a file of one or more JSON documents, each an object or a List."""
    with open(path) as f:
        text = f.read()
    decoder, items, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        doc, at = decoder.raw_decode(text, at)
        items.extend(doc.get("items", [doc]))
    return items


def rendered(objects, fullname, release_ns, watched, sa, mode):
    """(where, group, resource, names, verb) the render grants; problems found on the way."""
    problems, out = [], set()
    bound = set()
    for o in objects:
        if o["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            subjects = o.get("subjects") or []
            if any(s.get("kind") == "ServiceAccount" and s.get("name") == sa and s.get("namespace") == release_ns
                   for s in subjects):
                bound.add((o["roleRef"]["kind"], o["roleRef"]["name"], o["metadata"].get("namespace")))
    per_watched = {}
    for o in objects:
        if o["kind"] not in ("Role", "ClusterRole"):
            continue
        name, ns = o["metadata"]["name"], o["metadata"].get("namespace")
        if (o["kind"], name, ns if o["kind"] == "Role" else None) not in bound:
            problems.append(f"{mode}: {o['kind']} {name} is not bound to ServiceAccount {release_ns}/{sa}")
        if o["kind"] == "ClusterRole" and name == fullname and mode != "namespaced":
            where = "watched namespaces"
        elif o["kind"] == "ClusterRole" and name == f"{fullname}-selfcheck":
            where = "cluster"
        elif o["kind"] == "Role" and ns == release_ns:
            where = "release namespace"
        elif o["kind"] == "Role" and mode == "namespaced" and ns in watched:
            where = "watched namespaces"
            per_watched[ns] = grants(o)
        else:
            problems.append(f"{mode}: unexpected {o['kind']} {name}{' in ' + ns if ns else ''}")
            continue
        out |= {(where, *g) for g in grants(o)}
    if mode == "namespaced":
        if sorted(per_watched) != sorted(watched):
            problems.append(f"namespaced: a Role in each of {watched}, found in {sorted(per_watched)}")
        elif len({frozenset(g) for g in per_watched.values()}) != 1:
            problems.append("namespaced: the watched namespaces' Roles differ")
    return out, problems


def show(key):
    where, group, resource, names, verb = key
    return f"{verb} {resource} (group {group or 'core'!r}{', names ' + ','.join(names) if names else ''}) in {where}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fullname", required=True)
    parser.add_argument("--release-namespace", required=True)
    parser.add_argument("--service-account", required=True)
    parser.add_argument("--watched", required=True, help="the namespaces of the namespaced render, comma-separated")
    parser.add_argument("--render", action="append", required=True, help="MODE=FILE, MODE all, namespaced or trusted")
    parser.add_argument("readmes", nargs="+")
    args = parser.parse_args()
    watched = args.watched.split(",")
    renders = dict(r.split("=", 1) for r in args.render)
    if sorted(renders) != ["all", "namespaced", "trusted"]:
        parser.error("--render all=..., namespaced=... and trusted=... are all needed")

    problems = []
    granted = {}
    for mode, path in renders.items():
        got, found = rendered(load(path), args.fullname, args.release_namespace, watched, args.service_account, mode)
        granted[mode] = got
        problems += found
    for readme in args.readmes:
        table = readme_table(readme)
        for mode, got in granted.items():
            wanted = {k for k, when in table.items() if when == "always" or mode == "trusted"}
            for key in sorted(got - wanted):
                problems.append(f"{readme}: the chart ({mode}) grants {show(key)}, which the table does not list")
            for key in sorted(wanted - got):
                problems.append(f"{readme}: the table lists {show(key)}, which the chart ({mode}) does not grant")
    for p in problems:
        print(p)
    if not problems:
        total = len(granted["trusted"])
        print(f"{', '.join(args.readmes)}: the tables list exactly the {total} grants the chart renders")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
