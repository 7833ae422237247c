"""`pleg-doctor rules` and `pleg-doctor explain CODE`: the rule registry, for people."""

from __future__ import annotations

import json
import sys

import click

from plegdoctor.diagnosis.classes import CAUSE_CLASSES
from plegdoctor.errors import UserError
from plegdoctor.model import RootCauseClass
from plegdoctor.rules.registry import get_rule, load_all


def rules_text() -> str:
    rules = load_all()
    lines = []
    family = None
    for code, r in rules.items():
        if r.family != family:
            family = r.family
            lines.append(f"{code[:3]}xx {family}")
        lines.append(f"  {code}  {r.severity!s:<8}  {r.root_cause!s:<24}  {r.title}")
    lines.append("")
    lines.append("Root-cause classes")
    for cls in RootCauseClass:
        rec = CAUSE_CLASSES[cls]
        lines.append(f"  {cls!s:<25} {rec.meaning} (fix: {rec.remedy})")
    lines.append("")
    lines.append("pleg-doctor explain CODE prints a rule's documentation.")
    return "\n".join(lines) + "\n"


def rules_json() -> str:
    doc = [
        {
            "code": r.code,
            "name": r.name,
            "title": r.title,
            "severity": str(r.severity),
            "class": str(r.root_cause),
            "symptom": r.symptom,
            "fix": r.fix,
            "references": list(r.references),
        }
        for r in load_all().values()
    ]
    return json.dumps(doc, indent=2) + "\n"


def rules_markdown() -> str:
    from plegdoctor.rules.docs import render

    return render()


def print_rules(fmt: str = "text") -> None:
    out = {"text": rules_text, "json": rules_json, "markdown": rules_markdown}[fmt]()
    sys.stdout.write(out)


def print_explain(code: str) -> None:
    r = get_rule(code)
    if r is None:
        raise UserError(f"unknown rule code {code!r} (pleg-doctor rules lists them)")
    sys.stdout.write(r.explain())


@click.command(name="rules")
@click.option("-o", "--format", "fmt", type=click.Choice(["text", "json", "markdown"]), default="text")
def rules_command(fmt: str) -> None:
    """List the diagnosis rules (code, severity, root-cause class, title)."""
    print_rules(fmt)


@click.command(name="explain")
@click.argument("code")
def explain_command(code: str) -> None:
    """Print the documentation of one rule (e.g. PD206): what it detects, why it matters,
    example evidence, the fix, references."""
    print_explain(code)
