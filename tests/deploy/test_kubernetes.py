"""The Kubernetes manifests, proven offline: schemas, kustomize references, and what every workload needs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cryptography.fernet import Fernet

from services.cli import _shutdown_ms, build_parser
from shared.config import SETTING_NAMES, load_settings

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))
TARGETS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "prod": K8S / "overlays" / "prod"}
# Oldest supported and newest Kubernetes the schemas ship with.
VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
CRD_GROUPS = ("keda.sh/",)  # no schema ships for CRDs: checked structurally below
WORKER_SERVICE = {
    "biapp-renderer": "renderer",
    "biapp-renderer-heavy": "renderer",
    "biapp-mailer": "mailer",
    "biapp-scheduler": "scheduler",
}
# The queue KEDA scales each worker Deployment on (each on its own).
SCALED_QUEUE = {
    "biapp-renderer": "biapp.renderer",
    "biapp-renderer-heavy": "biapp.renderer.heavy",
    "biapp-mailer": "biapp.mailer",
}


def load_docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def build(target: Path) -> list[dict]:
    """What `kubectl apply -k target` would send (kubectl's built-in kustomize, fully offline)."""
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True, text=True, check=True)
        return [doc for doc in yaml.safe_load_all(out.stdout) if doc]
    # Without kubectl: the plain resources, unpatched (patches are partial documents).
    docs: list[dict] = []
    for entry in yaml.safe_load((target / "kustomization.yaml").read_text()).get("resources", []):
        path = (target / entry).resolve()
        docs.extend(build(path) if path.is_dir() else load_docs(path))
    return docs


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, build(TARGETS[request.param])


def configmap_settings(docs: list[dict]):
    data = dict(by_kind(docs, "ConfigMap")["biapp-config"]["data"])
    data.update(
        BIAPP_DATABASE_URL="postgresql://u@db/x",
        BIAPP_BROKER_URL="amqp://u:p@mq:5672/v",
        BIAPP_SECRET_KEY="s" * 40,
        BIAPP_FERNET_KEYS=Fernet.generate_key().decode(),
    )
    return load_settings(data)


# --- references ------------------------------------------------------------------


def test_there_is_a_base_and_a_dev_and_a_prod_overlay():
    assert {p.parent for p in KUSTOMIZATIONS} >= set(TARGETS.values())


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_every_kustomization_names_only_files_and_bases_that_exist(kustomization):
    spec = yaml.safe_load(kustomization.read_text())
    named = list(spec.get("resources", [])) + list(spec.get("components", []))
    named += [p["path"] for p in spec.get("patches", []) if "path" in p]
    named += list(spec.get("patchesStrategicMerge", []))
    for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
        named += [f.split("=", 1)[-1] for f in generator.get("files", [])]
    assert named, f"{kustomization} names nothing"
    for entry in named:
        path = (kustomization.parent / entry).resolve()
        assert path.exists(), f"{kustomization.relative_to(K8S)} names {entry}, which does not exist"
        if path.is_dir():
            assert (path / "kustomization.yaml").exists(), f"{entry} is a directory without kustomization.yaml"


def test_every_yaml_file_under_k8s_is_used_or_is_the_secret_template():
    used = {K8S / "secret.example.yaml"}
    for kustomization in KUSTOMIZATIONS:
        spec = yaml.safe_load(kustomization.read_text())
        entries = spec.get("resources", []) + [p["path"] for p in spec.get("patches", []) if "path" in p]
        used |= {(kustomization.parent / e).resolve() for e in entries}
        used.add(kustomization)
    stray = [p for p in K8S.rglob("*.yaml") if p.resolve() not in used]
    assert not stray, f"files no kustomization uses: {stray}"


# --- schemas -----------------------------------------------------------------------


def _validate(doc: dict) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def test_every_rendered_manifest_validates_against_the_kubernetes_schemas(rendered):
    name, docs = rendered
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            _validate(doc)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 14


def test_every_manifest_file_on_its_own_validates_too():
    """Base files and the Secret template are complete documents (overlay patches are partial)."""
    files = [*(K8S / "base").glob("*.yaml"), K8S / "secret.example.yaml", K8S / "overlays" / "prod" / "keda.yaml"]
    for path in files:
        if path.name == "kustomization.yaml":
            continue
        for doc in load_docs(path):
            if not doc["apiVersion"].startswith(CRD_GROUPS):
                _validate(doc)


def test_keda_scaled_objects_are_well_formed_and_count_the_delay_queue():
    """KEDA kinds are CRDs without a bundled schema: check the fields KEDA requires and our intent."""
    docs = build(TARGETS["prod"])
    deployments = by_kind(docs, "Deployment")
    auths = by_kind(docs, "TriggerAuthentication")
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == set(SCALED_QUEUE)
    assert not set(SCALED_QUEUE) & set(by_kind(docs, "HorizontalPodAutoscaler")), (
        "a plain HPA and KEDA's HPA on the same Deployment fight each other"
    )
    for name, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        spec = obj["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        types = [t["type"] for t in spec["triggers"]]
        assert "cpu" in types, "CPU stays as a trigger"
        queues = set()
        for trigger in spec["triggers"]:
            meta = trigger["metadata"]
            assert all(isinstance(v, str) for v in meta.values()), "KEDA metadata values are strings"
            if trigger["type"] == "rabbitmq":
                assert meta["mode"] == "QueueLength" and int(meta["value"]) > 0
                assert trigger["authenticationRef"]["name"] in auths
                queues.add(meta["queueName"])
        queue = SCALED_QUEUE[name]
        assert queues == {queue, f"{queue}.DQ"}, "retries wait in .DQ: scaling must see them"
    for auth in auths.values():
        (ref,) = auth["spec"]["secretTargetRef"]
        assert ref["parameter"] == "host" and ref["key"] == "BIAPP_BROKER_URL"


# --- workloads ---------------------------------------------------------------------


def _pod_specs(docs: list[dict]):
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet", "CronJob"):
            template = (
                doc["spec"]["jobTemplate"]["spec"]["template"] if doc["kind"] == "CronJob" else doc["spec"]["template"]
            )
            yield doc, template["spec"]


def test_every_workload_runs_non_root_read_only_without_privilege_escalation(rendered):
    _name, docs = rendered
    for doc, pod in _pod_specs(docs):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] != 0, where
        assert pod.get("automountServiceAccountToken") is False, where
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc.get("privileged", False) is False, where
            assert "ALL" in sc["capabilities"]["drop"], where
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"


def test_every_workload_sets_resources_probes_and_a_grace_period(rendered):
    _name, docs = rendered
    for doc, pod in _pod_specs(docs):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert pod["terminationGracePeriodSeconds"] > 0, where
        for container in pod["containers"]:
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][part]), f"{where} {part}"
            if doc["kind"] == "Deployment":
                assert "livenessProbe" in container, where
                assert "startupProbe" in container or "readinessProbe" in container, where


def test_every_container_runs_a_biapp_command_in_exec_form(rendered):
    _name, docs = rendered
    parser = build_parser()
    for doc, pod in _pod_specs(docs):
        for container in pod["containers"]:
            assert "command" not in container, "the image's ENTRYPOINT (tini -- biapp) must stay in front"
            args = container["args"]
            assert isinstance(args, list) and all(isinstance(a, str) for a in args)
            parser.parse_args(args)  # SystemExit on an unknown command or option


def test_api_has_two_replicas_http_probes_a_service_and_an_ingress(rendered):
    name, docs = rendered
    api = by_kind(docs, "Deployment")["biapp-api"]
    if name != "dev":
        assert api["spec"]["replicas"] >= 2
    container = api["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["args"][0] == "api"
    service = by_kind(docs, "Service")["biapp-api"]
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    ingress = by_kind(docs, "Ingress")["biapp-api"]
    backends = [p["backend"]["service"]["name"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]]
    assert backends == ["biapp-api"]


def test_worker_liveness_probes_check_the_heartbeat_of_the_worker_processes(rendered):
    _name, docs = rendered
    deployments = by_kind(docs, "Deployment")
    for name, service in WORKER_SERVICE.items():
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        command = container["livenessProbe"]["exec"]["command"]
        assert command[:3] == ["python", "-m", "services.heartbeat"]
        assert container["args"][0] == service or container["args"][:2] == ["worker", service]
        assert any(p["containerPort"] == 9191 for p in container["ports"]), "Dramatiq's Prometheus endpoint"


def test_grace_periods_exceed_the_worker_shutdown_timeout_which_exceeds_the_time_limit(rendered):
    _name, docs = rendered
    settings = configmap_settings(docs)
    limits = {
        "renderer": settings.render_time_limit_s,
        "mailer": settings.mail_time_limit_s,
        "scheduler": 55,  # the tick's own time limit
    }
    deployments = by_kind(docs, "Deployment")
    for name, service in WORKER_SERVICE.items():
        grace = deployments[name]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        shutdown_s = _shutdown_ms(settings, service) / 1000
        assert limits[service] < shutdown_s < grace, f"{name}: limit {limits[service]} < {shutdown_s} < {grace}"
        assert grace - shutdown_s <= 60, f"{name}: the shutdown timeout should sit just below the grace period"
    api = deployments["biapp-api"]["spec"]["template"]["spec"]
    graceful = int(api["containers"][0]["args"][api["containers"][0]["args"].index("--graceful-timeout") + 1])
    assert api["terminationGracePeriodSeconds"] > graceful


def test_migration_job_runs_db_upgrade_once_without_restarting_forever(rendered):
    _name, docs = rendered
    jobs = by_kind(docs, "Job")
    (job,) = jobs.values()
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["db", "upgrade"]
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] <= 5


def test_every_deployment_has_a_disruption_budget_and_an_autoscaler(rendered):
    name, docs = rendered
    pdb_selectors = [p["spec"]["selector"]["matchLabels"] for p in by_kind(docs, "PodDisruptionBudget").values()]
    scaled = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(docs, "HorizontalPodAutoscaler").values()}
    scaled |= {s["spec"]["scaleTargetRef"]["name"] for s in by_kind(docs, "ScaledObject").values()}
    for deployment_name, deployment in by_kind(docs, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(sel.items() <= labels.items() for sel in pdb_selectors), f"{deployment_name} has no PDB"
        if deployment_name != "biapp-scheduler":
            assert deployment_name in scaled, f"{name}: {deployment_name} does not scale"


def test_workloads_read_settings_from_the_configmap_and_the_secret(rendered):
    name, docs = rendered
    configmaps = set(by_kind(docs, "ConfigMap"))
    secrets = set(by_kind(docs, "Secret")) | {"biapp-secrets"}  # prod: managed outside git
    for _doc, pod in _pod_specs(docs):
        refs = pod["containers"][0]["envFrom"]
        assert any(r.get("configMapRef", {}).get("name") in configmaps for r in refs)
        assert any(r.get("secretRef", {}).get("name") in secrets for r in refs)
    configmap_settings(docs)  # every value in the ConfigMap is a valid setting


def test_secret_template_lists_exactly_the_secret_settings():
    (secret,) = load_docs(K8S / "secret.example.yaml")
    keys = set(secret["stringData"])
    assert keys == {"BIAPP_SECRET_KEY", "BIAPP_FERNET_KEYS", "BIAPP_DATABASE_URL", "BIAPP_BROKER_URL"}
    config = by_kind(build(TARGETS["base"]), "ConfigMap")["biapp-config"]["data"]
    assert not keys & set(config), "secrets never go into the ConfigMap"
    assert set(config) <= set(SETTING_NAMES)


def test_heavy_reports_have_a_renderer_deployment_of_their_own(rendered):
    """The main renderers consume biapp.renderer only; a Deployment of its own takes biapp.renderer.heavy."""
    _name, docs = rendered
    deployments = by_kind(docs, "Deployment")
    lanes = {}
    for name in ("biapp-renderer", "biapp-renderer-heavy"):
        args = deployments[name]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[:2] == ["worker", "renderer"]
        lanes[name] = args[args.index("--lane") + 1]
    assert lanes == {"biapp-renderer": "main", "biapp-renderer-heavy": "heavy"}
