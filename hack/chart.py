#!/usr/bin/env python3
"""The Helm chart (charts/mcp-rollout), rendered and checked with the real Helm engine offline.

helm-python-sdk embeds Helm v4's Go library, so lint and render here are Helm's own.

  chart.py render [-f values.yaml ...] [--name N] [--namespace NS]   manifests to stdout
  chart.py install-yaml                                               deploy/install.yaml to stdout
  chart.py check                                                      every check below

`check`:
1. `helm lint --strict` finds no warning or error.
2. values.yaml and every ci/*.yaml validate against values.schema.json (draft 7, jsonschema);
   Helm itself rejects bad values (unknown keys, wrong types) on render.
3. The chart renders with the defaults and with every optional feature on
   (ci/all-features-values.yaml); the built-in kinds validate with `kubernetes-validate
   --strict` for the oldest and newest Kubernetes we support; the operator pod meets the
   restricted Pod Security Standard.
4. The PrometheusRule's rules pass `promtool check rules` and the unit tests in
   charts/mcp-rollout/tests/alerts_test.yaml (`promtool test rules`): each alert fires on the
   seeds' thresholds and not below them.
5. Every Grafana panel's query parses (promtool, as recording rules with variables filled in).
6. The chart's crds/ are byte-identical to crds/, and deploy/install.yaml is what
   `install-yaml` prints.
"""
import argparse
import glob
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import helm_python
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "mcp-rollout"
INSTALL_YAML = ROOT / "deploy" / "install.yaml"
INSTALL_NAMESPACE = "mcp-rollout-system"
KUBERNETES_VERSIONS = ["1.33.0", "1.37.0"]
# Kinds of other projects' CRDs: kubernetes-validate has no schema for them; promtool checks
# the PrometheusRule's content instead.
FOREIGN_KINDS = {"ServiceMonitor", "PrometheusRule"}


def render_templates(values=None, name="mcp-rollout", namespace=INSTALL_NAMESPACE):
    """Every template as Helm renders it for an install: {template path: text}."""
    chart = helm_python.Chart.load(str(CHART))
    return chart.render(values or {}, name=name, namespace=namespace, is_install=True)


def render(values=None, name="mcp-rollout", namespace=INSTALL_NAMESPACE):
    """The rendered manifests, in template order, without NOTES.txt."""
    out = render_templates(values, name, namespace)
    docs = []
    for template in sorted(out):
        if template.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(out[template]) if d)
    return docs


def notes(values=None):
    out = render_templates(values)
    return next(v for k, v in out.items() if k.endswith("NOTES.txt"))


def dump(docs):
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def load_values(files):
    values = {}
    for f in files:
        values = merge(values, yaml.safe_load(Path(f).read_text()) or {})
    return values


def merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def install_yaml():
    crds = [d for f in sorted(glob.glob(str(CHART / "crds" / "*.yaml"))) for d in yaml.safe_load_all(open(f)) if d]
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": INSTALL_NAMESPACE}}
    header = (
        "# mcp-rollout without Helm: `kubectl apply --server-side -f deploy/install.yaml`.\n"
        "# Generated from charts/mcp-rollout with its default values by `hack/chart.py install-yaml`;\n"
        "# do not edit (a test fails when it drifts from the chart).\n"
    )
    return header + dump([namespace, *crds, *render()])


class Checks:
    def __init__(self):
        self.failures = 0

    def ok(self, what):
        print(f"chart: {what}: ok")

    def fail(self, what, detail=""):
        self.failures += 1
        print(f"chart: {what}: FAILED\n{detail}", file=sys.stderr)

    def lint(self):
        report = helm_python.lint(str(CHART), strict=True)
        bad = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
        if bad:
            self.fail("helm lint --strict", "\n".join(f'{m.get("path", "")}: {m["error"]}' for m in bad))
        else:
            self.ok("helm lint --strict")

    def values_schema(self):
        schema = json.loads((CHART / "values.schema.json").read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        undocumented = [p for p, node in walk_schema(schema) if not node.get("description")]
        if undocumented:
            self.fail("every values key has a description", "\n".join(undocumented))
        open_objects = [p for p, node in walk_schema(schema)
                        if node.get("properties") and node.get("additionalProperties") is not False]
        if open_objects:
            self.fail("every values object has additionalProperties: false", "\n".join(open_objects))
        files = [CHART / "values.yaml", *sorted(CHART.glob("ci/*.yaml"))]
        for f in files:
            values = merge(yaml.safe_load((CHART / "values.yaml").read_text()), yaml.safe_load(f.read_text()) or {})
            errors = list(jsonschema.Draft7Validator(schema).iter_errors(values))
            if errors:
                self.fail(f"{f.relative_to(ROOT)} against values.schema.json", "\n".join(e.message for e in errors))
        self.ok(f"values.schema.json ({len(files)} values files)")
        for bad, why in [({"replicas": 0}, "replicas below 1"), ({"metrics": {"prot": 9090}}, "a misspelt key"),
                         ({"leaderElection": {"mode": "sometimes"}}, "an unknown mode"),
                         ({"replicas": 2, "leaderElection": {"mode": "never"}}, "two replicas without a Lease"),
                         ({"maxConcurrentReconciles": 0}, "no reconcile at all")]:
            try:
                render(bad)
            except helm_python.HelmError:
                continue
            self.fail(f"Helm rejects {why}", f"{bad} rendered")
        self.ok("Helm rejects bad values")

    def manifests(self):
        for label, values in [("defaults", {}), ("all features", load_values(sorted(CHART.glob("ci/all-features-values.yaml"))))]:
            docs = render(values)
            kinds = sorted({d["kind"] for d in docs})
            builtin = [d for d in docs if d["kind"] not in FOREIGN_KINDS]
            with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
                f.write(dump(builtin))
                f.flush()
                for version in KUBERNETES_VERSIONS:
                    result = subprocess.run(
                        [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version, f.name],
                        capture_output=True, text=True)
                    if result.returncode != 0:
                        self.fail(f"kubernetes-validate --strict {version} ({label})", result.stdout + result.stderr)
            self.restricted(docs, label)
            self.ok(f"render {label}: {len(docs)} objects ({', '.join(kinds)}), kubernetes-validate --strict {', '.join(KUBERNETES_VERSIONS)}")

    def restricted(self, docs, label):
        """The restricted Pod Security Standard, as the admission plugin checks it."""
        for d in docs:
            if d["kind"] != "Deployment":
                continue
            pod = d["spec"]["template"]["spec"]
            psc = pod.get("securityContext", {})
            problems = []
            if psc.get("seccompProfile", {}).get("type") not in ("RuntimeDefault", "Localhost"):
                problems.append("seccompProfile RuntimeDefault")
            for c in pod["containers"]:
                sc = c.get("securityContext", {})
                if sc.get("allowPrivilegeEscalation") is not False:
                    problems.append(f"{c['name']}: allowPrivilegeEscalation false")
                if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                    problems.append(f"{c['name']}: drop ALL capabilities")
                if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
                    problems.append(f"{c['name']}: runAsNonRoot")
                if sc.get("readOnlyRootFilesystem") is not True:
                    problems.append(f"{c['name']}: readOnlyRootFilesystem")
                if "livenessProbe" not in c or "readinessProbe" not in c or "resources" not in c:
                    problems.append(f"{c['name']}: probes and resources")
            if problems:
                self.fail(f"restricted Pod Security ({label})", "\n".join(problems))

    def alerts(self):
        # Twice: with the default revision label, and with `revisionLabel: mcp_revision` over
        # servers that export their own semver as `version` (the same value on every revision,
        # which the rules must ignore).
        source = (CHART / "tests" / "alerts_test.yaml").read_text()
        relabelled = re.sub(r'version="(r[0-9]+)"', r'mcp_revision="\1",version="2.4.0"', source)
        for label, values, text in [
            ("version", {}, source),
            ("mcp_revision", {"revisionLabel": "mcp_revision"}, relabelled),
        ]:
            values = {"prometheusRule": {"enabled": True}, **values}
            rule = next(d for d in render(values) if d["kind"] == "PrometheusRule")
            with tempfile.TemporaryDirectory() as tmp:
                rules = Path(tmp) / "rules.yaml"
                rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
                self.promtool(f"promtool check rules (PrometheusRule, revision label {label})",
                              ["check", "rules", str(rules)])
                tests = yaml.safe_load(text)
                tests["rule_files"] = [str(rules)]
                test_file = Path(tmp) / "alerts_test.yaml"
                test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
                self.promtool(f"promtool test rules ({len(tests['tests'])} cases, revision label {label})",
                              ["test", "rules", str(test_file)])

    def dashboard(self):
        dashboard = json.loads((CHART / "dashboards" / "mcp-rollout.json").read_text())
        exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
        variables = {"$namespace": ".*", "$rollout": ".*", "$__rate_interval": "1m"}
        records = []
        for n, (_, expr) in enumerate(exprs):
            for var, value in variables.items():
                expr = expr.replace(var, value)
            leftover = re.findall(r"\$[a-zA-Z_]+", expr.replace('"$1"', ""))
            if leftover:
                self.fail("dashboard variables", f"{leftover} in {expr}")
            records.append({"record": f"dashboard:panel_{n}", "expr": expr})
        with tempfile.TemporaryDirectory() as tmp:
            rules = Path(tmp) / "dashboard.yaml"
            rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
            self.promtool(f"dashboard queries parse ({len(exprs)} queries, {len(dashboard['panels'])} panels)",
                          ["check", "rules", str(rules)])

    def promtool(self, what, args):
        result = subprocess.run(["promtool", *args], capture_output=True, text=True)
        if result.returncode != 0:
            self.fail(what, result.stdout + result.stderr)
        else:
            self.ok(what)

    def drift(self):
        for chart_crd in sorted(CHART.glob("crds/*.yaml")):
            source = ROOT / "crds" / chart_crd.name
            if not source.exists() or source.read_bytes() != chart_crd.read_bytes():
                self.fail(f"{chart_crd.relative_to(ROOT)} is identical to crds/{chart_crd.name}",
                          "copy it: cp crds/*.yaml charts/mcp-rollout/crds/")
        missing = {p.name for p in (ROOT / "crds").glob("*.yaml")} - {p.name for p in CHART.glob("crds/*.yaml")}
        if missing:
            self.fail("the chart carries every CRD", f"missing: {sorted(missing)}")
        if not INSTALL_YAML.exists() or INSTALL_YAML.read_text() != install_yaml():
            self.fail("deploy/install.yaml matches the chart", "regenerate: hack/chart.py install-yaml > deploy/install.yaml")
        self.ok("chart CRDs and deploy/install.yaml match their sources")


def walk_schema(node, path="values"):
    for key, child in node.get("properties", {}).items():
        yield f"{path}.{key}", child
        yield from walk_schema(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from walk_schema(node["items"], f"{path}[]")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render")
    r.add_argument("-f", "--values", action="append", default=[])
    r.add_argument("--name", default="mcp-rollout")
    r.add_argument("--namespace", default=INSTALL_NAMESPACE)
    sub.add_parser("install-yaml")
    sub.add_parser("check")
    args = parser.parse_args()
    helm_python.disable_logging()
    if args.command == "render":
        print(dump(render(load_values(args.values), args.name, args.namespace)), end="")
        return 0
    if args.command == "install-yaml":
        print(install_yaml(), end="")
        return 0
    checks = Checks()
    for check in (checks.lint, checks.values_schema, checks.manifests, checks.alerts, checks.dashboard, checks.drift):
        check()
    notes_text = notes()
    if "kubectl mcprollout status" not in notes_text:
        checks.fail("NOTES.txt names the next command", notes_text)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
