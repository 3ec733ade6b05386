"""A real `ray up` / `ray submit` / `ray down` of cluster/local.yaml on this one machine.

The machine plays the head node: an SSH server on 127.0.0.1 lets a dedicated user in with a
key, and a copy of cluster/local.yaml that differs only in IPs, user, key and paths brings the
cluster up through Ray's own launcher. The YAML's setup commands run unchanged (the venv, PATH
and PDARTS_STORAGE in ~/.bashrc, the pip install of the synced project with the pinned Ray).

Two things are prepared the way an on-prem machine would have them, to keep the test to
minutes: the user's venv shares this interpreter's installed packages (a .pth file adds the
site-packages of the environment running the tests) instead of downloading torch and Ray again
(with the `ray` console scripts pip would have added had it installed Ray there), and the
cluster's token is a file made here, where a user would make it. RAY_TMPDIR in the user's
~/.bashrc keeps its Ray session apart from any other Ray on the machine. A worker node cannot
be had on one machine: Ray's launcher reaches every node as the same SSH user, and `ray stop`
in a worker's start commands would stop the head's processes too. So the cluster is the head
alone, and the sweep's trials run on it. If another Ray on the machine holds the dashboard's
default port, the head gets another loopback port for it.

Needs root (a user, an SSH server, packages); everything it creates is removed at the end.
"""

import contextlib
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from helpers.paths import ROOT
from ray import __version__ as ray_version

pytestmark = pytest.mark.slow

# tool -> Debian package that provides it
TOOLS = {
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "rsync": "rsync",
    "setfacl": "acl",
    "getfacl": "acl",
}
SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"


def which(tool):
    return shutil.which(tool) or shutil.which(tool, path=SBIN)


def run(cmd, timeout=120, check=True, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-6000:]}\n--- stderr\n{proc.stderr[-6000:]}"
        )
    return proc


def install_missing_tools(cleanup):
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not which(tool)})
    if not missing:
        return
    if not shutil.which("apt-get"):
        pytest.skip(f"needs {', '.join(missing)}; apt-get is not available to install them")
    # Keep the package scripts from starting a system-wide sshd on port 22.
    policy = Path("/usr/sbin/policy-rc.d")
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        cleanup.callback(policy.unlink)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-q"], env=env, timeout=600)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env, timeout=600)


def machine_ips():
    """The machine's addresses other than loopback."""
    out = run(["hostname", "-I"], check=False).stdout.split()
    return [ip for ip in out if not ip.startswith("127.") and ip != "::1"]


def port_open(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def kill_user_processes(user):
    for _ in range(20):
        pids = run(["pgrep", "-u", user], check=False).stdout.split()
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), 9)
        time.sleep(0.5)


def add_user(cleanup):
    user = "pdx" + uuid.uuid4().hex[:8]
    run(["useradd", "--create-home", "--shell", "/bin/bash", user])

    def remove():
        kill_user_processes(user)
        run(["userdel", "--remove", user], check=False)

    cleanup.callback(remove)
    # sshd refuses a locked account even for key logins; '*' unlocks it with no usable password.
    run(["usermod", "-p", "*", user])
    return user, Path(pwd.getpwnam(user).pw_dir)


def as_user(user, *cmd, **kw):
    return run(["runuser", "-u", user, "--", *cmd], **kw)


def let_user_reach(user, path, cleanup):
    """Grant `user` traverse rights on `path` (a folder) and its ancestors where it cannot enter them
    (e.g. a 0700 /root, or a 0700 temporary virtual environment)."""
    path = Path(path).resolve()
    for d in [*reversed(path.parents), *([path] if path.is_dir() else [])]:
        if os.stat(d).st_mode & 0o001:
            continue
        saved = run(["getfacl", "--absolute-names", "-p", d]).stdout
        run(["setfacl", "-m", f"u:{user}:x", d])
        cleanup.callback(lambda d=d, saved=saved: run(["setfacl", "--restore=-"], input=saved, check=False))


def start_sshd(user, workdir, cleanup):
    if port_open("127.0.0.1", 22):
        pytest.skip("127.0.0.1:22 is taken, and Ray's SSH command runner always connects to port 22")
    host_key = workdir / "ssh_host_ed25519_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key])
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                "Port 22",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {workdir}/sshd.pid",
                "AuthorizedKeysFile .ssh/authorized_keys",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin no",
                f"AllowUsers {user}",
                "UsePAM no",
                "MaxSessions 100",
                "MaxStartups 100",
                "",
            ]
        )
    )
    privsep = Path("/run/sshd")
    if not privsep.exists():
        privsep.mkdir(mode=0o755, parents=True)
        cleanup.callback(shutil.rmtree, privsep, True)
    sshd = which("sshd")
    run([sshd, "-t", "-f", config])
    log = open(workdir / "sshd.log", "w")
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", config], stdout=log, stderr=subprocess.STDOUT)

    def stop():
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

    cleanup.callback(stop)
    deadline = time.time() + 20
    while not port_open("127.0.0.1", 22):
        assert proc.poll() is None, (workdir / "sshd.log").read_text()
        assert time.time() < deadline, "sshd did not listen on 127.0.0.1:22"
        time.sleep(0.2)


def authorise_key(user, home, workdir):
    key = workdir / "id_ed25519"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    ssh_dir = home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    run(["chown", "-R", f"{user}:{user}", ssh_dir])
    return key


def add_console_scripts(user, venv, dist="ray"):
    """The console scripts pip would have put into the venv had it installed `dist` there."""
    from importlib.metadata import distribution

    for ep in distribution(dist).entry_points:
        if ep.group != "console_scripts":
            continue
        module, func = ep.value.split(":")
        script = venv / "bin" / ep.name
        script.write_text(
            f"#!{venv}/bin/python\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n"
        )
        script.chmod(0o755)
        run(["chown", f"{user}:{user}", script])


def share_site_packages(user, venv):
    """Let the user's venv import what this interpreter's environment has installed."""
    import site

    (lib,) = list((venv / "lib").glob("python3*"))
    lines = "".join(f"import site; site.addsitedir({d!r})\n" for d in site.getsitepackages())
    pth = lib / "site-packages" / "zz-shared-site-packages.pth"  # after the venv's own .pth files
    pth.write_text(lines)
    run(["chown", f"{user}:{user}", pth])


def loopback_config(user, key, storage, cluster_name, token_file):
    """cluster/local.yaml with only IPs, user, key and paths changed (and a cluster name of its own)."""
    config = yaml.safe_load((ROOT / "cluster" / "local.yaml").read_text())
    config["cluster_name"] = cluster_name
    config["provider"].update(head_ip="127.0.0.1", worker_ips=[])
    config["min_workers"] = config["max_workers"] = 0
    config["auth"].update(ssh_user=user, ssh_private_key=str(key))
    config["file_mounts"] = {
        remote: str((ROOT / local).resolve())
        for remote, local in config["file_mounts"].items()
        if remote != "~/.ray/auth_token"
    }
    config["file_mounts"]["~/.ray/auth_token"] = str(token_file)  # the token a user makes on their machine
    (old,) = {
        m for c in config["setup_commands"] for m in re.findall(r"echo 'export PDARTS_STORAGE=([^']+)'", c)
    }
    config["setup_commands"] = [c.replace(old, str(storage)) for c in config["setup_commands"]]
    if port_open("127.0.0.1", 8265):
        # Another Ray on this machine holds the default dashboard port: give ours another one
        # (an address change like the others; it still binds to loopback).
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = s.getsockname()[1]
        config["head_start_ray_commands"] = [
            c.replace("--dashboard-host=127.0.0.1", f"--dashboard-host=127.0.0.1 --dashboard-port={free}")
            for c in config["head_start_ray_commands"]
        ]
    return config


def check_sweep_rows(storage, name):
    """The skip ablation at `smoke`: one search, read off at M = 0..4."""
    from pdarts_ray.results import read_trials

    (row,) = read_trials(str(storage), name).to_pylist()
    assert row["experiment"] == name
    assert row["status"] == "finished", row.get("failure")
    assert json.loads(row["genotype"])["normal"]
    saved = json.loads((storage / name / "sweep.json").read_text())
    assert saved["sweep"]["m_values"] == [0, 1, 2, 3, 4]


def user_pids(user):
    return [int(p) for p in run(["pgrep", "-u", user], check=False).stdout.split()]


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def listening_addresses(pids):
    """(host, port) of every listening TCP socket the processes hold."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
                    if m:
                        inodes.add(m.group(1))
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            hexhost, hexport = local.split(":")
            raw = bytes.fromhex(hexhost)
            if width == 4:
                host = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                host = socket.inet_ntop(
                    socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                )
            found.append((host, int(hexport, 16)))
    return found


def forget_local_cluster_files(config_path):
    """What the launcher keeps on the machine it runs on: the local provider's state and lock
    files, the prepared-config cache and the SSH control sockets of this cluster."""
    import getpass
    import hashlib
    import tempfile

    from ray._common.utils import get_default_ray_temp_dir
    from ray.autoscaler._private.command_runner import HASH_MAX_LENGTH
    from ray.autoscaler._private.util import prepare_config

    config = yaml.safe_load(Path(config_path).read_text())
    name = config["cluster_name"]
    for suffix in ("state", "lock"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(get_default_ray_temp_dir(), f"cluster-{name}.{suffix}"))
    digest = hashlib.sha256(json.dumps([prepare_config(config)], sort_keys=True).encode()).hexdigest()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(tempfile.gettempdir(), f"ray-config-{digest}"))
    user_dir = (
        Path("/tmp") / f"ray_ssh_{hashlib.sha256(getpass.getuser().encode()).hexdigest()[:HASH_MAX_LENGTH]}"
    )
    shutil.rmtree(user_dir / hashlib.sha256(name.encode()).hexdigest()[:HASH_MAX_LENGTH], ignore_errors=True)
    with contextlib.suppress(OSError):
        user_dir.rmdir()


def gcs_client_works(token) -> bool:
    """Whether a driver on this machine can join the head's GCS (with this token, or none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env["HOME"] = tempfile.mkdtemp()  # no token file of its own
    if token:
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    code = (
        "import ray; ray.init(address='127.0.0.1:6379', log_to_driver=False); "
        "print(ray.get(ray.remote(lambda: 42).remote()))"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode == 0 and "42" in proc.stdout


def ray_cli():
    return Path(sys.executable).parent / "ray"


def test_ray_up_submit_down_on_one_machine(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: it installs and starts an SSH server and adds a dedicated user")
    timings = {}
    t0 = time.time()
    with contextlib.ExitStack() as cleanup:
        install_missing_tools(cleanup)
        timings["tools"] = time.time() - t0
        user, home = add_user(cleanup)
        start_sshd(user, tmp_path, cleanup)
        key = authorise_key(user, home, tmp_path)
        # The machine's Python environment: a venv of the user's sharing this interpreter's packages.
        let_user_reach(user, sys.prefix, cleanup)
        let_user_reach(user, Path(sys.executable).resolve(), cleanup)
        let_user_reach(user, ROOT / "pdarts_ray", cleanup)  # an editable install's sources
        as_user(user, sys.executable, "-m", "venv", "--without-pip", home / "pdarts-venv")
        share_site_packages(user, home / "pdarts-venv")
        add_console_scripts(user, home / "pdarts-venv")
        token = os.urandom(24).hex()
        (tmp_path / "cluster.token").write_text(token)
        with open(home / ".bashrc", "a") as f:
            f.write(f"export RAY_TMPDIR={home}/raytmp\n")
        storage = home / "results"
        as_user(user, "mkdir", "-p", storage, home / "raytmp")
        timings["machine"] = time.time() - t0 - timings["tools"]

        cluster_name = f"pdarts-e2e-{user}"
        config_path = tmp_path / "loopback.yaml"
        config_path.write_text(
            yaml.safe_dump(loopback_config(user, key, storage, cluster_name, tmp_path / "cluster.token"))
        )
        ray = ray_cli()

        def down():
            run([ray, "down", "-y", config_path], cwd=ROOT, timeout=300, check=False)
            forget_local_cluster_files(config_path)

        cleanup.callback(down)
        t = time.time()
        run([ray, "up", "-y", "--no-config-cache", config_path], cwd=ROOT, timeout=900)
        timings["ray up"] = time.time() - t

        status = as_user(user, "bash", "-lic", "ray status", check=False)
        assert "Active" in status.stdout, status.stdout + status.stderr
        # The dashboard (and the Jobs API it serves) listens on the head's loopback only.
        dashboard = [p for p in user_pids(user) if "dashboard/dashboard.py" in cmdline(p)]
        assert dashboard, "no dashboard process on the head"
        args = dict(re.findall(r"--(host|port)=(\S+)", cmdline(dashboard[0])))
        assert args["host"] == "127.0.0.1", cmdline(dashboard[0])
        port = int(args["port"])
        deadline = time.time() + 30
        while not port_open("127.0.0.1", port) and time.time() < deadline:
            time.sleep(0.5)
        http = [(host, p) for host, p in listening_addresses(dashboard) if p == port]
        assert http == [("127.0.0.1", port)], http
        # Token authentication: refused without the cluster's token, answered with it.
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=10)
        assert refused.value.code == 401
        signed = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/version", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(signed, timeout=10) as answer:
            assert json.loads(answer.read())["ray_version"] == ray_version
        assert gcs_client_works(token) and not gcs_client_works(None)
        for ip in machine_ips():
            assert not port_open(ip, port), ip

        # What the nodes' ~/.bashrc exports reaches the driver and Ray's worker processes.
        probe = tmp_path / "storage_probe.py"
        probe.write_text(
            "import json, os, ray\n"
            "ray.init()\n"
            "task = ray.get(ray.remote(lambda: os.environ.get('PDARTS_STORAGE')).remote())\n"
            "out = {'driver': os.environ.get('PDARTS_STORAGE'), 'task': task}\n"
            "open(os.path.join(os.environ['PDARTS_STORAGE'], 'probe.json'), 'w').write(json.dumps(out))\n"
        )
        run([ray, "submit", "--no-config-cache", config_path, probe], cwd=ROOT, timeout=300)
        probe_out = json.loads((storage / "probe.json").read_text())
        assert probe_out == {"driver": str(storage), "task": str(storage)}

        # The sweep, with no --storage: its results go where PDARTS_STORAGE says.
        name = "e2e-skip-grid"
        t = time.time()
        run(
            [
                ray,
                "submit",
                "--no-config-cache",
                config_path,
                ROOT / "ablations" / "skip_grid.py",
                "--",
                "--preset",
                "smoke",
                "--name",
                name,
            ],
            cwd=ROOT,
            timeout=900,
        )
        timings["ray submit skip_grid"] = time.time() - t
        check_sweep_rows(storage, name)
        jobs = json.loads(as_user(user, "bash", "-lic", "ray list jobs --format json --limit 100").stdout)
        drivers = [j for j in jobs if "skip_grid.py" in (j.get("entrypoint") or "")]
        assert [j["status"] for j in drivers] == ["SUCCEEDED"], jobs

        t = time.time()
        run([ray, "down", "-y", config_path], cwd=ROOT, timeout=300)
        timings["ray down"] = time.time() - t
        assert not [p for p in user_pids(user) if re.search(r"raylet|gcs_server|dashboard", cmdline(p))]
    timings["total"] = time.time() - t0
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
