"""EventBridge event patterns: validation, a compiled multi-rule matcher, a reference matcher.

Pure Python, no I/O::

    from app.bus.patterns import InvalidEventPattern, Pattern, RuleMatcher, matches, parse_pattern

    p = parse_pattern('{"source": ["aws.ec2"]}')          # raises InvalidEventPattern
    matches(p, event)                                     # TestEventPattern
    m = RuleMatcher.build({"rule-a": p, "rule-b": other})
    m.match(event)                                        # ids of matching rules, build order

See PATTERNS.md in this directory for the language as supported.
"""

from app.bus.patterns.errors import InvalidEventPattern
from app.bus.patterns.machine import RuleMatcher
from app.bus.patterns.pattern import Pattern, matches, parse_pattern, test_event_pattern
from app.bus.patterns.validate import PatternLimits

__all__ = [
    "InvalidEventPattern",
    "Pattern",
    "PatternLimits",
    "RuleMatcher",
    "matches",
    "parse_pattern",
    "test_event_pattern",
]
