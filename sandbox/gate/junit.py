"""JUnit XML for a gate report: one testsuite per rule, one testcase per target.

Failed thresholds become `<failure>`, undecidable checks `<error>`, so CI
systems show "the model failed" apart from "the harness could not decide".
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from sandbox.gate.evaluate import GateCase, GateReport


def junit_xml(report: GateReport) -> str:
    """The report as JUnit XML text."""
    by_rule: dict[str, list[GateCase]] = defaultdict(list)
    for c in report.cases:
        by_rule[c.rule_id].append(c)
    root = ET.Element(
        "testsuites",
        name=f"sandbox gate: {report.policy}",
        tests=str(len(report.cases)),
        failures=str(report.count("failed")),
        errors=str(report.count("error")),
        skipped=str(report.count("skipped")),
    )
    for rule_id, cases in by_rule.items():
        suite = ET.SubElement(
            root,
            "testsuite",
            name=rule_id,
            tests=str(len(cases)),
            failures=str(sum(1 for c in cases if c.status == "failed")),
            errors=str(sum(1 for c in cases if c.status == "error")),
            skipped=str(sum(1 for c in cases if c.status == "skipped")),
        )
        for c in cases:
            tc = ET.SubElement(suite, "testcase", classname=f"gate.{rule_id}", name=c.target)
            if c.status == "failed":
                ET.SubElement(tc, "failure", message=c.message, type="threshold").text = c.message
            elif c.status == "error":
                ET.SubElement(tc, "error", message=c.message, type="undecided").text = c.message
            elif c.status == "skipped":
                ET.SubElement(tc, "skipped", message=c.message)
            else:
                ET.SubElement(tc, "system-out").text = c.message
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(report: GateReport, path: Path) -> None:
    """Write the JUnit XML file (parent directories are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(report), encoding="utf-8")


__all__ = ["junit_xml", "write_junit"]
