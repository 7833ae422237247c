"""Diagnosis rules: a registry of coded rules (PD1xx..PD9xx), one module per family.

    from plegdoctor.rules import RuleContext, run_rules
    ctx = RuleContext.build(evidence, gap_seconds=3.0)
    findings = run_rules(ctx)

See registry.py for the rule model and the context, docs/rules.md for every rule.
"""

from plegdoctor.rules.registry import REGISTRY, Hit, Rule, RuleContext, get_rule, load_all, rule, run_rules

__all__ = ["REGISTRY", "Hit", "Rule", "RuleContext", "get_rule", "load_all", "rule", "run_rules"]
