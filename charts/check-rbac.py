#!/usr/bin/env python3
"""Checks the RBAC that `helm template charts/skiff-operator` renders against
what skiff-operator calls.

RBAC below is the table of every Kubernetes resource the operator touches, the
verbs, and where in operator/src each is used. The check:
  1. finds every resource kind operator/src names in `Api::<K>`, `Api<K>`,
     `api::<K>` (main.rs's helper) and `apply::<K>` (reconcile/cluster.rs), plus
     kube-runtime's event Recorder; each must be in the table, and each kind in
     the table must still be named in the code (no stale privilege);
  2. the ClusterRole and Roles of the rendered chart grant exactly the table:
     every verb it lists, and nothing more.
It does not prove the verbs per call site: that part of the table is read from
the code by hand (see the `why` column) and kept next to it.

Usage: check-rbac.py RENDERED.yaml   (the output of `helm template`)
"""

import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
SRC = ROOT / "operator" / "src"

# kind -> (apiGroup, resource, verbs, why)
RBAC = {
    "Cluster": ("skiff.dev", "clusters", {"get", "list", "watch"},
                "Controller::new (main.rs); Topic reconcile reads its Cluster with get_opt (reconcile/topic.rs)"),
    "Cluster/status": ("skiff.dev", "clusters/status", {"patch"},
                       "patch_status with server-side apply (reconcile/cluster.rs)"),
    "Topic": ("skiff.dev", "topics", {"list", "watch", "patch"},
              "Controller::new (main.rs); finalizer add/remove is a JSON patch (kube::runtime::finalizer, reconcile/topic.rs)"),
    "Topic/status": ("skiff.dev", "topics/status", {"patch"},
                     "patch_status with server-side apply (reconcile/topic.rs)"),
    "StatefulSet": ("apps", "statefulsets", {"get", "list", "watch", "create", "patch"},
                    "owns (main.rs); get_opt for observe and voter count, server-side apply (reconcile/cluster.rs)"),
    "Service": ("", "services", {"list", "watch", "create", "patch"},
                "owns (main.rs); server-side apply of the headless and client Services"),
    "ConfigMap": ("", "configmaps", {"list", "watch", "create", "patch"},
                  "owns (main.rs); server-side apply of the broker config"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets", {"list", "watch", "create", "patch"},
                            "owns (main.rs); server-side apply"),
    "ServiceAccount": ("", "serviceaccounts", {"create", "patch"},
                       "server-side apply of the brokers' ServiceAccount (reconcile/cluster.rs)"),
    "Pod": ("", "pods", {"list", "watch", "delete"},
            "watches (main.rs); list in observe (reconcile/cluster.rs, reconcile/topic.rs); delete in a roll (delete_pod)"),
    "PersistentVolumeClaim": ("", "persistentvolumeclaims", {"list", "patch", "delete"},
                              "list in observe; merge patch to expand (ExpandClaim); delete (DeleteClaim) (reconcile/cluster.rs)"),
    "Event": ("events.k8s.io", "events", {"create", "patch"},
              "kube::runtime::events::Recorder (reconcile/mod.rs): create, then patch a repeated event"),
    "Lease": ("coordination.k8s.io", "leases", {"get", "create", "update"},
              "leader.rs: get_opt, create, replace (PUT) of skiff-operator-leader"),
}
# Server-side apply (PATCH) that creates an object is also authorized as `create`
# (k8s.io/apiserver endpoints/handlers/patch.go), hence create next to patch above.

KIND_RE = re.compile(r"\b(?:Api::<|Api<|api::<|apply::<)\s*([A-Z][A-Za-z0-9]*)\s*>")


def kinds_in_code():
    found = {}
    for path in sorted(SRC.rglob("*.rs")):
        text = path.read_text()
        for m in KIND_RE.finditer(text):
            if m.group(1) != "K":  # the generic helper's parameter
                found.setdefault(m.group(1), set()).add(str(path.relative_to(ROOT)))
        if "Recorder::new" in text:
            found.setdefault("Event", set()).add(str(path.relative_to(ROOT)))
        if "patch_status" in text:
            for kind in ("Cluster", "Topic"):
                if re.search(rf"Api<{kind}>", text):
                    found.setdefault(f"{kind}/status", set()).add(str(path.relative_to(ROOT)))
    return found


def granted(rendered):
    grants = {}
    for doc in yaml.safe_load_all(rendered):
        if not doc or doc.get("kind") not in ("ClusterRole", "Role"):
            continue
        for rule in doc.get("rules") or []:
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    grants.setdefault((group, resource), set()).update(rule.get("verbs", []))
    return grants


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    errors = []
    code = kinds_in_code()
    for kind, files in sorted(code.items()):
        if kind not in RBAC:
            errors.append(f"{', '.join(sorted(files))} uses {kind}, which is not in the RBAC table of "
                          f"charts/check-rbac.py: add it there and to charts/skiff-operator/templates/rbac.yaml")
    for kind in sorted(set(RBAC) - set(code)):
        errors.append(f"the RBAC table grants {kind}, which operator/src no longer uses: drop it "
                      f"from charts/check-rbac.py and charts/skiff-operator/templates/rbac.yaml")
    grants = granted(pathlib.Path(sys.argv[1]).read_text())
    want = {(g, r): verbs for g, r, verbs, _ in RBAC.values()}
    for key in sorted(set(want) | set(grants)):
        have, need = grants.get(key, set()), want.get(key, set())
        name = f"{key[0] or 'core'}/{key[1]}"
        if need - have:
            errors.append(f"rendered chart lacks {sorted(need - have)} on {name}")
        if have - need:
            errors.append(f"rendered chart grants {sorted(have - need)} on {name}, which the operator does not use")
    if errors:
        print("check-rbac: FAIL\n  " + "\n  ".join(errors), file=sys.stderr)
        sys.exit(1)
    print(f"check-rbac: ok ({len(want)} resources, {sum(map(len, want.values()))} verbs, "
          f"{len(code)} kinds found in operator/src)")


if __name__ == "__main__":
    main()
