"""cluster/aws/iam.yaml: least-privilege roles for cluster/gpu.yaml, checked offline.

The policy documents are read statically: every action is named (no wildcards), a resource
of "*" goes only with the Describe calls that accept nothing narrower, the actions that
change instances are conditioned on the cluster's tag, the head may pass the worker role
and no other, and workers reach only the results bucket. Then Ray's AWS bootstrap runs
against moto with these profiles in place and creates no IAM of its own.
"""

import pytest
import yaml
from helpers.paths import ROOT

TEMPLATE = ROOT / "cluster" / "aws" / "iam.yaml"
# actions EC2 accepts only with Resource "*" (no resource-level permissions)
UNSCOPED_OK = {"ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "ec2:DescribeImages"}
CHANGES_INSTANCES = {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateTags"}


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form functions, kept as {"Fn::Name": argument}."""


for _tag in ("Sub", "Ref", "GetAtt", "Join", "Select", "If"):

    def _construct(loader, node, tag=_tag):
        value = (
            loader.construct_scalar(node)
            if isinstance(node, yaml.ScalarNode)
            else loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_mapping(node)
        )
        return {"Ref" if tag == "Ref" else f"Fn::{tag}": value}

    CfnLoader.add_constructor(f"!{_tag}", _construct)


def template():
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)


def statements(resources, role):
    return [
        s
        for policy in resources[role]["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    ]


def as_list(value):
    return value if isinstance(value, list) else [value]


def problems(resources) -> list[str]:
    """What a least-privilege review would flag in the roles' policies."""
    found = []
    for role in ("HeadRole", "WorkerRole"):
        for s in statements(resources, role):
            actions, targets = as_list(s["Action"]), as_list(s["Resource"])
            if s.get("Effect") != "Allow" or "NotAction" in s or "NotResource" in s:
                found.append(f"{role} {s.get('Sid')}: only plain Allow statements")
            for action in actions:
                if "*" in action:
                    found.append(f"{role} {s.get('Sid')}: wildcard action {action}")
            if "*" in targets and not set(actions) <= UNSCOPED_OK:
                found.append(f"{role} {s.get('Sid')}: Resource * for {sorted(set(actions) - UNSCOPED_OK)}")
            for target in targets:
                text = str(target)
                if target != "*" and (text.endswith(":*") or "::*" in text):
                    found.append(f"{role} {s.get('Sid')}: resource {text} covers a whole service")
            # launching also needs the subnet, security group, image, key and interface, which
            # carry no tag; the instances and volumes themselves must be the cluster's
            touches_instances = (
                any(k in str(t) for t in targets for k in ("instance/", "volume/")) or "*" in targets
            )
            if set(actions) & CHANGES_INSTANCES and touches_instances and not s.get("Condition"):
                found.append(f"{role} {s.get('Sid')}: changes instances with no condition on the cluster")
            if "iam:PassRole" in actions and targets != [{"Fn::GetAtt": "WorkerRole.Arn"}]:
                found.append(f"{role} {s.get('Sid')}: may pass roles other than the worker's")
    for s in statements(resources, "WorkerRole"):
        if any(not a.startswith("s3:") for a in as_list(s["Action"])):
            found.append(f"WorkerRole {s.get('Sid')}: workers need the results bucket only")
    return found


def test_the_policies_grant_only_what_the_autoscaler_and_the_results_need():
    assert problems(template()["Resources"]) == []


@pytest.mark.parametrize("widen", ["action", "resource", "condition", "pass_any_role", "worker_ec2"])
def test_the_review_catches_a_widened_policy(widen):
    resources = template()["Resources"]
    head = statements(resources, "HeadRole")
    launch = next(s for s in head if "ec2:RunInstances" in as_list(s["Action"]))
    if widen == "action":
        launch["Action"] = ["ec2:*"]
    elif widen == "resource":
        launch["Resource"] = "*"
    elif widen == "condition":
        launch.pop("Condition")
    elif widen == "pass_any_role":
        next(s for s in head if "iam:PassRole" in as_list(s["Action"]))["Resource"] = "*"
    else:
        statements(resources, "WorkerRole")[0]["Action"] = ["s3:ListBucket", "ec2:RunInstances"]
    assert problems(resources)


def test_the_cluster_config_uses_the_templates_profiles():
    resources = template()["Resources"]
    names = {resources[r]["Properties"]["InstanceProfileName"] for r in ("HeadProfile", "WorkerProfile")}
    config = yaml.safe_load((ROOT / "cluster" / "gpu.yaml").read_text())
    used = {t["node_config"]["IamInstanceProfile"]["Name"] for t in config["available_node_types"].values()}
    assert used == names == {"pdarts-ray-head", "pdarts-ray-worker"}
    # Ray tags every node with ray-cluster-name: the conditions must name this cluster
    assert template()["Parameters"]["ClusterName"]["Default"] == config["cluster_name"]


def _resolve(value, params):
    """A policy document with the template's parameters filled in (for moto)."""
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"]
            for key, v in params.items():
                text = text.replace("${" + key + "}", v)
            return text
        if set(value) == {"Ref"}:
            return params[value["Ref"]]
        if set(value) == {"Fn::GetAtt"}:
            return params[value["Fn::GetAtt"]]
        return {k: _resolve(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, params) for v in value]
    return value


def test_rays_bootstrap_creates_no_iam_of_its_own_with_these_profiles(monkeypatch, tmp_path):
    import json

    import boto3
    import moto
    from ray.autoscaler._private.aws import config as aws_config
    from ray.autoscaler._private.aws import utils as aws_utils
    from ray.autoscaler._private.util import prepare_config

    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "t",
        "AWS_DEFAULT_REGION": "us-west-2",
        "HOME": str(tmp_path),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(aws_config.time, "sleep", lambda s: None)
    for cached in (aws_utils.resource_cache, aws_utils.client_cache, aws_config._get_subnets_or_die):
        cached.cache_clear()
    config = prepare_config(yaml.safe_load((ROOT / "cluster" / "gpu.yaml").read_text()))
    resources = template()["Resources"]
    try:
        with moto.mock_aws():
            iam = boto3.client("iam")
            params = {
                "AWS::Region": "us-west-2",
                "AWS::AccountId": "123456789012",
                "ClusterName": "pdarts",
                "ResultsBucket": "results-bucket",
                "ResultsPrefix": "sweeps",
                "WorkerRole.Arn": "arn:aws:iam::123456789012:role/pdarts-ray-worker",
            }
            for role, profile in (("WorkerRole", "WorkerProfile"), ("HeadRole", "HeadProfile")):
                props = resources[role]["Properties"]
                iam.create_role(
                    RoleName=props["RoleName"],
                    AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]),
                )
                for policy in props["Policies"]:
                    iam.put_role_policy(
                        RoleName=props["RoleName"],
                        PolicyName=policy["PolicyName"],
                        PolicyDocument=json.dumps(_resolve(policy["PolicyDocument"], params)),
                    )
                name = resources[profile]["Properties"]["InstanceProfileName"]
                iam.create_instance_profile(InstanceProfileName=name)
                iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=props["RoleName"])
            bootstrapped = aws_config.bootstrap_aws(config)
            roles = sorted(r["RoleName"] for r in iam.list_roles()["Roles"])
            profiles = sorted(
                p["InstanceProfileName"] for p in iam.list_instance_profiles()["InstanceProfiles"]
            )
    finally:
        for cached in (aws_utils.resource_cache, aws_utils.client_cache, aws_config._get_subnets_or_die):
            cached.cache_clear()
    assert roles == ["pdarts-ray-head", "pdarts-ray-worker"]
    assert profiles == ["pdarts-ray-head", "pdarts-ray-worker"]
    head = bootstrapped["available_node_types"][bootstrapped["head_node_type"]]["node_config"]
    assert head["IamInstanceProfile"] == {"Name": "pdarts-ray-head"}
