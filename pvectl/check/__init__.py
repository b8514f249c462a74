"""``pvectl check``: facts gathered from a cluster (``facts``) judged by rules (``rules``).

The rules are pure functions of the facts, so they are tested without a cluster; the
gathering reads corosync, a lab or hosts over SSH through the targets.
"""
