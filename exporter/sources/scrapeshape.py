"""The honorLabels: false scrape shape: series whose `namespace` (and `pod`) the scrape target renamed.

An exporter that labels its series with the workload's `namespace`, `pod` and `container` keeps them only when
scraped with honorLabels: true. Scraped with honorLabels: false, the target's labels win and the exporter's own
become `exported_namespace`, `exported_pod` and `exported_container`:

* dcgm-exporter (its Helm chart's and the GPU operator's ServiceMonitor default): `namespace`, `pod` and
  `container` name the exporter's own pod on every series; the workload holding a device is `exported_*`.
  A device no pod holds carries the exporter's pod as if it were the workload: series of a pod that other
  series name as their exporter (it scrapes an `exported_pod`) are not a workload's.
* cAdvisor through the kubelet's Service endpoints (the operator's kubelet ServiceMonitor without honorLabels):
  the target is a Node, so only `namespace` (the Service's, kube-system) is set by the target, and cAdvisor's
  becomes `exported_namespace`; `pod` and `container` stay.

The shape is read from each series (an `exported_*` label), so one query serves both shapes, and a window in which
the ServiceMonitor changed. Namespace matchers (a per-pod scope, a shard) apply to whichever label holds the
workload's namespace. Pure string builders; `Queries` (queries.py) calls them with its selectors.
"""

from __future__ import annotations

from collections.abc import Callable

from exporter.sources.promql import one_of, quote, selector

# dcgm-exporter: graphics engine activity (0-1, DCP profiling) and its fallback GPU utilisation (0-100).
DCGM_ACTIVE, DCGM_UTIL = "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_UTIL"
MIB = 1048576  # DCGM_FI_DEV_FB_USED / _FREE are in MiB
_EXPORTED = ('exported_namespace!=""', 'exported_pod!=""')
_HONORED = ('exported_pod=""', 'namespace!=""', 'pod!=""')
_NOT_EXPORTED = 'exported_namespace=""'


def dcgm_series(d: str) -> str:
    """Whether dcgm-exporter is scraped at all (the pipeline skips the GPU usage query otherwise)."""
    return selector(one_of("__name__", (DCGM_ACTIVE, DCGM_UTIL)), d)


def as_exported(only: tuple[str, ...]) -> tuple[str, ...]:
    """Namespace matchers (`namespace=~"a|b"`, `namespace!~...`) for the label the workload's namespace is in under
    honorLabels: false."""
    return tuple("exported_" + m for m in only)


def cadvisor(metric: str, c: str, only: tuple[str, ...], fn: Callable[[str], str], *matchers: str) -> str:
    """`fn` (a rate over a range, an `@`) of cAdvisor's `metric` with the workload's `namespace`, whichever the
    scrape shape; only the namespaces the matchers `only` select."""
    honored = fn(f"{metric}{selector(*matchers, _NOT_EXPORTED, c, *only)}")
    renamed = fn(f"{metric}{selector(*matchers, _EXPORTED[0], c, *as_exported(only))}")
    return f'({honored} or label_replace({renamed}, "namespace", "$1", "exported_namespace", "(.+)"))'


def workload(metric: str, d: str, only: tuple[str, ...] = ()) -> str:
    """dcgm-exporter's `metric` per device with the holding workload's `namespace` and `pod`, whichever the
    scrape shape; only the workloads of the namespaces the matchers `only` select."""
    exported = f"{metric}{selector(*_EXPORTED, d, *as_exported(only))}"
    renamed = (f'label_replace(label_replace({exported}, "namespace", "$1", "exported_namespace", "(.+)"), '
               f'"pod", "$1", "exported_pod", "(.+)")')
    honored = f"{metric}{selector(*_HONORED, d, *only)}"
    exporters = f"group by (namespace, pod) ({metric}{selector(*_EXPORTED, d)})"
    return f"({renamed} or ({honored} unless on (namespace, pod) {exporters}))"


def device_usage(d: str, only: tuple[str, ...] = ()) -> str:
    """Per GPU (or MIG instance) a pod holds: busy fraction (kind="gpu": graphics-engine activity where
    the GPU profiles it, else GPU_UTIL/100), 1 where it was seen (gpu_observed), framebuffer used and
    used+free in bytes; per pod, its GPUs' mean busy fraction (gpu_pod_mean)."""
    def per_device(metric: str) -> str:
        return _per_device(metric, d, only)

    busy = device_busy(d, only)
    used = f"{per_device('DCGM_FI_DEV_FB_USED')} * {MIB}"
    total = f"({per_device('DCGM_FI_DEV_FB_USED')} + {per_device('DCGM_FI_DEV_FB_FREE')}) * {MIB}"
    # The pod's busy fraction averaged over its GPUs (OpenCost's per-container gpuUsageAverage, per pod here).
    mean = f"avg by (namespace, pod) ({busy})"
    kinds = (("gpu", busy), ("gpu_observed", f"{busy} * 0 + 1"), ("gpu_memory", used), ("gpu_memory_total", total),
             ("gpu_pod_mean", mean))
    return " or ".join(f'label_replace({expr}, "kind", {quote(kind)}, "", "")' for kind, expr in kinds)


def _per_device(metric: str, d: str, only: tuple[str, ...]) -> str:
    return f"max by (namespace, pod, UUID, GPU_I_ID) ({workload(metric, d, only)})"


def device_busy(d: str, only: tuple[str, ...] = ()) -> str:
    """Per GPU (or MIG instance) a pod holds, its busy fraction: graphics-engine activity where the GPU profiles
    it, else GPU_UTIL/100."""
    return f"clamp(({_per_device(DCGM_ACTIVE, d, only)} or {_per_device(DCGM_UTIL, d, only)} / 100), 0, 1)"


def device_names(d: str, subquery: str, only: tuple[str, ...] = ()) -> str:
    """Per pod, the GPUs dcgm-exporter saw it hold at the steps of `subquery` (a `[range:step]`): their device,
    model and UUID labels (the value counts the steps)."""
    per_step = f"({workload(DCGM_UTIL, d, only)}){subquery}"
    return f"max by (namespace, pod, device, modelName, UUID) (count_over_time({per_step}))"
