"""A Kubernetes LeaderWorkerSet manifest for a vLLM plan that spans nodes: vLLM's documented
multi-node deployment (https://docs.vllm.ai/en/latest/deployment/frameworks/lws.html, the Ray
variant): the leader pod starts the Ray head and `vllm serve` with TP inside a node and PP
across nodes, each worker pod joins the Ray cluster; a ClusterIP Service reaches the leader.

The manifest is plain data (dicts); tests validate its pod templates and Service with the
`kubernetes` client's models and its LeaderWorkerSet fields against the LWS v1 API
(https://github.com/kubernetes-sigs/lws/blob/main/api/leaderworkerset/v1/leaderworkerset_types.go).
"""

from __future__ import annotations

import shlex

import yaml

IMAGE = "docker.io/vllm/vllm-openai:latest"
SCRIPT = "/vllm-workspace/examples/online_serving/multi-node-serving.sh"  # in vLLM's image
PORT = 8080
SHM_GIB = 15  # the docs' /dev/shm for NCCL/Ray


def _container(name: str, command: str, gpus: int, env: dict[str, str], leader: bool) -> dict:
    c = {
        "name": name,
        "image": IMAGE,
        "command": ["sh", "-c", command],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
        "volumeMounts": [{"mountPath": "/dev/shm", "name": "dshm"}],
    }
    if leader:
        c["ports"] = [{"containerPort": PORT}]
        c["readinessProbe"] = {"tcpSocket": {"port": PORT}, "initialDelaySeconds": 15, "periodSeconds": 10}
    return c


def _pod(container: dict, leader: bool) -> dict:
    t = {"spec": {"containers": [container],
                  "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{SHM_GIB}Gi"}}]}}
    if leader:
        t["metadata"] = {"labels": {"role": "leader"}}
    return t


def manifest(name: str, serve_argv: list[str], nodes: int, gpus_per_node: int,
             env: dict[str, str] | None = None, replicas: int = 1) -> list[dict]:
    """[LeaderWorkerSet, Service] for `nodes` pods of `gpus_per_node` GPUs each; `serve_argv`
    is the `vllm serve ...` command the leader runs once the Ray cluster is up."""
    env = {"HF_TOKEN": "<your Hugging Face token>", **(env or {})}
    argv = list(serve_argv)
    if "--host" in argv:  # the Service reaches the pod on its own address
        argv[argv.index("--host") + 1] = "0.0.0.0"
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(PORT)
    else:
        argv += ["--port", str(PORT)]
    leader_cmd = (f"bash {SCRIPT} leader --ray_cluster_size=$(LWS_GROUP_SIZE); "
                  + " ".join(a if a.startswith("$(") else shlex.quote(a) for a in argv))
    worker_cmd = f"bash {SCRIPT} worker --ray_address=$(LWS_LEADER_ADDRESS)"
    lws = {
        "apiVersion": "leaderworkerset.x-k8s.io/v1",
        "kind": "LeaderWorkerSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "leaderWorkerTemplate": {
                "size": nodes,
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": _pod(_container(f"{name}-leader", leader_cmd, gpus_per_node, env, True), True),
                "workerTemplate": _pod(_container(f"{name}-worker", worker_cmd, gpus_per_node, env, False), False),
            },
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"{name}-leader"},
        "spec": {"ports": [{"name": "http", "port": PORT, "protocol": "TCP", "targetPort": PORT}],
                 "selector": {"leaderworkerset.sigs.k8s.io/name": name, "role": "leader"},
                 "type": "ClusterIP"},
    }
    return [lws, svc]


def to_yaml(docs: list[dict]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
