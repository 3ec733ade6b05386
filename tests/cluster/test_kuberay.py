"""cluster/kuberay/: the RayCluster and RayJob manifests, checked structurally.

No Kubernetes cluster runs here, so the manifests are checked against the ray.io/v1 fields
of KubeRay v1.6 that they use (names, types, enums; an unknown field at a checked level is
an error, as the CRD's structural schema prunes it), and for what the project needs of
them: token authentication from a Secret, nothing exposed beyond the cluster, GPU
workers, an entrypoint that names a script of this repository with flags it accepts, the
image's Ray equal to the project's pin.
"""

import re
import shlex

import jsonschema
import pytest
import yaml
from helpers.clusters import pinned_ray
from helpers.paths import ROOT

FOLDER = ROOT / "cluster" / "kuberay"
IMAGE_ROOT = "/home/ray/pdarts-ray"  # where the Dockerfile puts the repository's files

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}
_POD_TEMPLATE = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "required": ["name", "image"]},
                }
            },
        }
    },
}
_START_PARAMS = {"type": "object", "additionalProperties": _STR}  # map[string]string
RAY_CLUSTER_SPEC = {
    "type": "object",
    "required": ["headGroupSpec"],
    "additionalProperties": False,
    "properties": {
        "rayVersion": _STR,
        "suspend": _BOOL,
        "managedBy": _STR,
        "enableInTreeAutoscaling": _BOOL,
        "headServiceAnnotations": {"type": "object"},
        "gcsFaultToleranceOptions": {"type": "object"},
        "upgradeStrategy": {"type": "object"},
        "authOptions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "mode": {"enum": ["disabled", "token"]},
                "secretName": _STR,
                "enableK8sTokenAuth": _BOOL,
            },
        },
        "autoscalerOptions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "upscalingMode": {"enum": ["Default", "Aggressive", "Conservative"]},
                "idleTimeoutSeconds": _INT,
                "resources": {"type": "object"},
                "image": _STR,
                "imagePullPolicy": _STR,
                "env": {"type": "array"},
                "envFrom": {"type": "array"},
                "volumeMounts": {"type": "array"},
                "securityContext": {"type": "object"},
                "version": {"enum": ["v1", "v2"]},
            },
        },
        "headGroupSpec": {
            "type": "object",
            "required": ["template"],
            "additionalProperties": False,
            "properties": {
                "template": _POD_TEMPLATE,
                "rayStartParams": _START_PARAMS,
                "headService": {"type": "object"},
                "enableIngress": _BOOL,
                "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
            },
        },
        "workerGroupSpecs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["groupName", "template"],
                "additionalProperties": False,
                "properties": {
                    "groupName": _STR,
                    "replicas": _INT,
                    "minReplicas": _INT,
                    "maxReplicas": _INT,
                    "idleTimeoutSeconds": _INT,
                    "rayStartParams": _START_PARAMS,
                    "template": _POD_TEMPLATE,
                    "scaleStrategy": {"type": "object"},
                    "numOfHosts": _INT,
                    "suspend": _BOOL,
                },
            },
        },
    },
}
RAY_JOB_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "required": ["entrypoint", "rayClusterSpec"],
    "properties": {
        "entrypoint": _STR,
        "runtimeEnvYAML": _STR,
        "jobId": _STR,
        "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
        "shutdownAfterJobFinishes": _BOOL,
        "ttlSecondsAfterFinished": _INT,
        "activeDeadlineSeconds": _INT,
        "backoffLimit": _INT,
        "suspend": _BOOL,
        "managedBy": _STR,
        "clusterSelector": {"type": "object"},
        "submitterPodTemplate": {"type": "object"},
        "metadata": {"type": "object"},
        "submitterConfig": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"backoffLimit": _INT},
        },
        "deletionStrategy": {"type": "object"},
        "entrypointResources": _STR,
        "entrypointNumCpus": {"type": "number"},
        "entrypointNumGpus": {"type": "number"},
        "rayClusterSpec": RAY_CLUSTER_SPEC,
    },
}


def manifest(kind, spec_schema):
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "ray.io/v1"},
            "kind": {"const": kind},
            "metadata": {"type": "object", "required": ["name"], "properties": {"name": _STR}},
            "spec": spec_schema,
        },
    }


def load(name):
    return yaml.safe_load((FOLDER / name).read_text())


@pytest.fixture(scope="module")
def cluster():
    return load("raycluster.yaml")


@pytest.fixture(scope="module")
def job():
    return load("rayjob.yaml")


def cluster_specs(cluster, job):
    return [cluster["spec"], job["spec"]["rayClusterSpec"]]


def containers(spec):
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_the_manifests_have_kuberay_v1_fields_and_types(cluster, job):
    jsonschema.validate(cluster, manifest("RayCluster", RAY_CLUSTER_SPEC))
    jsonschema.validate(job, manifest("RayJob", RAY_JOB_SPEC))


def test_a_misspelt_field_is_an_error(job):
    bad = {**job, "spec": {**job["spec"], "shutdownAfterJobFinish": True}}
    with pytest.raises(jsonschema.ValidationError, match="shutdownAfterJobFinish"):
        jsonschema.validate(bad, manifest("RayJob", RAY_JOB_SPEC))


def test_the_job_runs_the_cluster_of_raycluster_yaml(cluster, job):
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]


def test_ray_is_the_projects_ray_everywhere(cluster, job):
    version = pinned_ray().split("==")[1]
    assert all(spec["rayVersion"] == version for spec in cluster_specs(cluster, job))
    (base,) = re.findall(r"^FROM\s+(\S+)", (FOLDER / "Dockerfile").read_text(), re.M)
    assert base.startswith(f"rayproject/ray:{version}-py311")
    images = {c["image"] for spec in cluster_specs(cluster, job) for c in containers(spec)}
    assert len(images) == 1  # head and workers run one image


def test_token_authentication_from_a_secret(cluster, job):
    for spec in cluster_specs(cluster, job):
        assert spec["authOptions"] == {"mode": "token", "secretName": "pdarts-ray-token"}
        for c in containers(spec):
            assert not [e for e in c.get("env", []) if e["name"].startswith("RAY_AUTH") and "value" in e], (
                "a token is never written into a manifest"
            )
    for name in ("raycluster.yaml", "rayjob.yaml"):
        assert "kubectl create secret generic pdarts-ray-token" in (FOLDER / name).read_text()


def test_nothing_is_exposed_beyond_the_cluster(cluster, job):
    for spec in cluster_specs(cluster, job):
        head = spec["headGroupSpec"]
        assert head["serviceType"] == "ClusterIP" and not head.get("enableIngress", False)
    kinds = [
        doc.get("kind") for path in FOLDER.glob("*.yaml") for doc in yaml.safe_load_all(path.read_text())
    ]
    assert "Ingress" not in kinds
    services = [
        doc
        for path in FOLDER.glob("*.yaml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc.get("kind") == "Service"
    ]
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services)


def test_workers_autoscale_on_gpus(cluster, job):
    for spec in cluster_specs(cluster, job):
        assert spec["enableInTreeAutoscaling"] is True
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        for group in spec["workerGroupSpecs"]:
            assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
            assert group["maxReplicas"] > group["minReplicas"]
            for c in group["template"]["spec"]["containers"]:
                res = c["resources"]
                # an extended resource's request must equal its limit
                assert int(res["limits"]["nvidia.com/gpu"]) >= 1
                assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"]


def test_every_pod_writes_the_same_object_store(cluster, job):
    for spec in cluster_specs(cluster, job):
        stores = {e["value"] for c in containers(spec) for e in c["env"] if e["name"] == "PDARTS_STORAGE"}
        assert len(stores) == 1 and re.match(r"^(s3|gs)://", stores.pop())
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        assert {g["template"]["spec"]["serviceAccountName"] for g in groups} == {
            load("serviceaccount.yaml")["metadata"]["name"]
        }


def test_the_job_runs_a_script_of_this_repository_with_flags_it_takes(job):
    from pdarts_ray.cli.main import build_parser
    from pdarts_ray.core.config import SEARCH_PRESETS

    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    python, script, *flags = shlex.split(spec["entrypoint"])
    assert python == "python" and script.startswith(IMAGE_ROOT + "/")
    local = ROOT / script[len(IMAGE_ROOT) + 1 :]
    assert local.is_file()
    args = build_parser().parse_args(["sweep", "--experiment", "dropout", *flags])  # an unknown flag exits
    assert args.preset in SEARCH_PRESETS and args.name
    dockerfile = (FOLDER / "Dockerfile").read_text()
    assert f"WORKDIR {IMAGE_ROOT}" in dockerfile
    assert re.search(rf"^COPY .*\b{local.parent.name}\b", dockerfile, re.M)
    assert re.search(r"^COPY .*\bpdarts_ray\b", dockerfile, re.M)
