"""The pseudo-namespaces and placeholder values, defined once.

Every amount that no real namespace owns still lands in a row, so conservation holds; these names say
why. `is_pseudo` is how every module tells them from a tenant's namespace.
"""

from __future__ import annotations

IDLE = "__idle__"  # capacity paid for and not allocated (per node and resource)
SHARED = "__shared__"  # shared cost a policy could not hand to any tenant
UNMOUNTED = "__unmounted__"  # OpenCost's name for PVs with no claim (and LBs selecting nothing)
UNALLOCATED = "__unallocated__"  # OpenCost's row for items without the aggregate key; network nobody sent
UNATTRIBUTED = "__unattributed__"  # an owner label (team, cost center) no pod or namespace carries

PSEUDO_NAMESPACES = frozenset({IDLE, SHARED, UNMOUNTED, UNALLOCATED})


def is_pseudo(namespace: str) -> bool:
    """A pseudo-namespace: no tenant, no owner labels. Reserved `__x__` names are all pseudo."""
    return namespace in PSEUDO_NAMESPACES or (namespace.startswith("__") and namespace.endswith("__"))
