"""The GPU model: what a node's accelerators are, and how much of a physical device each request holds.

Everything GPU is costed in physical devices: a node's GPU capacity is its physical GPUs (or other
accelerators), and a request is converted to the physical share it holds before pricing. So a MIG
3g.40gb slice holds 3/7 of an A100, a time-sliced replica 1/replicas of a GPU, a HAMi vGPU the
fraction it asked for, and a NeuronCore its share of an Inferentia/Trainium device. What no request
holds (free MIG slices, unused replicas, unrequested GPUs) is that node's GPU idle, so conservation
is the same remainder as for CPU and memory. Pure: no I/O.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.config.gpu import GpuConfig, GpuNodeRule
from exporter.core.gpuprices import MIG_SLICES, model_memory_gib, model_of
from exporter.vocab.labels import ksm_label

# kube-state-metrics spells `nvidia.com/mig-3g.40gb` as nvidia_com_mig_3g_40gb (and `+me` as _me).
MIG_RESOURCE = re.compile(r"^nvidia_com_mig_(\d+)g_(\d+)gb(?:_me)?$")
MIG_SINGLE_PRODUCT = re.compile(r"-MIG-(\d+)g\.(\d+)gb", re.IGNORECASE)
SHARED = "nvidia_com_gpu_shared"  # time-slicing/MPS replicas under GFD's renameByDefault=true
NVIDIA_WHOLE = ("nvidia_com_gpu", SHARED)  # whole GPUs, or time-slicing/MPS replicas
ASKED = "opencost_requested"  # a container's nvidia.com/gpu request-seconds as asked (sources/gpuqueries.py)
HAMI_MEM, HAMI_MEM_PCT, HAMI_CORES = "nvidia_com_gpumem", "nvidia_com_gpumem_percentage", "nvidia_com_gpucores"
HAMI = (HAMI_MEM, HAMI_MEM_PCT, HAMI_CORES)
NEURON_DEVICE = ("aws_amazon_com_neuron", "aws_amazon_com_neurondevice")
NEURON_CORE = "aws_amazon_com_neuroncore"
# Other accelerators: one advertised unit is one device, unless a `gpu.nodes` rule sets replicas.
OTHER_WHOLE = ("amd_com_gpu", "gpu_intel_com_i915", "gpu_intel_com_xe", "habana_ai_gaudi")
# The KSM resource names the GPU queries select (config `gpu.resources` adds more).
SECONDS = "seconds"  # the pseudo-resource of a HAMi container's running seconds (prometheus.py)
RESOURCE_REGEX = "nvidia_com_.+|amd_com_gpu|gpu_intel_com_.+|aws_amazon_com_neuron.*|habana_ai_gaudi"

# GFD (gpu-feature-discovery) labels, as kube-state-metrics exports them on kube_node_labels.
L_PRODUCT = "label_nvidia_com_gpu_product"
L_COUNT = "label_nvidia_com_gpu_count"
L_REPLICAS = "label_nvidia_com_gpu_replicas"
L_MEMORY = "label_nvidia_com_gpu_memory"  # MiB per GPU
L_SHARING = "label_nvidia_com_gpu_sharing_strategy"


@dataclass(frozen=True)
class GpuNode:
    """One node's accelerators: the physical devices, and what one requested unit of each resource holds."""

    name: str
    model: str  # canonical model (gpuprices.MODELS), "" if unknown
    physical: float  # physical devices: the capacity that is priced
    mode: str  # whole, time-slicing, mps, mig-single, mig-mixed, neuron, accelerator
    shares: dict[str, float] = field(default_factory=dict)  # KSM resource -> physical devices per unit
    replicas: float = 1.0  # time-slicing/MPS replicas per physical GPU
    memory_mib: float = 0.0  # per physical GPU, for HAMi's gpumem
    # Whether the replicas are known (a rule, GFD's replicas or count label), not assumed to be 1.
    replicas_known: bool = False
    # OpenCost's count (its node_gpu_count and node asset gpuCount): GFD's nvidia.com/gpu.count on a node with
    # nvidia.com/gpu.replicas (time-slicing), else the advertised nvidia.com/gpu; 0 on a MIG-mixed node.
    opencost_count: float = 0.0


@dataclass(frozen=True)
class GpuRequest:
    """One container's request integral for one accelerator resource on one node (unit-seconds).

    The resource `seconds` is the container's running seconds (a HAMi container needs them to turn its
    integrals back into per-second requests)."""

    namespace: str
    node: str
    pod: str
    container: str
    resource: str
    unit_seconds: float


@dataclass(frozen=True)
class GpuHeld:
    """What one container holds on one node: physical-device-seconds, and how they were reckoned."""

    namespace: str
    node: str
    pod: str
    container: str
    device_seconds: float
    how: str  # e.g. "nvidia_com_mig_3g_40gb x 0.4286"
    requested_seconds: float = 0.0  # its nvidia.com/gpu request (device units): OpenCost's gpuRequestAverage
    opencost_seconds: float = 0.0  # OpenCost's gpuHours (`opencost_gpu_seconds`)


def opencost_gpu_seconds(asked: float, shared: float, share: float) -> float:
    """OpenCost's gpuHours basis, as its suite defines it (TestGPUCosts: the larger of container_gpu_allocation
    and the nvidia.com/gpu request): the request, or where larger a time-sliced replica's physical share.
    Under GFD's renameByDefault=true the replicas are nvidia.com/gpu.shared (`shared` replica-seconds, each
    `share` of a GPU): OpenCost's container_gpu_allocation for them is that share, and they request no
    nvidia.com/gpu. Under renameByDefault=false they are nvidia.com/gpu, a whole unit each, as OpenCost bills."""
    return max(asked, shared * share)


@dataclass
class GpuPodCost:
    """Per (namespace, node, pod, container): physical GPU-seconds and their cost, for GPU views (efficiency, waste)."""

    gpu_seconds: float = 0.0
    cost: float = 0.0
    requested_seconds: float = 0.0  # nvidia.com/gpu request-seconds, as GpuHeld's
    opencost_seconds: float = 0.0  # OpenCost's gpuHours basis, as GpuHeld's

    def add(self, other: GpuPodCost) -> None:
        self.gpu_seconds += other.gpu_seconds
        self.cost += other.cost
        self.requested_seconds += other.requested_seconds
        self.opencost_seconds += other.opencost_seconds


def _num(labels: Mapping[str, str], key: str) -> float | None:
    try:
        v = float(labels.get(key, ""))
    except ValueError:
        return None
    return v if v > 0 and math.isfinite(v) else None


def _rule_for(name: str, labels: Mapping[str, str], rules: Iterable[GpuNodeRule]) -> GpuNodeRule | None:
    """The first `gpu.nodes` rule whose labels (or `node`) all match."""
    for rule in rules:
        if all((v := name if k == "node" else labels.get(ksm_label(k))) is not None and fnmatch.fnmatchcase(v, p)
               for k, p in rule.match.items()):
            return rule
    return None


def learn_node(name: str, caps: Mapping[str, float], labels: Mapping[str, str], instance_type: str,
               cfg: GpuConfig) -> GpuNode | None:
    """A node's GPU model from its advertised capacity per KSM resource and its GFD labels; None without GPUs.

    Replicas: `gpu.nodes` rule, else GFD's nvidia.com/gpu.replicas, else capacity / nvidia.com/gpu.count,
    else 1 (whole GPUs). MIG slices are shares of the model's compute slices (7, or 4 on an A30), or of its
    memory with `gpu.migShare: memory`. Physical GPUs on a MIG node: nvidia.com/gpu.count, else the slices
    rounded up to whole GPUs.
    """
    caps = {r: v for r, v in caps.items() if v > 0 and r not in HAMI}
    if not caps:
        return None
    rule = _rule_for(name, labels, cfg.nodes)
    product = labels.get(L_PRODUCT, "")
    model = (rule.model if rule and rule.model else "") or model_of(product, instance_type, cfg.instanceModels)
    count, replicas_lbl = _num(labels, L_COUNT), _num(labels, L_REPLICAS)
    if rule and rule.replicas:
        replicas_lbl = rule.replicas
    mem_mib = _num(labels, L_MEMORY) or model_memory_gib(model) * 1024
    max_g = MIG_SLICES.get(model, 7)
    shares: dict[str, float] = {}
    physical, mode, replicas = 0.0, "whole", 1.0

    mig = {r: (int(m.group(1)), int(m.group(2))) for r in caps if (m := MIG_RESOURCE.match(r))}
    single = MIG_SINGLE_PRODUCT.search(product)
    whole = sum(caps.get(r, 0.0) for r in NVIDIA_WHOLE)
    if mig:
        mode = "mig-mixed"
        total_gib = model_memory_gib(model)
        for r, (g, gb) in mig.items():
            shares[r] = gb / total_gib if cfg.migShare == "memory" and total_gib else g / max_g
        for r in NVIDIA_WHOLE:  # mixed strategy: GPUs without MIG stay whole
            if r in caps:
                shares[r] = 1.0
        sliced = math.ceil(sum(caps[r] * g for r, (g, _gb) in mig.items()) / max_g - 1e-9)
        physical = count if count is not None else sliced + whole
    elif single and whole:  # GFD names the MIG profile in the product only under the single strategy
        mode = "mig-single"
        g = int(single.group(1))
        per_gpu = max(max_g // g, 1)
        gb = int(single.group(2))
        total_gib = model_memory_gib(model)
        share = gb / total_gib if cfg.migShare == "memory" and total_gib else g / max_g
        shares.update({r: share for r in NVIDIA_WHOLE if r in caps})
        physical = whole / per_gpu
    elif whole:
        replicas = replicas_lbl or (whole / count if count else 1.0)
        replicas = max(replicas, 1.0)
        physical = whole / replicas
        if replicas > 1:
            mode = "mps" if labels.get(L_SHARING, "") == "mps" else "time-slicing"
        shares.update({r: 1 / replicas for r in NVIDIA_WHOLE if r in caps})

    devices = max((caps.get(r, 0.0) for r in NEURON_DEVICE), default=0.0)
    cores = caps.get(NEURON_CORE, 0.0)
    if devices or cores:
        mode = "neuron"
        physical += devices or cores  # cores alone: each core counted as a device
        shares.update({r: 1.0 for r in NEURON_DEVICE if r in caps})
        if cores:
            shares[NEURON_CORE] = (devices / cores) if devices else 1.0
    for r in (*OTHER_WHOLE, *cfg.resources):
        if r in caps and r not in shares:
            mode = "accelerator" if mode == "whole" and not whole else mode
            per = replicas_lbl or 1.0
            physical += caps[r] / per
            shares[r] = 1 / per
    if physical <= 0:
        return None
    known = bool(replicas_lbl or count or mig or single)
    return GpuNode(name, model, physical, mode, shares, replicas, mem_mib, known,
                   opencost_gpu_count(labels, caps.get("nvidia_com_gpu", 0.0)))


def opencost_gpu_count(labels: Mapping[str, str], nvidia_gpu: float) -> float:
    """The GPU count OpenCost reads from Kubernetes (pkg/costmodel getGPUCount), the count its suite compares:
    with GFD's replicas label, the physical nvidia.com/gpu.count (0 without it); else the advertised
    nvidia.com/gpu capacity. A MIG-mixed node advertises no nvidia.com/gpu, so OpenCost counts none there."""
    if L_REPLICAS in labels:
        return _num(labels, L_COUNT) or 0.0
    return nvidia_gpu


def _hami_fraction(per_vgpu: Mapping[str, float], node: GpuNode, by: str) -> float:
    """The fraction of a physical GPU one HAMi vGPU holds: its memory share, its cores share, or the larger.

    A share it did not ask for counts as the whole GPU: HAMi gives a container without gpumem all the memory,
    and without gpucores no compute limit."""
    mem = 1.0
    if HAMI_MEM in per_vgpu and node.memory_mib:
        mem = per_vgpu[HAMI_MEM] / node.memory_mib
    elif HAMI_MEM_PCT in per_vgpu:
        mem = per_vgpu[HAMI_MEM_PCT] / 100
    cores = per_vgpu[HAMI_CORES] / 100 if HAMI_CORES in per_vgpu else 1.0
    frac = {"memory": mem, "cores": cores}.get(by, max(mem, cores))
    return min(max(frac, 0.0), 1.0)


def holdings(requests: Iterable[GpuRequest], nodes: Mapping[str, GpuNode], cfg: GpuConfig) -> list[GpuHeld]:
    """Each container's physical-device-seconds per node. Requests on nodes without a GPU model are dropped
    (nothing to price them against), as are resources the node does not advertise.

    Requests are integrals, so a HAMi container's gpumem/gpucores (per vGPU in its spec) are their integrals
    over its running seconds; it holds (vGPU-seconds, or its running seconds for one vGPU) x that fraction."""
    per: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for r in requests:
        if r.node in nodes and r.unit_seconds > 0:
            d = per.setdefault((r.namespace, r.node, r.pod, r.container), {})
            d[r.resource] = d.get(r.resource, 0.0) + r.unit_seconds
    out: list[GpuHeld] = []
    for (ns, node_name, pod, container), req in sorted(per.items()):
        node = nodes[node_name]
        running = req.pop(SECONDS, 0.0)
        asked = req.pop(ASKED, 0.0)
        opencost = opencost_gpu_seconds(asked, req.get(SHARED, 0.0), node.shares.get(SHARED, 0.0))
        if running > 0 and any(h in req for h in HAMI):
            vgpu_s = sum(req.get(r, 0.0) for r in NVIDIA_WHOLE) or running
            per_vgpu = {h: req[h] / running for h in HAMI if h in req}  # the spec's values: each per vGPU
            frac = _hami_fraction(per_vgpu, node, cfg.fractionBy)
            out.append(GpuHeld(ns, node_name, pod, container, vgpu_s * frac, f"hami {cfg.fractionBy} x {frac:.4g}",
                               asked, opencost))
            continue
        held, hows = 0.0, []
        for res, qty in sorted(req.items()):
            share = node.shares.get(res)
            if share is None:
                continue
            held += qty * share
            hows.append(f"{res} x {share:.4g}")
        if held > 0:
            out.append(GpuHeld(ns, node_name, pod, container, held, ", ".join(hows), asked, opencost))
    return out
