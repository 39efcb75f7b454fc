"""The Kubernetes LeaderWorkerSet manifest for multi-node vLLM, checked by the `kubernetes`
client's models (pod templates, Service) and against the LeaderWorkerSet v1 API fields."""

from __future__ import annotations

import yaml

import pytest

from gpuplan.engines import lws

k8s = pytest.importorskip("kubernetes", reason="pip install kubernetes (a test dependency)")

# LeaderWorkerSet v1 API (kubernetes-sigs/lws api/leaderworkerset/v1/leaderworkerset_types.go)
LWS_SPEC = {"replicas", "leaderWorkerTemplate", "rolloutStrategy", "startupPolicy", "networkConfig"}
LWS_TEMPLATE = {"leaderTemplate", "workerTemplate", "size", "restartPolicy", "subGroupPolicy",
                "resizePolicy"}
RESTART = {"RecreateGroupOnPodRestart", "None", "RecreateGroupAfterStart"}

ARGV = ["vllm", "serve", "meta-llama/Llama-3.1-405B-Instruct", "--tensor-parallel-size", "8",
        "--pipeline-parallel-size", "2", "--max-model-len", "8192", "--distributed-executor-backend", "ray",
        "--host", "127.0.0.1", "--port", "8000"]


def _model(data, klass):
    client = k8s.client.ApiClient()
    obj = client._ApiClient__deserialize(data, klass)  # builds the typed model, validating fields
    assert client.sanitize_for_serialization(obj) == data, f"{klass}: fields the model does not know"
    return obj


def test_manifest_is_valid_kubernetes():
    docs = lws.manifest("vllm", ARGV, nodes=2, gpus_per_node=8)
    assert [d["kind"] for d in docs] == ["LeaderWorkerSet", "Service"]
    ws, svc = docs
    assert ws["apiVersion"] == "leaderworkerset.x-k8s.io/v1"
    assert set(ws["spec"]) <= LWS_SPEC and set(ws["spec"]["leaderWorkerTemplate"]) <= LWS_TEMPLATE
    tpl = ws["spec"]["leaderWorkerTemplate"]
    assert tpl["size"] == 2 and tpl["restartPolicy"] in RESTART
    leader = _model(tpl["leaderTemplate"], "V1PodTemplateSpec")
    worker = _model(tpl["workerTemplate"], "V1PodTemplateSpec")
    s = _model(svc, "V1Service")
    lc, wc = leader.spec.containers[0], worker.spec.containers[0]
    assert lc.resources.limits["nvidia.com/gpu"] == "8" == wc.resources.limits["nvidia.com/gpu"]
    # the leader starts the Ray head for the whole group, then vLLM on every GPU of it
    cmd = lc.command[-1]
    assert "leader --ray_cluster_size=$(LWS_GROUP_SIZE)" in cmd and "--ray_address=$(LWS_LEADER_ADDRESS)" in wc.command[-1]
    assert "--tensor-parallel-size 8" in cmd and "--pipeline-parallel-size 2" in cmd
    assert "--host 0.0.0.0" in cmd and f"--port {lws.PORT}" in cmd  # reachable by the Service
    assert lc.ports[0].container_port == lws.PORT == s.spec.ports[0].target_port
    assert s.spec.selector == {"leaderworkerset.sigs.k8s.io/name": "vllm", "role": "leader"}
    assert leader.metadata.labels["role"] == "leader"
    assert lc.readiness_probe.tcp_socket.port == lws.PORT


def test_yaml_round_trips():
    docs = lws.manifest("vllm-405b", ARGV, nodes=4, gpus_per_node=8, replicas=2)
    text = lws.to_yaml(docs)
    assert list(yaml.safe_load_all(text)) == docs
    assert docs[0]["spec"]["replicas"] == 2 and docs[0]["spec"]["leaderWorkerTemplate"]["size"] == 4


def test_multinode_vllm_plan_follows_vllms_documented_steps_and_ships_the_manifest():
    """vLLM's multi-node serving (docs: examples/online_serving/multi-node-serving.sh and the
    distributed serving guide): a Ray head on one node, `ray start --address` on the others, then
    `vllm serve` with TP = GPUs per node and PP = nodes; on Kubernetes the LeaderWorkerSet."""
    from gpuplan import catalog, engines
    from gpuplan.sources.resolve import resolve_model
    from gpuplan.types import Engine, Hardware, Plan, Split, Workload

    h100 = catalog.device("h100-sxm-80gb")
    hw = Hardware(devices=(h100,) * 16, memory_gib=(80.0,) * 16, link=catalog.link("nvlink4"), nodes=2,
                  node_link=catalog.link("ib-ndr-400") if "ib-ndr-400" in catalog.links() else None)
    plan = Plan(Split.TENSOR, Engine.VLLM, tuple(range(16)), tp=8, pp=2, kv_type="fp8")
    model = resolve_model("meta-llama/Llama-3.1-405B-Instruct", "FP8")
    cmd = engines.launch_for(plan, model, hw, Workload(context=8192, users=64))["vllm"]
    argvs = [p.argv for p in cmd.processes]
    assert argvs[0] == ["ray", "start", "--head", "--port=6379"]
    assert argvs[1] == ["ray", "start", "--address=HEAD_IP:6379"]
    serve = argvs[-1]
    assert serve[:2] == ["vllm", "serve"] and cmd.processes[-1].host == cmd.processes[0].host
    assert serve[serve.index("--tensor-parallel-size") + 1] == "8"
    assert serve[serve.index("--pipeline-parallel-size") + 1] == "2"
    assert serve[serve.index("--distributed-executor-backend") + 1] == "ray"
    docs = list(yaml.safe_load_all(cmd.files["lws.yaml"]))
    tpl = docs[0]["spec"]["leaderWorkerTemplate"]
    assert tpl["size"] == 2
    leader = _model(tpl["leaderTemplate"], "V1PodTemplateSpec")
    _model(tpl["workerTemplate"], "V1PodTemplateSpec")
    _model(docs[1], "V1Service")
    assert leader.spec.containers[0].resources.limits["nvidia.com/gpu"] == "8"
    assert "lws.yaml" in cmd.text and any("kubectl apply -f lws.yaml" in n for n in cmd.notes)
