"""The cluster-launcher configs: Ray's own schema and preparation, and their security properties.

Nothing here calls a cloud: Ray's config preparation and validation run offline.
"""

import re
import shlex

import pytest
import yaml
from helpers.clusters import pinned_ray
from helpers.paths import ROOT
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIGS = ["cluster/gpu.yaml", "cluster/local.yaml"]
START_KEYS = ("head_start_ray_commands", "worker_start_ray_commands")


def load(name):
    return yaml.safe_load((ROOT / name).read_text())


def shell_commands(line):
    """The simple commands of one shell line, each as its argument list."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    out, cur = [], []
    for tok in lexer:
        if tok and set(tok) <= set(";&|"):
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(tok)
    if cur:
        out.append(cur)
    return out


def split_env(command):
    """(the VAR=value assignments before a command, the command's argument list)."""
    env = {}
    while command and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", command[0]):
        key, value = command[0].split("=", 1)
        env[key] = value
        command = command[1:]
    return env, command


def ray_start_commands(config, with_env=False):
    cmds = []
    for key in START_KEYS:
        for line in config[key]:
            for env, argv in map(split_env, shell_commands(line)):
                if argv[:2] == ["ray", "start"]:
                    cmds.append((env, argv) if with_env else argv)
    return cmds


def dashboard_hosts(argv):
    hosts = []
    for i, arg in enumerate(argv):
        if arg == "--dashboard-host":
            hosts.append(argv[i + 1] if i + 1 < len(argv) else None)
        elif arg.startswith("--dashboard-host="):
            hosts.append(arg.split("=", 1)[1])
    return hosts


@pytest.mark.parametrize("name", CONFIGS)
def test_config_passes_rays_preparation_and_schema(name):
    prepared = prepare_config(load(name))
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("name", CONFIGS)
def test_validation_rejects_a_broken_config(name):
    import jsonschema

    config = load(name)
    config["setup_command"] = config.pop("setup_commands")  # a misspelt key
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(config))


def test_gpu_config_has_cpu_head_and_autoscaling_gpu_workers():
    prepared = prepare_config(load("cluster/gpu.yaml"))
    types = prepared["available_node_types"]
    head = types[prepared["head_node_type"]]
    assert not head["node_config"]["InstanceType"].startswith(("g", "p"))
    workers = {k: v for k, v in types.items() if k != prepared["head_node_type"]}
    assert len(workers) >= 2
    for node_type in workers.values():
        assert node_type["min_workers"] == 0 < node_type["max_workers"] <= prepared["max_workers"]
        assert node_type["node_config"]["InstanceType"].startswith(("g", "p"))
    # one type for single-GPU search trials, one with 8 GPUs for ImageNet evaluation
    kinds = {t["node_config"]["InstanceType"] for t in workers.values()}
    assert "g5.xlarge" in kinds and "p4d.24xlarge" in kinds


@pytest.mark.parametrize("name", CONFIGS)
def test_every_ray_start_binds_the_dashboard_to_loopback(name):
    config = load(name)
    starts = ray_start_commands(config)
    assert any("--head" in c for c in starts) and any(
        any(a.startswith("--address") for a in c) for c in starts
    )
    for argv in starts:
        assert dashboard_hosts(argv) == ["127.0.0.1"], shlex.join(argv)
    # The same after Ray merges its defaults (nothing of the defaults' start commands survives).
    assert ray_start_commands(prepare_config(config)) == starts


@pytest.mark.parametrize("name", CONFIGS)
def test_every_ray_start_requires_the_token(name):
    config = load(name)
    starts = ray_start_commands(config, with_env=True)
    assert starts and all(env.get("RAY_AUTH_MODE") == "token" for env, _ in starts)
    assert ray_start_commands(prepare_config(config), with_env=True) == starts


@pytest.mark.parametrize("name", CONFIGS)
def test_every_node_gets_the_clusters_token_and_every_driver_token_mode(name):
    config = load(name)
    source = config["file_mounts"]["~/.ray/auth_token"]  # Ray's default token path on every node
    assert source.startswith("~/.ray/") and source.endswith(".token")
    assert not (ROOT / source.lstrip("~/")).exists()  # made on the user's machine, never in the repository
    assert any("chmod 600 ~/.ray/auth_token" in c for c in config["setup_commands"])
    assert any("export RAY_AUTH_MODE=token" in c and ".bashrc" in c for c in config["setup_commands"])


def test_token_check_catches_a_start_without_it():
    config = load("cluster/local.yaml")
    config["worker_start_ray_commands"] = [
        c.replace("RAY_AUTH_MODE=token ", "") for c in config["worker_start_ray_commands"]
    ]
    assert [
        argv for env, argv in ray_start_commands(config, with_env=True) if env.get("RAY_AUTH_MODE") != "token"
    ]


def test_aws_nodes_require_imdsv2_encrypt_their_volumes_and_use_the_projects_profiles():
    config = load("cluster/gpu.yaml")
    for name, node_type in config["available_node_types"].items():
        node = node_type["node_config"]
        assert node["MetadataOptions"]["HttpTokens"] == "required", name
        assert all(m["Ebs"]["Encrypted"] is True for m in node["BlockDeviceMappings"]), name
        expected = "pdarts-ray-head" if name == config["head_node_type"] else "pdarts-ray-worker"
        assert node["IamInstanceProfile"]["Name"] == expected, name


def test_dashboard_check_catches_an_exposed_dashboard():
    config = load("cluster/gpu.yaml")
    config["head_start_ray_commands"] = [
        c.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0")
        for c in config["head_start_ray_commands"]
    ]
    bad = [c for c in ray_start_commands(config) if dashboard_hosts(c) != ["127.0.0.1"]]
    assert len(bad) == 1


def test_aws_security_group_allows_only_ssh_inbound():
    config = load("cluster/gpu.yaml")
    group = config["provider"]["security_group"]
    assert group["GroupName"]
    rules = group["IpPermissions"]
    assert rules
    for rule in rules:
        assert rule["IpProtocol"] == "tcp"
        assert rule["FromPort"] == rule["ToPort"] == 22
        assert set(rule) <= {"IpProtocol", "FromPort", "ToPort", "IpRanges", "Ipv6Ranges"}
        for r in rule.get("IpRanges", []):
            assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+/\d+", r["CidrIp"])
    # No node type brings groups of its own: Ray puts every node into this group.
    for node_type in config["available_node_types"].values():
        assert "SecurityGroupIds" not in node_type["node_config"]
        assert "NetworkInterfaces" not in node_type["node_config"]
        assert "LaunchTemplate" not in node_type["node_config"]


def test_rays_security_group_rules_open_no_port_but_ssh_from_outside():
    """The rules Ray's AWS bootstrap would put on a group it creates for this config."""
    pytest.importorskip("boto3")
    from ray.autoscaler._private.aws.config import _create_default_inbound_rules

    config = prepare_config(load("cluster/gpu.yaml"))
    rules = _create_default_inbound_rules(
        {"sg-cluster"}, config["provider"]["security_group"]["IpPermissions"]
    )
    for rule in rules:
        from_outside = any(rule.get(k) for k in ("IpRanges", "Ipv6Ranges", "PrefixListIds"))
        if from_outside:
            assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22), rule
        else:
            assert rule["UserIdGroupPairs"] == [{"GroupId": "sg-cluster"}], rule


@pytest.mark.parametrize("name", CONFIGS)
def test_setup_installs_the_project_with_the_pinned_ray(name):
    config = load(name)
    pin = pinned_ray()
    pip_lines = [
        c for line in config["setup_commands"] for c in shell_commands(line) if "pip" in c and "install" in c
    ]
    ray_specs = [a for c in pip_lines for a in c if re.match(r"ray(\[|=|$)", a)]
    assert ray_specs == [pin]
    assert any("-e" in c and "~/pdarts-ray" in c for c in pip_lines)
    # The project reaches the nodes through file_mounts, from the repository root (beside the token).
    assert config["file_mounts"]["~/pdarts-ray"] == "."
    assert set(config["file_mounts"]) == {"~/pdarts-ray", "~/.ray/auth_token"}
    assert (ROOT / ".").joinpath("pyproject.toml").exists()


def test_pinned_ray_is_the_installed_client():
    import ray

    assert pinned_ray().split("==")[1] == ray.__version__


@pytest.mark.parametrize("name", CONFIGS)
def test_results_storage_is_exported_on_every_node(name):
    config = load(name)
    exports = [
        c
        for line in config["setup_commands"]
        for c in shell_commands(line)
        if c[0] == "echo" and any("PDARTS_STORAGE=" in a for a in c)
    ]
    assert len(exports) == 1 and exports[0][-2:] == [">>", "~/.bashrc"]
    (value,) = re.findall(r"PDARTS_STORAGE=(\S+)", " ".join(exports[0]))
    if name == "cluster/gpu.yaml":
        assert value.startswith("s3://")
    # Ray runs the merged setup on the head and on every worker.
    prepared = prepare_config(config)
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert any("PDARTS_STORAGE=" in c for c in prepared[key])


@pytest.fixture
def mocked_aws(monkeypatch, tmp_path):
    """Ray's AWS bootstrap against moto's in-process AWS (no network, no account)."""
    pytest.importorskip("boto3")
    moto = pytest.importorskip("moto")
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-west-2",
        "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
        "HOME": str(tmp_path),
    }.items():
        monkeypatch.setenv(key, value)  # HOME: the key pair Ray creates lands in ~/.ssh
    from ray.autoscaler._private.aws import config as aws_config

    monkeypatch.setattr(aws_config.time, "sleep", lambda s: None)  # IAM propagation waits
    from ray.autoscaler._private.aws import utils as aws_utils

    def forget_clients():  # Ray caches boto3 clients; each mocked account needs fresh ones
        for cached in (aws_utils.resource_cache, aws_utils.client_cache, aws_config._get_subnets_or_die):
            cached.cache_clear()

    forget_clients()
    with moto.mock_aws():
        yield aws_config
    forget_clients()


def _ingress(config, bootstrapped):
    import boto3

    (sg_id,) = {
        g for t in bootstrapped["available_node_types"].values() for g in t["node_config"]["SecurityGroupIds"]
    }
    ec2 = boto3.client("ec2", region_name=config["provider"]["region"])
    (group,) = ec2.describe_security_groups(GroupIds=[sg_id])["SecurityGroups"]
    return sg_id, group["IpPermissions"]


def test_rays_aws_bootstrap_opens_only_ssh_to_the_outside(mocked_aws):
    config = prepare_config(load("cluster/gpu.yaml"))
    sg_id, rules = _ingress(config, mocked_aws.bootstrap_aws(config))
    for rule in rules:
        if rule.get("IpRanges") or rule.get("Ipv6Ranges") or rule.get("PrefixListIds"):
            assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 22, 22), rule
        else:
            assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [sg_id], rule
    cidrs = {r["CidrIp"] for rule in rules for r in rule.get("IpRanges", [])}
    # Ray's own SSH rule comes along when Ray creates the group (hence the README's recipe).
    assert cidrs == {
        "0.0.0.0/0",
        config["provider"]["security_group"]["IpPermissions"][0]["IpRanges"][0]["CidrIp"],
    }


def test_a_group_made_beforehand_keeps_ssh_to_one_address(mocked_aws):
    """The README's recipe: create the group with SSH from one CIDR and member-to-member traffic."""
    import boto3

    config = prepare_config(load("cluster/gpu.yaml"))
    ec2 = boto3.client("ec2", region_name=config["provider"]["region"])
    name = config["provider"]["security_group"]["GroupName"]
    sg = ec2.create_security_group(GroupName=name, Description="pdarts-ray: SSH only")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=sg, IpProtocol="tcp", FromPort=22, ToPort=22, CidrIp="198.51.100.7/32"
    )
    ec2.authorize_security_group_ingress(
        GroupId=sg, IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": sg}]}]
    )
    sg_id, rules = _ingress(config, mocked_aws.bootstrap_aws(config))
    assert sg_id == sg
    outside = [
        (r["IpProtocol"], r.get("FromPort"), r.get("ToPort"), [x["CidrIp"] for x in r["IpRanges"]])
        for r in rules
        if r.get("IpRanges")
    ]
    assert outside == [("tcp", 22, 22, ["198.51.100.7/32"])]
