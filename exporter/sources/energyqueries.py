"""Kepler's joule counters, both metric generations, summed per (namespace, node) and per node.

Kepler 0.10+ exports `kepler_pod_cpu_joules_total` and `kepler_node_cpu_joules_total` with a `zone` label
(RAPL package, dram, ...) and `node_name`; 0.7-0.9 export one counter per component,
`kepler_container_<component>_joules_total` with `container_namespace` and `mode` (dynamic or idle: only
dynamic is a container's own use), and `kepler_node_<component>_joules_total`."""

from __future__ import annotations

import re

from exporter.sources.promql import duration, join_matchers, matcher, one_of, quote, selector
from exporter.vocab.errors import ConfigError

Rows = tuple[str, str]  # the labels naming (namespace, node) in a generation's answer


def re2_zone(zone: str) -> str:
    """A zone as part of a metric name (the config checks it is only letters, digits and _)."""
    if not re.fullmatch(r"[a-zA-Z0-9_]+", zone):
        raise ConfigError(f"energy.keplerZones: {zone!r} is not a RAPL zone name (letters, digits, _)")
    return zone


class KeplerQueries:
    def __init__(self, selector_: str, cluster: str, zones: list[str], legacy_node_label: str) -> None:
        self.sel = join_matchers(selector_, cluster)
        self.zones = zones
        self.legacy_node = legacy_node_label

    def pods(self, seconds: int) -> str:
        """Kepler 0.10+: joules per (pod_namespace, node_name) over the window."""
        sel = selector(one_of("zone", self.zones), self.sel)
        return (f"sum by (pod_namespace, node_name) "
                f"(increase(kepler_pod_cpu_joules_total{sel}[{duration(seconds)}]))")

    def nodes(self, seconds: int) -> str:
        sel = selector(one_of("zone", self.zones), self.sel)
        return f"sum by (node_name) (increase(kepler_node_cpu_joules_total{sel}[{duration(seconds)}]))"

    def legacy_containers(self, seconds: int) -> str:
        """Kepler 0.7-0.9: dynamic joules per (container_namespace, node label) over the window."""
        return self._per_component("kepler_container", ("container_namespace", self.legacy_node),
                                   matcher("mode", "dynamic"), seconds)

    def legacy_nodes(self, seconds: int) -> str:
        return self._per_component("kepler_node", (self.legacy_node,), "", seconds)

    def _per_component(self, prefix: str, by: tuple[str, ...], extra: str, seconds: int) -> str:
        """The components' counters summed. One sum per metric name, each marked by its zone, then added:
        `increase` drops the name, so the components of one series set cannot share a vector before that."""
        keys = ", ".join(by)
        parts = [f'label_replace(sum by ({keys}) (increase({prefix}_{re2_zone(z)}_joules_total'
                 f'{selector(extra, self.sel)}[{duration(seconds)}])), "zone", {quote(z)}, "", "")'
                 for z in sorted(self.zones)]
        return f"sum by ({keys}) ({' or '.join(parts)})"

    def present(self) -> str:
        """Any Kepler joule series, of either generation."""
        return selector(matcher("__name__", "kepler_(pod|node|container)_.*joules_total", "=~"), self.sel)

