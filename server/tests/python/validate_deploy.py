#!/usr/bin/env python3
"""Checks SoulBox's deployment files offline, without a cluster or a Docker engine.

- Every manifest in deploy/kubernetes is validated with kubernetes-validate in strict mode
  (an unknown field is an error) against the Kubernetes version named below, then the
  manifests are checked against each other: the StatefulSet's serviceName is the headless
  Service, the Services' and the PodDisruptionBudget's selectors select its pods, the
  HorizontalPodAutoscaler targets it, the ConfigMaps and Secrets it uses exist (with the keys
  it mounts), the probes ask /ready and /health, the pod runs as uid 10001 on a read-only root,
  and the soulbox.toml in the ConfigMap agrees with the pod (cluster on, port, grace period).
- deploy/compose/compose.yaml is loaded and checked the same way: the services it depends on
  exist, each node has its own name, advertise URL and volume, the HAProxy configuration it
  mounts exists and gets every variable it reads; with --compose-schema FILE, the file is also
  validated against the Compose specification's JSON schema (compose-spec.json).

Prints each problem and exits 1, or prints "all checks passed".

    python3 -m venv target/deploy-venv
    target/deploy-venv/bin/pip install -r server/tests/python/deploy-requirements.txt
    target/deploy-venv/bin/python server/tests/python/validate_deploy.py [--deploy DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv

# The Kubernetes version the manifests are validated against (kubernetes-validate bundles
# its schemas; 1.33 is the oldest minor version still supported upstream when this was written).
KUBERNETES_VERSION = "1.33"

ROOT = Path(__file__).resolve().parents[3]
STATEFULSET = "soulbox"
UID = 10001
DATA_DIR = "/var/lib/soulbox"
PORT = 8080
LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance")


class Problems:
    """Every problem found, each with the file it is in."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, where: str | Path, message: str) -> None:
        self.found.append(f"{where}: {message}")

    def check(self, ok: Any, where: str | Path, message: str) -> bool:
        if not ok:
            self.add(where, message)
        return bool(ok)


# --- Kubernetes ---------------------------------------------------------------------------


def load_manifests(directory: Path, problems: Problems) -> list[tuple[Path, dict]]:
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))
    problems.check(files, directory, "no manifests (*.yaml)")
    documents = []
    for path in files:
        try:
            loaded = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        except yaml.YAMLError as error:
            problems.add(path, f"not YAML: {error}")
            continue
        problems.check(loaded, path, "no document in the file")
        for document in loaded:
            if not isinstance(document, dict) or not all(k in document for k in ("apiVersion", "kind", "metadata")):
                problems.add(path, "a document without apiVersion, kind and metadata")
                continue
            documents.append((path, document))
    return documents


def validate_schemas(documents: list[tuple[Path, dict]], problems: Problems) -> None:
    bundled = {kv.major_minor(v) for v in kv.all_versions()}
    if KUBERNETES_VERSION not in bundled:
        problems.add("kubernetes-validate", f"has no schemas for Kubernetes {KUBERNETES_VERSION}")
        return
    for path, document in documents:
        what = f"{document['kind']}/{document['metadata'].get('name')}"
        try:
            validated = kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            at = ".".join(str(p) for p in error.path) or "(top level)"
            problems.add(path, f"{what} is not a valid Kubernetes {error.version} object at {at}: {error.message}")
        except kv.SchemaNotFoundError as error:
            problems.add(path, f"{what}: {error.message}")
        except (kv.VersionNotSupportedError, kv.InvalidSchemaError) as error:
            problems.add(path, f"{what}: {getattr(error, 'message', error)}")
        else:
            problems.check(validated == KUBERNETES_VERSION, path, f"{what} was validated against {validated}")


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a non-empty label selector (a map or matchLabels) selects these labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def probe_check(problems: Problems, where: Path, container: dict, probe: str, path: str | None, ports: set) -> None:
    spec = container.get(probe)
    if not problems.check(spec, where, f"container {container['name']}: no {probe}"):
        return
    get = spec.get("httpGet")
    if not problems.check(get, where, f"container {container['name']}: {probe} is not an HTTP GET"):
        return
    if path is not None:
        problems.check(get.get("path") == path, where, f"container {container['name']}: {probe} asks {get.get('path')}, not {path}")
    problems.check(get.get("port") in ports, where, f"container {container['name']}: {probe} port {get.get('port')} is not a container port")


def check_kubernetes(directory: Path, problems: Problems) -> None:
    documents = load_manifests(directory, problems)
    validate_schemas(documents, problems)
    by_kind: dict[str, list[tuple[Path, dict]]] = {}
    for path, document in documents:
        by_kind.setdefault(document["kind"], []).append((path, document))
    names = {(d["kind"], d["metadata"].get("name")) for _, d in documents}
    for kind in ("ConfigMap", "Secret", "StatefulSet", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        problems.check(kind in by_kind, directory, f"no {kind}")

    # Labels: the same app.kubernetes.io name and instance on every object.
    seen = {key: set() for key in LABELS}
    for path, document in documents:
        labels = document["metadata"].get("labels", {})
        for key in LABELS:
            if problems.check(key in labels, path, f"{document['kind']}/{document['metadata'].get('name')} has no {key} label"):
                seen[key].add(labels[key])
    for key, values in seen.items():
        problems.check(len(values) <= 1, directory, f"the {key} labels disagree: {sorted(values)}")

    statefulsets = [(p, d) for p, d in by_kind.get("StatefulSet", []) if d["metadata"].get("name") == STATEFULSET]
    if not problems.check(statefulsets, directory, f"no StatefulSet named {STATEFULSET}"):
        return
    where, sts = statefulsets[0]
    spec = sts["spec"]
    pod = spec["template"]
    pod_labels = pod.get("metadata", {}).get("labels", {})
    pod_spec = pod["spec"]
    problems.check(selects(spec["selector"].get("matchLabels"), pod_labels), where, "the StatefulSet's selector does not select its own pods")
    for key in LABELS:
        problems.check(key in pod_labels, where, f"the pods have no {key} label")
    problems.check(spec.get("replicas") == 3, where, "the StatefulSet does not start 3 replicas")
    problems.check(spec.get("podManagementPolicy") == "Parallel", where, "podManagementPolicy is not Parallel")

    containers = pod_spec.get("containers", [])
    all_containers = containers + pod_spec.get("initContainers", [])
    main = next((c for c in containers if c["name"] == "soulbox"), None)
    if not problems.check(main, where, "no container named soulbox"):
        return
    ports = {p["containerPort"] for p in main.get("ports", [])} | {p.get("name") for p in main.get("ports", []) if p.get("name")}
    problems.check(PORT in ports, where, f"the soulbox container does not expose {PORT}")
    for container in all_containers:
        problems.check(container.get("image") == "soulbox/server:dev", where, f"container {container['name']}: image {container.get('image')}, not soulbox/server:dev")
        problems.check(container.get("imagePullPolicy") == "IfNotPresent", where, f"container {container['name']}: imagePullPolicy is not IfNotPresent")

    # Services: the headless one governs the StatefulSet; every one selects its pods.
    services = {d["metadata"]["name"]: (p, d) for p, d in by_kind.get("Service", [])}
    governing = services.get(spec.get("serviceName"))
    if problems.check(governing, where, f"serviceName {spec.get('serviceName')} is not a Service here"):
        path, service = governing
        problems.check(service["spec"].get("clusterIP") == "None", path, f"Service {spec['serviceName']} is not headless (clusterIP: None)")
        problems.check(service["spec"].get("publishNotReadyAddresses") is False, path, f"Service {spec['serviceName']}: publishNotReadyAddresses is not false")
    api = [name for name, (_, s) in services.items() if s["spec"].get("clusterIP") != "None"]
    problems.check(api, directory, "no (non-headless) Service for the API")
    for name, (path, service) in services.items():
        problems.check(selects(service["spec"].get("selector"), pod_labels), path, f"Service {name}'s selector does not select the StatefulSet's pods")
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort", port.get("port"))
            problems.check(target in ports, path, f"Service {name}: targetPort {target} is not a port of the soulbox container")
            problems.check(port.get("port") == PORT, path, f"Service {name}: port {port.get('port')}, not {PORT}")

    for path, pdb in by_kind.get("PodDisruptionBudget", []):
        problems.check(selects(pdb["spec"].get("selector", {}).get("matchLabels"), pod_labels), path, f"PodDisruptionBudget {pdb['metadata']['name']} does not select the StatefulSet's pods")
        problems.check(pdb["spec"].get("maxUnavailable") == 1, path, "the PodDisruptionBudget's maxUnavailable is not 1")
    for path, hpa in by_kind.get("HorizontalPodAutoscaler", []):
        target = hpa["spec"].get("scaleTargetRef", {})
        problems.check(
            (target.get("apiVersion"), target.get("kind"), target.get("name")) == ("apps/v1", "StatefulSet", STATEFULSET),
            path, f"the HorizontalPodAutoscaler targets {target}, not apps/v1 StatefulSet {STATEFULSET}",
        )
        problems.check((hpa["spec"].get("minReplicas"), hpa["spec"].get("maxReplicas")) == (3, 10), path, "the HorizontalPodAutoscaler's bounds are not 3 to 10")
        cpu = [m for m in hpa["spec"].get("metrics", []) if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"]
        problems.check(cpu and cpu[0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}, path, "the HorizontalPodAutoscaler does not target 70% CPU")
        problems.check("cpu" in main.get("resources", {}).get("requests", {}), where, "the HorizontalPodAutoscaler needs a CPU request on the container")

    # ConfigMaps and Secrets the pod uses exist, with the keys it mounts.
    config_maps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"]: d for _, d in by_kind.get("Secret", [])}

    def secret_keys(name: str) -> set:
        secret = secrets[name]
        return set(secret.get("stringData", {})) | set(secret.get("data", {}))

    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    for volume in volumes.values():
        if "configMap" in volume:
            name = volume["configMap"]["name"]
            if problems.check(name in config_maps, where, f"volume {volume['name']} uses ConfigMap {name}, which is not here"):
                for item in volume["configMap"].get("items", []):
                    problems.check(item["key"] in config_maps[name].get("data", {}), where, f"volume {volume['name']}: ConfigMap {name} has no key {item['key']}")
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            problems.check(name in secrets, where, f"volume {volume['name']} uses Secret {name}, which is not here")
    for container in all_containers:
        for source in container.get("envFrom", []):
            for ref, known in (("secretRef", secrets), ("configMapRef", config_maps)):
                if ref in source:
                    problems.check(source[ref]["name"] in known, where, f"container {container['name']}: envFrom {ref} {source[ref]['name']} is not here")
        for variable in container.get("env", []):
            value_from = variable.get("valueFrom", {})
            if "secretKeyRef" in value_from:
                ref = value_from["secretKeyRef"]
                problems.check(ref["name"] in secrets and ref["key"] in secret_keys(ref["name"]), where, f"env {variable['name']}: Secret {ref['name']} key {ref['key']} is not here")
            if "configMapKeyRef" in value_from:
                ref = value_from["configMapKeyRef"]
                problems.check(ref["name"] in config_maps and ref["key"] in config_maps[ref["name"]].get("data", {}), where, f"env {variable['name']}: ConfigMap {ref['name']} key {ref['key']} is not here")
        for mount in container.get("volumeMounts", []):
            problems.check(mount["name"] in volumes or mount["name"] in claims, where, f"container {container['name']} mounts {mount['name']}, which is neither a volume nor a volumeClaimTemplate")

    mounts = {m["mountPath"]: m["name"] for m in main.get("volumeMounts", [])}
    problems.check(mounts.get(DATA_DIR) in claims, where, f"{DATA_DIR} is not a volumeClaimTemplate's mount")
    problems.check("emptyDir" in volumes.get(mounts.get("/tmp"), {}), where, "/tmp is not an emptyDir")

    # The configuration file: SOULBOX_CONFIG names a file of a mounted ConfigMap.
    env = env_of(main)
    toml_text = None
    config_path = env.get("SOULBOX_CONFIG", {}).get("value")
    if problems.check(config_path, where, "SOULBOX_CONFIG is not set"):
        directory_of, file_name = config_path.rsplit("/", 1)
        volume = volumes.get(mounts.get(directory_of), {})
        name = volume.get("configMap", {}).get("name")
        if problems.check(name in config_maps, where, f"SOULBOX_CONFIG={config_path} is not in a mounted ConfigMap"):
            items = volume["configMap"].get("items") or [{"key": k, "path": k} for k in config_maps[name].get("data", {})]
            key = next((i["key"] for i in items if i["path"] == file_name), None)
            if problems.check(key, where, f"SOULBOX_CONFIG={config_path}: ConfigMap {name} gives no {file_name}"):
                toml_text = config_maps[name]["data"][key]

    # Cluster identity from the downward API; the advertised URL through the headless Service.
    node_id = env.get("SOULBOX__CLUSTER__NODE_ID", {})
    problems.check(node_id.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name", where, "SOULBOX__CLUSTER__NODE_ID is not the pod's name (downward API)")
    advertise = env.get("SOULBOX__CLUSTER__ADVERTISE_URL", {}).get("value", "")
    expected = f"http://$(POD_NAME).{spec.get('serviceName')}.$(POD_NAMESPACE).svc.cluster.local:{PORT}"
    problems.check(advertise == expected, where, f"SOULBOX__CLUSTER__ADVERTISE_URL is {advertise!r}, not {expected!r}")
    order = [e["name"] for e in main.get("env", [])]
    for variable in re.findall(r"\$\((\w+)\)", advertise):
        problems.check(variable in order and order.index(variable) < order.index("SOULBOX__CLUSTER__ADVERTISE_URL"), where, f"$({variable}) is used before it is defined (Kubernetes only expands earlier variables)")
    problems.check(any("secretRef" in s for s in main.get("envFrom", [])), where, "the soulbox container takes no Secret through envFrom")
    for name, secret in secrets.items():
        url = secret.get("stringData", {}).get("SOULBOX__STORAGE__DATABASE_URL")
        problems.check(url and url.startswith("postgres://"), directory, f"Secret {name}: SOULBOX__STORAGE__DATABASE_URL is not a postgres:// URL (a cluster's nodes share PostgreSQL)")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            problems.check(key in secret_keys(name), directory, f"Secret {name} has no {key}")

    # Probes, resources, security.
    probe_check(problems, where, main, "readinessProbe", "/ready", ports)
    probe_check(problems, where, main, "livenessProbe", "/health", ports)
    probe_check(problems, where, main, "startupProbe", None, ports)
    startup = main.get("startupProbe", {})
    problems.check(startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= 300, where, "the startupProbe allows less than 5 minutes to start")
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory", "ephemeral-storage"):
            problems.check(resource in main.get("resources", {}).get(kind, {}), where, f"no {resource} in the container's resource {kind}")
    pod_security = pod_spec.get("securityContext", {})
    for container in all_containers:
        security = {**pod_security, **container.get("securityContext", {})}
        label = f"container {container['name']}"
        problems.check(security.get("runAsNonRoot") is True, where, f"{label}: runAsNonRoot is not true")
        problems.check(security.get("runAsUser") == UID, where, f"{label}: runAsUser is not {UID}")
        problems.check(security.get("readOnlyRootFilesystem") is True, where, f"{label}: readOnlyRootFilesystem is not true")
        problems.check(security.get("allowPrivilegeEscalation") is False, where, f"{label}: allowPrivilegeEscalation is not false")
        problems.check("ALL" in security.get("capabilities", {}).get("drop", []), where, f"{label}: capabilities are not all dropped")
        problems.check(security.get("seccompProfile", {}).get("type") == "RuntimeDefault", where, f"{label}: seccompProfile is not RuntimeDefault")

    # soulbox.toml agrees with the pod.
    if toml_text is not None:
        try:
            config = tomllib.loads(toml_text)
        except tomllib.TOMLDecodeError as error:
            problems.add(where, f"the ConfigMap's soulbox.toml is not TOML: {error}")
            return
        problems.check(config.get("cluster", {}).get("enabled") is True, where, "soulbox.toml: [cluster] enabled is not true")
        addr = config.get("server", {}).get("addr", "")
        problems.check(addr == f"0.0.0.0:{PORT}", where, f"soulbox.toml: server.addr is {addr!r}, not 0.0.0.0:{PORT}")
        problems.check(not config.get("auth", {}).get("dev", False), where, "soulbox.toml: auth.dev is on (a cluster needs API keys)")
        shutdown_s = config.get("server", {}).get("shutdown_timeout_ms", 30000) / 1000
        pre_stop = main.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_stop_s = int(pre_stop[1]) if len(pre_stop) == 2 and pre_stop[0] == "sleep" else 0
        grace = pod_spec.get("terminationGracePeriodSeconds", 30)
        # SIGTERM: the drain, then pausing every sandbox, each bounded by the shutdown timeout.
        problems.check(grace > pre_stop_s + 2 * shutdown_s, where, f"terminationGracePeriodSeconds ({grace}) does not cover preStop ({pre_stop_s} s) plus twice server.shutdown_timeout_ms ({shutdown_s:g} s)")


# --- Compose ------------------------------------------------------------------------------


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command_of(service: dict) -> list[str]:
    command = service.get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def duration_s(value: str | None) -> float:
    """A Compose duration (`90s`, `1m30s`) in seconds; Docker's default stop grace is 10 s."""
    if value is None:
        return 10
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(value))
    return sum(float(n) * units[u] for n, u in parts)


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def check_compose(path: Path, problems: Problems, schema_path: Path | None) -> None:
    if not problems.check(path.is_file(), path, "missing"):
        return
    try:
        compose = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        problems.add(path, f"not YAML: {error}")
        return
    if schema_path is not None:
        import jsonschema

        schema = json.loads(schema_path.read_text())
        for error in sorted(jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path)):
            at = ".".join(str(p) for p in error.path) or "(top level)"
            problems.add(path, f"not valid Compose ({schema_path.name}) at {at}: {error.message}")
    services = compose.get("services", {})
    declared_volumes = set((compose.get("volumes") or {}).keys())

    for name, service in services.items():
        for dependency, condition in depends_on(service).items():
            if problems.check(dependency in services, path, f"{name} depends on {dependency}, which is not a service"):
                if condition == "service_healthy":
                    problems.check("healthcheck" in services[dependency], path, f"{name} waits for {dependency} to be healthy, which has no healthcheck")
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith((".", "/", "~")):
                problems.check((path.parent / source).exists(), path, f"{name} mounts {source}, which does not exist (from {path.parent})")
            elif source:
                problems.check(source in declared_volumes, path, f"{name} uses volume {source}, which is not declared under volumes")

    postgres = services.get("postgres")
    if problems.check(postgres, path, "no postgres service"):
        problems.check(postgres.get("image") == "postgres:15", path, f"postgres: image {postgres.get('image')}, not postgres:15")
        problems.check("healthcheck" in postgres, path, "postgres has no healthcheck")

    nodes = sorted(n for n in services if re.fullmatch(r"soulbox-\d+", n))
    problems.check(len(nodes) == 3, path, f"{len(nodes)} soulbox-N services, not 3")
    node_volumes: dict[str, str] = {}
    for name in nodes:
        service = services[name]
        env = environment_of(service)
        problems.check(service.get("image") == "soulbox/server:dev", path, f"{name}: image {service.get('image')}, not soulbox/server:dev")
        problems.check(command_of(service) == ["serve", "--addr", f"0.0.0.0:{PORT}"], path, f"{name}: command is {command_of(service)}, not serve --addr 0.0.0.0:{PORT}")
        problems.check(depends_on(service).get("postgres") == "service_healthy", path, f"{name} does not wait for postgres to be healthy")
        problems.check(env.get("SOULBOX__CLUSTER__ENABLED") == "true", path, f"{name}: SOULBOX__CLUSTER__ENABLED is not true")
        problems.check(env.get("SOULBOX__CLUSTER__NODE_ID") == name, path, f"{name}: its node id is {env.get('SOULBOX__CLUSTER__NODE_ID')!r}, not {name!r}")
        advertise = f"http://{name}:{PORT}"
        problems.check(env.get("SOULBOX__CLUSTER__ADVERTISE_URL") == advertise, path, f"{name}: its advertise URL is {env.get('SOULBOX__CLUSTER__ADVERTISE_URL')!r}, not {advertise!r}")
        url = env.get("SOULBOX__STORAGE__DATABASE_URL", "")
        host = re.match(r"postgres://(?:[^@/]*@)?([^:/]+)", url)
        problems.check(host and host.group(1) in services, path, f"{name}: the database URL {url!r} does not name a postgres:// service here")
        data = [v.split(":", 1)[0] for v in service.get("volumes", []) if isinstance(v, str) and v.split(":")[1:2] == [DATA_DIR]]
        if problems.check(data, path, f"{name} has no named volume at {DATA_DIR}"):
            problems.check(data[0] not in node_volumes, path, f"{name} shares volume {data[0]} with {node_volumes.get(data[0])}")
            node_volumes[data[0]] = name
        shutdown_s = float(env.get("SOULBOX__SERVER__SHUTDOWN_TIMEOUT_MS", "30000")) / 1000
        problems.check(duration_s(service.get("stop_grace_period")) > 2 * shutdown_s, path, f"{name}: stop_grace_period does not cover twice the shutdown timeout ({shutdown_s:g} s)")

    haproxy = services.get("haproxy")
    if problems.check(haproxy, path, "no haproxy service"):
        problems.check(haproxy.get("image") == "haproxy:2.6", path, f"haproxy: image {haproxy.get('image')}, not haproxy:2.6")
        env = environment_of(haproxy)
        mounted = [v.split(":") for v in haproxy.get("volumes", []) if isinstance(v, str) and v.split(":")[1:2] == ["/usr/local/etc/haproxy/haproxy.cfg"]]
        config = (path.parent / mounted[0][0]).resolve() if mounted else None
        if problems.check(config and config.is_file(), path, "haproxy does not mount an existing haproxy.cfg at /usr/local/etc/haproxy/haproxy.cfg"):
            problems.check(config == (path.parent.parent / "haproxy" / "haproxy.cfg").resolve(), path, f"haproxy mounts {config}, not deploy/haproxy/haproxy.cfg")
            wanted = set(re.findall(r"\$\{(\w+)\}", config.read_text()))
            for variable in sorted(wanted):
                problems.check(env.get(variable), path, f"haproxy: {config.name} reads ${{{variable}}}, which its environment does not set")
        for variable, value in env.items():
            if variable.startswith("SOULBOX_NODE_"):
                target = value.rsplit(":", 1)
                problems.check(target[0] in nodes and target[1:] == [str(PORT)], path, f"haproxy: {variable}={value} is not a soulbox node's {PORT}")
        problems.check(sorted(v for k, v in env.items() if k.startswith("SOULBOX_NODE_")) == sorted(f"{n}:{PORT}" for n in nodes), path, "haproxy does not list every soulbox node")
        problems.check(any(str(p).split(":")[-1] == str(PORT) for p in haproxy.get("ports", [])), path, f"haproxy does not publish port {PORT}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deploy", type=Path, default=ROOT / "deploy", help="the deploy directory (default: the checkout's)")
    parser.add_argument("--compose-schema", type=Path, help="compose-spec.json, to validate compose.yaml against it too")
    args = parser.parse_args()
    problems = Problems()
    check_kubernetes(args.deploy / "kubernetes", problems)
    check_compose(args.deploy / "compose" / "compose.yaml", problems, args.compose_schema)
    if problems.found:
        for problem in problems.found:
            print(f"FAIL {problem}")
        print(f"{len(problems.found)} problem(s) in {args.deploy}")
        return 1
    print(f"Kubernetes manifests valid for Kubernetes {KUBERNETES_VERSION} (kubernetes-validate {kubernetes_validate.__version__}, strict), cross-references and compose.yaml checked")
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
