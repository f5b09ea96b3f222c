"""The site file's schema in one place: the known keys of each mapping, which of
them are required, and where a key given at the wrong level belongs (for the
hint in its problem). The schema is documented in docs/site-file.md.
"""

from __future__ import annotations

__all__ = [
    "_BARRIER_KEYS",
    "_ELSEWHERE_POST",
    "_ELSEWHERE_RULE",
    "_ELSEWHERE_SITE",
    "_LEVEL_KEYS",
    "_LINT_KEYS",
    "_ORIGIN_KEYS",
    "_POLICY_KEYS",
    "_POST_KEYS",
    "_RULE_KEYS",
    "_SITE_KEYS",
    "_WALKWAY_KEYS",
]

# Known keys of each mapping, and which of them are required.
_SITE_KEYS = {
    "site": True,
    "name": False,
    "origin": False,
    "stale_after_s": False,
    "timezone": False,
    "flags": False,
    "posts": True,
    "escalation": False,
    "default_accuracy_m": False,
    "silent_after_s": False,
    "duty_from_devices": False,
    "walkways": False,
    "barriers": False,
    "speeds_mps": False,
    "lint": False,
    "checkpoints": False,  # read by formats/tourfile.py
    "tours": False,
    "scan_walk_mps": False,  # read by formats/tourfile.py
    "background": False,  # read by formats/_siteplanimage.py
}
_ORIGIN_KEYS = {"lat": True, "lon": True}
_POST_KEYS = {
    "id": True,
    "name": False,
    "at": False,
    "area": False,
    "gate": False,
    "orders": False,
    "rules": False,
}
_RULE_KEYS = {
    "id": True,
    "need": True,
    "capability": False,
    "within_m": False,  # required unless reach_s is given; checked in rule()
    "reach_s": False,
    "release_m": False,
    "grace_s": False,
    "when": False,
    "when_gate_open": False,
}
_LEVEL_KEYS = {"after_s": True, "notify": True}
# The mapping form of `escalation`: lapses and other alerts, and device alarms.
_POLICY_KEYS = {"default": False, "sos": False}
_LINT_KEYS = {"vague_phrases": False, "extra_vague_phrases": False}
_WALKWAY_KEYS = {"id": True, "points": True, "one_way": False}
_BARRIER_KEYS = {"id": True, "at": False, "points": False}

# Where a key that is unknown at one level belongs, for a better hint.
_IN_A_POST = "is a post field: put it in an entry under 'posts'"
_IN_A_RULE = "is a rule field: put it in an entry under the post's 'rules'"
_ELSEWHERE_SITE = {key: _IN_A_POST for key in _POST_KEYS} | {
    key: _IN_A_RULE for key in _RULE_KEYS if key not in _POST_KEYS
}
_ELSEWHERE_POST = {key: _IN_A_RULE for key in _RULE_KEYS if key not in _POST_KEYS} | {
    key: "is a site field: put it at the top level of the file"
    for key in _SITE_KEYS
    if key not in _POST_KEYS
}
_ELSEWHERE_RULE = {key: _IN_A_POST for key in _POST_KEYS if key not in _RULE_KEYS}
