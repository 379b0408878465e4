"""Report of the reliability and security suite (issue 19): runs it (or reads a JUnit XML of a
run) and prints one table per section.

- faults: scenario, runs, converged, objects lost, duplicates, max convergence time, requests
  (or connection attempts) per second during the outages;
- attacks: rows tried and rows answered as the table expects (refused, or let through with the
  honest identity);
- fuzzing: examples generated and failures, one row per fuzzed service (the CRM, and each
  service of test_services_fuzz.py by its test id);
- checks: the secrets search (runs, passed, what it recorded: secrets and sources searched,
  leaks).

Figures come from what each test records (`record_property`: requests_per_second,
max_convergence_seconds, objects_lost, duplicates, secrets_searched ...) or prints (connection
attempts per second, fuzzed requests); "0" under lost/duplicates means the test passed its
assertion of none; a convergence time marked "<=" is the whole test's duration, an upper bound,
where the test records none.

    .venv/bin/python bench/reliability_report.py              # bounded forms (CI's)
    .venv/bin/python bench/reliability_report.py --soak       # long forms (make soak)
    .venv/bin/python bench/reliability_report.py --repeat 3 -k etcd
    .venv/bin/python bench/reliability_report.py --from-junit soak.xml
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITE = ["tests/integration/reliability", "tests/integration/security"]


@dataclass(frozen=True)
class Scenario:
    label: str
    section: str  # faults | attacks | fuzz | checks
    asserts_no_loss: bool = False
    asserts_no_duplicates: bool = False
    per_service: bool = False  # one row per service (the test id's parameter besides ci/soak)

    def row(self, case: Case) -> str:
        if not self.per_service:
            return self.label
        return self.label.format(service=FORM.sub("", case.params) or "?")


FORM = re.compile(r"-?\b(ci|soak)\b")


SCENARIOS = {
    "test_operator_killed_at_random_points_converges_without_loss": Scenario(
        "operator SIGKILLed at random points", "faults", True, True),
    "test_one_replica_acts_and_the_other_takes_over": Scenario(
        "two replicas (peering), leader killed in soak", "faults"),
    "test_cut_watches_and_unreachable_apiserver_back_off_then_converge": Scenario(
        "watches cut, apiserver unreachable", "faults", True, True),
    "test_apiserver_restarted_mid_reconcile": Scenario(
        "kube-apiserver restarted mid-reconcile", "faults", True, True),
    "test_etcd_paused_mid_reconcile_backs_off_then_converges": Scenario(
        "etcd paused (SIGSTOP) mid-reconcile", "faults", True, True),
    "test_attack_table": Scenario("gateway attack table", "attacks"),
    "test_another_tenants_ids_are_404_on_every_route": Scenario(
        "another tenant's ids on every CRM route", "attacks"),
    "test_generated_services_are_refused_naming_a_field_or_settle": Scenario(
        "XynergyService specs (hypothesis)", "fuzz"),
    "test_crm_through_the_gateway_keeps_its_contract": Scenario(
        "CRM OpenAPI through the gateway (schemathesis)", "fuzz"),
    "test_service_through_the_gateway_keeps_its_contract": Scenario(
        "{service} OpenAPI through the gateway (schemathesis)", "fuzz", per_service=True),
    "test_deeply_nested_json_is_a_clear_4xx_on_every_body_route": Scenario(
        "JSON nested 20,000 deep on each body operation (CRM, each service)", "attacks"),
    "test_no_secret_in_logs_events_objects_error_bodies_or_metrics": Scenario(
        "secrets in logs, objects, errors, metrics", "checks"),
    "test_encodings_find_a_secret_inside_longer_base64": Scenario(
        "the secrets search finds encoded forms", "checks"),
}  # fmt: skip


@dataclass
class Case:
    """One executed test case (a function with one parameter set) from JUnit XML."""

    function: str
    params: str
    passed: bool
    seconds: float
    props: dict[str, str] = field(default_factory=dict)
    stdout: str = ""


def read_junit(path: Path) -> list[Case]:
    cases = []
    for tc in ET.parse(path).iter("testcase"):
        if tc.find("skipped") is not None:
            continue
        name = tc.get("name", "")
        function, _, params = name.partition("[")
        props = {p.get("name", ""): p.get("value", "") for p in tc.iter("property")}
        out = tc.find("system-out")
        failed = tc.find("failure") is not None or tc.find("error") is not None
        cases.append(Case(function, params.rstrip("]"), not failed, float(tc.get("time", 0)),
                          props, out.text or "" if out is not None else ""))  # fmt: skip
    return cases


def run_suite(*, soak: bool, select: str | None, junit: Path) -> int:
    args = [sys.executable, "-m", "pytest", *SUITE, "-p", "no:cacheprovider", "-q",
            f"--junitxml={junit}", "-o", "junit_logging=system-out",
            "-o", "junit_family=xunit1"]  # xunit2 drops record_property  # fmt: skip
    if soak:
        args += ["-m", "soak"]
    if select:
        args += ["-k", select]
    return subprocess.run(args, cwd=ROOT, check=False).returncode


# -- figures --------------------------------------------------------------------------------

RATE = re.compile(r"(connection attempts|requests) per second[^:\n]*: \[?([\d., ]+)")
FUZZED = re.compile(r"(\d+) fuzzed requests|(\d+) accepted, (\d+) refused")


def printed_rate(stdout: str) -> tuple[float, str] | None:
    found = [(m.group(1), [float(x) for x in re.findall(r"[\d.]+", m.group(2))])
             for m in RATE.finditer(stdout)]  # fmt: skip
    values = [(v, kind) for kind, vs in found for v in vs]
    if not values:
        return None
    value, kind = max(values)
    return value, "req/s" if kind == "requests" else "conn/s"


def rate(cases: list[Case]) -> str:
    recorded = [float(c.props["requests_per_second"]) for c in cases
                if "requests_per_second" in c.props]  # fmt: skip
    if recorded:
        return f"{max(recorded):.1f} req/s"
    printed = [r for c in cases if (r := printed_rate(c.stdout))]
    return f"{max(printed)[0]:.1f} {max(printed)[1]}" if printed else "-"


def asserted(cases: list[Case], key: str, covered: bool) -> str:
    recorded = [int(c.props[key]) for c in cases if key in c.props]
    if recorded:
        return str(max(recorded))
    if not covered:
        return "-"
    return "0" if all(c.passed for c in cases) else "? (failed)"


def convergence(cases: list[Case]) -> str:
    recorded = [float(c.props["max_convergence_seconds"]) for c in cases
                if "max_convergence_seconds" in c.props]  # fmt: skip
    if recorded:
        return f"{max(recorded):.1f} s"
    return f"<= {max(c.seconds for c in cases):.0f} s"


def fuzz_examples(cases: list[Case]) -> str:
    total = 0
    for case in cases:
        for m in FUZZED.finditer(case.stdout):
            total += int(m.group(1) or 0) + int(m.group(2) or 0) + int(m.group(3) or 0)
    return str(total) if total else "?"


# -- tables ---------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def grouped(cases: list[Case]) -> dict[tuple[str, str], list[Case]]:
    groups: dict[tuple[str, str], list[Case]] = defaultdict(list)
    for case in cases:
        scenario = SCENARIOS.get(case.function, Scenario(case.function, "faults"))
        form = "soak" if "soak" in case.params else "bounded"
        label = scenario.row(case)
        key = label if scenario.section == "attacks" else f"{label} [{form}]"
        groups[(scenario.section, key)].append(case)
    return groups


def report(cases: list[Case]) -> str:
    sections: dict[str, list[list[str]]] = defaultdict(list)
    for (section, label), group in sorted(grouped(cases).items()):
        scenario = SCENARIOS.get(group[0].function, Scenario(label, section))
        passed = sum(c.passed for c in group)
        if section == "faults":
            sections[section].append([label, str(len(group)), str(passed),
                asserted(group, "objects_lost", scenario.asserts_no_loss),
                asserted(group, "duplicates", scenario.asserts_no_duplicates),
                convergence(group), rate(group)])  # fmt: skip
        elif section == "attacks":
            sections[section].append([label, str(len(group)), str(passed)])
        elif section == "fuzz":
            sections[section].append([label, fuzz_examples(group), str(len(group) - passed)])
        else:
            figures = ", ".join(f"{k} {v}" for k, v in group[-1].props.items()) or "-"
            sections[section].append([label, str(len(group)), str(passed), figures])
    heads = {
        "faults": ["scenario", "runs", "converged", "objects lost", "duplicates",
                   "max convergence", "per second during outages"],
        "attacks": ["attack rows", "tried", "refused / as expected"],
        "fuzz": ["fuzzing", "examples", "failures"],
        "checks": ["check", "runs", "passed", "figures"],
    }  # fmt: skip
    return "\n\n".join(table(heads[s], sections[s]) for s in heads if sections[s])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--soak", action="store_true", help="run the long forms (pytest -m soak)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the suite (default 1)")
    parser.add_argument("-k", dest="select", help="pytest -k expression to run a subset")
    parser.add_argument("--from-junit", type=Path, nargs="+", help="read these JUnit XML files")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat: expected a positive number of runs, got {args.repeat}")
    start, codes = time.monotonic(), []
    files = list(args.from_junit or [])
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(0 if files else args.repeat):
            files.append(Path(tmp) / f"run-{n}.xml")
            codes.append(run_suite(soak=args.soak, select=args.select, junit=files[-1]))
        cases = [c for f in files if f.exists() for c in read_junit(f)]
    if not cases:
        print("no test ran (see pytest's output above)", file=sys.stderr)
        return 1
    form = (
        "from " + ", ".join(map(str, args.from_junit))
        if args.from_junit
        else ("soak forms" if args.soak else "bounded forms")
    )
    print(f"\nReliability report ({form}): {len(cases)} "
          f"test cases, {time.monotonic() - start:.0f} s wall, {os.cpu_count()} CPUs, load "
          f"average {os.getloadavg()[0]:.1f} at the end\n")  # fmt: skip
    print(report(cases))
    return max(codes, default=0)


if __name__ == "__main__":
    sys.exit(main())
