"""deploy/k8s: every manifest validates against the Kubernetes schemas (offline, bundled with
kubernetes-validate), and the manifests agree with each other and with the application."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from api.app import create_app
from collector.store.sqlite import SQLiteStore
from netqos.cli import build_parser
from netqos.config import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.31.0"

Doc = dict[str, Any]


def manifests() -> list[Doc]:
    docs = []
    for f in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return docs


def by_kind(kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def workloads() -> list[Doc]:
    return [d for d in manifests() if d["kind"] in ("Deployment", "StatefulSet")]


def test_every_manifest_validates_strictly() -> None:
    docs = manifests()
    assert {d["kind"] for d in docs} >= {
        "Namespace",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "StatefulSet",
    }
    for d in docs:
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)


def test_the_validator_catches_a_broken_manifest() -> None:
    bad = copy.deepcopy(by_kind("Deployment")["netqos-api"])
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["paht"] = "/healthz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_selectors_match_labels_and_references_exist() -> None:
    services, workload_docs = by_kind("Service"), workloads()
    for w in workload_docs:
        assert (
            w["spec"]["selector"]["matchLabels"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        )
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workload_docs]
    for name, svc in services.items():
        sel = svc["spec"]["selector"]
        targets = [
            w for w in workload_docs if sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(targets) == 1, name
        ports = {p["name"] for c in targets[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in svc["spec"]["ports"]} <= ports, name
    for w in workload_docs:
        aff = w["spec"]["template"]["spec"].get("affinity", {}).get("podAffinity")
        for term in (aff or {}).get("requiredDuringSchedulingIgnoredDuringExecution", []):
            assert any(term["labelSelector"]["matchLabels"].items() <= lab.items() for lab in pod_labels)
    sts = by_kind("StatefulSet")["netqos-poller"]
    assert (
        sts["spec"]["serviceName"] in services
        and services[sts["spec"]["serviceName"]]["spec"]["clusterIP"] == "None"
    )
    hpa = by_kind("HorizontalPodAutoscaler")["netqos-ingest"]
    ref = hpa["spec"]["scaleTargetRef"]
    assert ref["kind"] == "Deployment" and ref["name"] in by_kind("Deployment")
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    target = by_kind("Deployment")[ref["name"]]["spec"]["template"]["spec"]["containers"][0]
    assert "cpu" in target["resources"]["requests"]  # utilisation is relative to the request
    configmaps, secrets = by_kind("ConfigMap"), by_kind("Secret")
    claims = by_kind("PersistentVolumeClaim")
    for w in workload_docs:
        spec = w["spec"]["template"]["spec"]
        for c in spec["containers"]:
            for src in c["envFrom"]:
                if "configMapRef" in src:
                    assert src["configMapRef"]["name"] in configmaps
                if "secretRef" in src:
                    assert src["secretRef"]["name"] in secrets
        for v in spec["volumes"]:
            if "persistentVolumeClaim" in v:
                assert v["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in v:
                cm = configmaps[v["configMap"]["name"]]
                assert {i["key"] for i in v["configMap"]["items"]} <= set(cm["data"])
            if "secret" in v:
                sec = secrets[v["secret"]["secretName"]]
                assert {i["key"] for i in v["secret"]["items"]} <= set(sec["stringData"])


def _routes(tmp_path: Path, health_only: bool) -> set[str]:
    store = SQLiteStore(tmp_path / f"routes-{health_only}.db")
    try:
        app = create_app(Settings(), store, health_only=health_only)
        return set(app.openapi()["paths"])
    finally:
        store.close()


def test_probes_hit_real_paths_and_ports(tmp_path: Path) -> None:
    full, health = _routes(tmp_path, False), _routes(tmp_path, True)
    assert "/api/v1/probes" in full and "/api/v1/probes" not in health
    env = by_kind("ConfigMap")["netqos-config"]["data"]
    settings_ports = {"api": Settings().api.port, "worker": int(env["NETQOS_API__HEALTH_PORT"])}
    for w in workloads():
        c = w["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        is_api = w["metadata"]["name"] == "netqos-api"
        paths = full if is_api else health
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            get = c[probe]["httpGet"]
            assert get["path"] in paths, (w["metadata"]["name"], probe)
            assert ports[get["port"]] == settings_ports["api" if is_api else "worker"]
        sc, pod_sc = c["securityContext"], w["spec"]["template"]["spec"]["securityContext"]
        assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert {"requests", "limits"} <= set(c["resources"])


def test_config_map_and_secret_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in by_kind("ConfigMap")["netqos-config"]["data"].items() if k.startswith("NETQOS_")}
    env |= {
        k: v for k, v in by_kind("Secret")["netqos-secrets"]["stringData"].items() if k.startswith("NETQOS_")
    }
    for k in [k for k in os.environ if k.startswith("NETQOS_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert s.api.health_port == 9100 and s.tsdb.token is not None and len(s.api.tokens) == 1


def test_poller_shard_comes_from_the_pod_ordinal(tmp_path: Path) -> None:
    """The container command, run by a real shell with each pod's name, gives --shard i/N where
    N = replicas and i = the ordinal: every shard is polled exactly once."""
    sts = by_kind("StatefulSet")["netqos-poller"]
    replicas = sts["spec"]["replicas"]
    cmd = sts["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd[:2] == ["sh", "-c"]
    # `netqos` on PATH: the real CLI parser, printing what it parsed instead of serving.
    shim = tmp_path / "netqos"
    shim.write_text(
        f"#!{sys.executable}\nimport sys\nfrom netqos.cli import build_parser\n"
        "a = build_parser().parse_args(sys.argv[1:])\nprint(a.command, a.roles, a.shard)\n"
    )
    shim.chmod(0o755)
    shards = []
    for i in range(replicas):
        out = subprocess.run(
            cmd,
            env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "HOSTNAME": f"netqos-poller-{i}"},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()
        assert out[:2] == ["serve", "poller"]
        shards.append(out[2])
    assert shards == [f"{i}/{replicas}" for i in range(replicas)]
    # ... and each is a shard the settings accept.
    for s in shards:
        parsed = build_parser().parse_args(["serve", "--shard", s])
        assert Settings.model_validate({"snmp": {"shard": parsed.shard}}).snmp.shard == s
