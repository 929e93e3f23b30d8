"""Policy: which scheme, with which standard deviation and why, for every parameter of a model.

:func:`plan` inspects the model (:mod:`initscope.graph`), runs custom rules and a preset and
returns a :class:`Plan` (a dry run); :meth:`Plan.apply` writes it all or nothing;
:func:`initialize` does both. See ``docs/policy.md`` for the presets and the rules.
"""

from initscope.policy._choice import Choice, choice
from initscope.policy._plan import Entry, Plan, initialize, plan
from initscope.policy._rules import PRESETS, Preset, Rule, check_preset, choose

__all__ = [
    "PRESETS",
    "Choice",
    "Entry",
    "Plan",
    "Preset",
    "Rule",
    "check_preset",
    "choice",
    "choose",
    "initialize",
    "plan",
]
