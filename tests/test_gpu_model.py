"""The GPU model's pure parts: models from labels and instance types, learned replicas, slice shares,
HAMi fractions and the GPU price's place in the precedence. Amounts worked by hand in comments."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from exporter.cli import main
from exporter.config.gpu import GpuConfig
from exporter.config.pricebook import Pricing
from exporter.config.schema import parse_config
from exporter.core.gpu import GpuRequest, holdings, learn_node
from exporter.core.gpuprices import gpu_price, load_shipped_gpu_prices, model_from_product, model_of
from exporter.core.pricing import GIB, NodeFacts, price_node, price_nodes
from exporter.engine.gpufetch import unpriced_gpus
from exporter.vocab.errors import ConfigError
from exporter.vocab.labels import ksm_label

CFG = GpuConfig()


def gfd(**kv: str) -> dict[str, str]:
    """GFD labels by their short names: product, count, replicas, strategy, sharing, memory."""
    names = {"product": "nvidia.com/gpu.product", "count": "nvidia.com/gpu.count",
             "replicas": "nvidia.com/gpu.replicas", "strategy": "nvidia.com/mig.strategy",
             "sharing": "nvidia.com/gpu.sharing-strategy", "memory": "nvidia.com/gpu.memory"}
    return {ksm_label(names[k]): v for k, v in kv.items()}


@pytest.mark.parametrize("product, model", [
    ("NVIDIA-A100-SXM4-80GB", "a100-80gb"), ("NVIDIA-A100-SXM4-40GB", "a100-40gb"),
    ("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "a100-40gb"), ("NVIDIA-A100-80GB-PCIe-MIG-3g.40gb", "a100-80gb"),
    ("NVIDIA-H100-80GB-HBM3", "h100"), ("NVIDIA-H200", "h200"), ("NVIDIA-L4-SHARED", "l4"),
    ("NVIDIA-L40S", "l40s"), ("Tesla-T4", "t4"), ("NVIDIA-A10G", "a10g"), ("Tesla-V100-SXM2-16GB", "v100"),
    ("NVIDIA-GeForce-RTX-4090", ""),
])
def test_model_from_the_gfd_product(product: str, model: str) -> None:
    assert model_from_product(product) == model


def test_model_from_the_instance_type_config_first() -> None:
    assert model_of("", "p4de.24xlarge") == "a100-80gb"
    assert model_of("", "g2-standard-8") == "l4"
    assert model_of("", "Standard_NC24ads_A100_v4") == "a100-80gb"
    assert model_of("", "p4de.24xlarge", {"p4de.*": "h100"}) == "h100"
    assert model_of("NVIDIA-L4", "p4de.24xlarge") == "l4"  # the product label wins
    assert model_of("", "m5.large") == ""


def test_price_by_model_config_then_shipped() -> None:
    shipped = load_shipped_gpu_prices()
    assert gpu_price("l4", {}, shipped) is not None and gpu_price("l4", {}, shipped).hourly == 0.56  # type: ignore[union-attr]
    assert gpu_price("l4", {"l4": 0.5}, shipped).source == "gpu.prices"  # type: ignore[union-attr]
    assert gpu_price("h200", {}, shipped) is None  # not shipped: the default rate, with a warning
    assert gpu_price("l4", {}, None) is None  # shippedPrices: false


def test_mig_mixed_without_a_count_label_rounds_slices_up() -> None:
    # 1 x 4g.40gb + 2 x 1g.10gb on an A100 80GB = 6 of 7 compute slices: one GPU.
    caps = {"nvidia_com_mig_4g_40gb": 1.0, "nvidia_com_mig_1g_10gb": 2.0}
    n = learn_node("n", caps, gfd(product="NVIDIA-A100-SXM4-80GB"), "", CFG)
    assert n is not None and (n.physical, n.mode) == (1, "mig-mixed")
    assert n.shares == {"nvidia_com_mig_4g_40gb": 4 / 7, "nvidia_com_mig_1g_10gb": 1 / 7}


def test_mig_memory_share() -> None:
    # memory: 3g.40gb holds 40 of 80 GB = 1/2, 1g.10gb 10/80 = 1/8.
    n = learn_node("n", {"nvidia_com_mig_3g_40gb": 1, "nvidia_com_mig_1g_10gb": 4},
                   gfd(product="NVIDIA-A100-SXM4-80GB", count="1"), "", GpuConfig(migShare="memory"))
    assert n is not None and n.shares == {"nvidia_com_mig_3g_40gb": 0.5, "nvidia_com_mig_1g_10gb": 0.125}


def test_mig_single_3g_two_per_gpu_and_a30() -> None:
    # 3g.20gb: two per A100 40GB (6 of 7 slices), 8 devices = 4 GPUs, each device 3/7.
    n = learn_node("n", {"nvidia_com_gpu": 8}, gfd(product="NVIDIA-A100-SXM4-40GB-MIG-3g.20gb", strategy="single"),
                   "", CFG)
    assert n is not None and (n.physical, n.mode, n.shares["nvidia_com_gpu"]) == (4, "mig-single", 3 / 7)
    # An A30 has 4 compute slices: 1g.6gb is 1/4, four per GPU.
    a30 = learn_node("n", {"nvidia_com_gpu": 4}, gfd(product="NVIDIA-A30-MIG-1g.6gb", strategy="single"), "", CFG)
    assert a30 is not None and (a30.physical, a30.shares["nvidia_com_gpu"]) == (1, 0.25)
    # The strategy label not exported: the product's -MIG- suffix alone says single strategy.
    bare = learn_node("n", {"nvidia_com_gpu": 14}, gfd(product="NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"), "", CFG)
    assert bare is not None and (bare.physical, bare.mode) == (2, "mig-single")


def test_replicas_learned_from_labels_or_capacity() -> None:
    # Renamed resource (nvidia.com/gpu.shared), replicas from capacity / count: 8 / 2 = 4.
    n = learn_node("n", {"nvidia_com_gpu_shared": 8}, gfd(product="NVIDIA-T4-SHARED", count="2", sharing="mps"), "",
                   CFG)
    assert n is not None and (n.physical, n.replicas, n.mode, n.shares) == (
        2, 4, "mps", {"nvidia_com_gpu_shared": 0.25})
    # No GFD labels: whole GPUs.
    w = learn_node("n", {"nvidia_com_gpu": 4}, {}, "p3.8xlarge", CFG)
    assert w is not None and (w.physical, w.model, w.mode) == (4, "v100", "whole")
    # A gpu.nodes rule overrides the labels (HAMi's deviceSplitCount).
    cfg = GpuConfig.model_validate({"nodes": [{"match": {"node": "hami-*"}, "replicas": 10, "model": "t4"}]})
    h = learn_node("hami-1", {"nvidia_com_gpu": 20}, gfd(replicas="4"), "", cfg)
    assert h is not None and (h.physical, h.model) == (2, "t4")


def test_neuron_cores_and_other_accelerators() -> None:
    # trn1.32xlarge: 16 devices, 32 cores: a core is 1/2 device.
    n = learn_node("n", {"aws_amazon_com_neuron": 16, "aws_amazon_com_neuroncore": 32}, {}, "trn1.32xlarge", CFG)
    assert n is not None and (n.physical, n.model, n.shares["aws_amazon_com_neuroncore"]) == (16, "trainium", 0.5)
    tpu = learn_node("n", {"google_com_tpu": 4}, {}, "", GpuConfig(resources=["google_com_tpu"]))
    assert tpu is not None and (tpu.physical, tpu.mode) == (4, "accelerator")
    assert learn_node("n", {"nvidia_com_gpu": 0}, {}, "", CFG) is None


def test_hami_fraction_by_memory_cores_or_max() -> None:
    node = learn_node("t4", {"nvidia_com_gpu": 10}, gfd(count="1", memory="16384"), "", CFG)
    assert node is not None

    def held(by: str, **res: float) -> float:
        # One hour running: every integral is the request x 3600.
        reqs = [GpuRequest("ns", "t4", "p", "c", r, v * 3600) for r, v in res.items()]
        reqs.append(GpuRequest("ns", "t4", "p", "c", "seconds", 3600))
        return sum(h.device_seconds for h in holdings(reqs, {"t4": node}, GpuConfig(fractionBy=by))) / 3600

    # 2 vGPUs of 4096 MiB (1/4 of 16384) and 50 cores: max 0.5 per vGPU x 2 = 1.0 GPU; memory 0.5; cores 1.0.
    assert held("max", nvidia_com_gpu=2, nvidia_com_gpumem=4096, nvidia_com_gpucores=50) == pytest.approx(1.0)
    assert held("memory", nvidia_com_gpu=2, nvidia_com_gpumem=4096, nvidia_com_gpucores=50) == pytest.approx(0.5)
    assert held("cores", nvidia_com_gpu=2, nvidia_com_gpumem=4096, nvidia_com_gpucores=50) == pytest.approx(1.0)
    # gpucores alone: HAMi gives the whole memory, so under max the vGPU is a whole GPU; by cores 0.3.
    assert held("max", nvidia_com_gpu=1, nvidia_com_gpucores=30) == pytest.approx(1.0)
    assert held("cores", nvidia_com_gpu=1, nvidia_com_gpucores=30) == pytest.approx(0.3)
    # gpumem-percentage 25 and no vGPU count: one vGPU, a quarter.
    assert held("max", nvidia_com_gpumem_percentage=25, nvidia_com_gpucores=10) == pytest.approx(0.25)


def test_requests_a_node_does_not_advertise_are_not_charged() -> None:
    node = learn_node("n", {"nvidia_com_gpu": 2}, {}, "", CFG)
    assert node is not None
    reqs = [GpuRequest("ns", "n", "p", "c", "nvidia_com_mig_1g_10gb", 3600),
            GpuRequest("ns", "elsewhere", "p", "c", "nvidia_com_gpu", 3600)]
    assert holdings(reqs, {"n": node}, CFG) == []


def test_gpu_price_in_the_precedence() -> None:
    # g6.xlarge-like: 4 cores, 16 GiB, 1 L4 at 0.56. A unit-rate rule without gpu takes the model price;
    # OpenCost's node_gpu_hourly_cost beats it; a rule's gpu beats both.
    facts = NodeFacts("n", 4, 16 * GIB, gpus=1, labels={ksm_label("node.kubernetes.io/instance-type"): "g6.xlarge"},
                      gpu_model="l4", gpu_price=0.56)
    rule = {"match": {"node.kubernetes.io/instance-type": "g6.*"}, "cpu": 0.04, "ram": 0.005}
    assert price_node(facts, Pricing.model_validate({"rules": [rule]})).gpu == 0.56
    assert price_node(facts, Pricing.model_validate({"rules": [{**rule, "gpu": 0.7}]})).gpu == 0.7
    oc = NodeFacts("n", 4, 16 * GIB, gpus=1, opencost={"cpu": 0.03, "ram": 0.004, "gpu": 0.65}, gpu_price=0.56)
    assert price_node(oc, Pricing()).gpu == 0.65
    # An instance total: the GPU first at its model price, CPU and RAM split the rest (0.8048 - 0.56).
    total = price_node(facts, Pricing.model_validate({"rules": [{"match": rule["match"], "hourly": 0.8048}]}))
    assert total.gpu == 0.56
    assert 4 * total.cpu + 16 * total.ram == pytest.approx(0.8048 - 0.56)


def test_bad_gpu_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"gpu\.prices"):
        parse_config({"gpu": {"prices": {"l4": -1}}})
    with pytest.raises(ConfigError, match=r"gpu\.migShare"):
        parse_config({"gpu": {"migShare": "slices"}})
    with pytest.raises(ConfigError, match=r"gpu\.resources"):
        parse_config({"gpu": {"resources": ["google.com/tpu"]}})


def test_gpus_at_the_default_rate_are_named() -> None:
    # An H200 has no shipped price: at the default 0.95 unless OpenCost, a rule's gpu or gpu.prices price it.
    h200 = NodeFacts("h200", 8, 64 * GIB, gpus=8, gpu_model="h200")
    by_oc = NodeFacts("oc", 8, 64 * GIB, gpus=8, gpu_model="h200", opencost={"cpu": 0.03, "ram": 0.004, "gpu": 5.0})
    priced = NodeFacts("priced", 8, 64 * GIB, gpus=8, gpu_model="l4", gpu_price=0.56)
    ruled = NodeFacts("ruled", 8, 64 * GIB, gpus=8)
    cpu = NodeFacts("cpu", 8, 64 * GIB)
    pricing = Pricing.model_validate({"rules": [{"match": {"node": "ruled"}, "hourly": 10.0, "gpu": 1.0}]})
    nodes = {f.name: f for f in (h200, by_oc, priced, ruled, cpu)}
    assert unpriced_gpus(nodes, price_nodes(nodes, pricing), pricing) == ["h200"]


def test_bad_gpu_config_is_one_line_on_the_cli(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("gpu:\n  fractionBy: vram\n")
    res = CliRunner().invoke(main, ["allocate", "--config", str(path), "--window", "1h"])
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chargeback: error: ") and "gpu.fractionBy" in lines[0], lines
