"""dcgm-exporter's per-device series, named by the workload that holds the device, in either scrape shape.

dcgm-exporter's Kubernetes mode labels a device a pod holds with that pod's `namespace`, `pod` and `container`.
How they reach the TSDB depends on the scrape:

* honorLabels: true (the shape our generator writes): the workload's labels stay; a device no pod holds has
  none, so `namespace!=""` leaves it out.
* honorLabels: false (the default of dcgm-exporter's Helm chart and the GPU operator's ServiceMonitor): the
  target's labels win. `namespace`, `pod` and `container` name the exporter's own pod on every series, and the
  workload's become `exported_namespace`, `exported_pod` and `exported_container`.

The shape is read from each series (an `exported_pod` label), so one query serves both, and a window in which the
ServiceMonitor changed. Under the second shape a device no pod holds carries the exporter's pod as if it were the
workload: series of a pod that other series name as their exporter (it scrapes an `exported_pod`) are not a
workload's. Pure string builders; `Queries` (queries.py) calls them with its selectors.
"""

from __future__ import annotations

from exporter.sources.promql import one_of, quote, selector

# dcgm-exporter: graphics engine activity (0-1, DCP profiling) and its fallback GPU utilisation (0-100).
DCGM_ACTIVE, DCGM_UTIL = "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_UTIL"
MIB = 1048576  # DCGM_FI_DEV_FB_USED / _FREE are in MiB
_EXPORTED = ('exported_namespace!=""', 'exported_pod!=""')
_HONORED = ('exported_pod=""', 'namespace!=""', 'pod!=""')


def dcgm_series(d: str) -> str:
    """Whether dcgm-exporter is scraped at all (the pipeline skips the GPU usage query otherwise)."""
    return selector(one_of("__name__", (DCGM_ACTIVE, DCGM_UTIL)), d)


def workload(metric: str, d: str, namespaces: list[str] | None = None) -> str:
    """`metric` per device with the holding workload's `namespace` and `pod`, whichever the scrape shape; only
    the workloads of `namespaces` when given."""
    mine = one_of("exported_namespace", namespaces) if namespaces else ""
    theirs = one_of("namespace", namespaces) if namespaces else ""
    exported = f"{metric}{selector(*_EXPORTED, d, mine)}"
    renamed = (f'label_replace(label_replace({exported}, "namespace", "$1", "exported_namespace", "(.+)"), '
               f'"pod", "$1", "exported_pod", "(.+)")')
    honored = f"{metric}{selector(*_HONORED, d, theirs)}"
    exporters = f"group by (namespace, pod) ({metric}{selector(*_EXPORTED, d)})"
    return f"({renamed} or ({honored} unless on (namespace, pod) {exporters}))"


def device_usage(d: str, namespaces: list[str] | None = None) -> str:
    """Per GPU (or MIG instance) a pod holds: busy fraction (kind="gpu": graphics-engine activity where
    the GPU profiles it, else GPU_UTIL/100), 1 where it was seen (gpu_observed), framebuffer used and
    used+free in bytes."""
    def per_device(metric: str) -> str:
        return f"max by (namespace, pod, UUID, GPU_I_ID) ({workload(metric, d, namespaces)})"

    busy = f"clamp(({per_device(DCGM_ACTIVE)} or {per_device(DCGM_UTIL)} / 100), 0, 1)"
    used = f"{per_device('DCGM_FI_DEV_FB_USED')} * {MIB}"
    total = f"({per_device('DCGM_FI_DEV_FB_USED')} + {per_device('DCGM_FI_DEV_FB_FREE')}) * {MIB}"
    kinds = (("gpu", busy), ("gpu_observed", f"{busy} * 0 + 1"), ("gpu_memory", used), ("gpu_memory_total", total))
    return " or ".join(f'label_replace({expr}, "kind", {quote(kind)}, "", "")' for kind, expr in kinds)
