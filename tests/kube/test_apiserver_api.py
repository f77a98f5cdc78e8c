"""The test Kubernetes API server driven by the python ``kubernetes`` client (what the operator
uses) and by plain HTTP where the wire format itself is the point (watch streams, Tables, warning
headers, OpenAPI). Each test asserts what a real kube-apiserver answers."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from .apiserver import ApiServer
from .objects import GROUP, PLURAL, VERSION, Workflows, status, workflow


def test_custom_objects_crud_and_label_selectors(crds: None, kube_api: client.ApiClient) -> None:
    api = Workflows(kube_api)
    api.create(workflow("a", {"tier": "gold"}))
    api.create(workflow("b", {"tier": "silver"}))
    api.create(workflow("c"))

    def names(selector: str) -> list[str]:
        listed = api.list(label_selector=selector)
        return [i["metadata"]["name"] for i in listed["items"]]

    assert names("tier=gold") == ["a"]
    assert names("tier!=gold") == ["b", "c"]
    assert names("tier in (gold,silver)") == ["a", "b"]
    assert names("tier notin (gold)") == ["b", "c"]
    assert names("tier") == ["a", "b"]
    assert names("!tier") == ["c"]
    everywhere = api.list_all(field_selector="metadata.name=b")
    assert [i["metadata"]["name"] for i in everywhere["items"]] == ["b"]
    with pytest.raises(ApiException) as exists:
        api.create(workflow("a"))
    assert exists.value.status == 409 and status(exists.value)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as missing:
        api.get("zzz")
    assert status(missing.value)["details"] == {"name": "zzz", "group": GROUP, "kind": "workflows"}
    with pytest.raises(ApiException) as no_ns:
        Workflows(kube_api, "elsewhere").create(workflow("d"))
    assert no_ns.value.status == 404 and status(no_ns.value)["message"] == 'namespaces "elsewhere" not found'
    generated = api.create(workflow("") | {"metadata": {"generateName": "run-"}})
    assert re.fullmatch(r"run-[a-z0-9]{5}", generated["metadata"]["name"])
    dry = api.create(workflow("dry"), dry_run="All")
    assert dry["metadata"]["name"] == "dry"
    assert "dry" not in names("")
    deleted = api.delete("c")
    assert deleted["metadata"]["name"] == "c" and "c" not in names("")


def test_stale_replace_conflicts_and_status_is_separate(crds: None, kube_api: client.ApiClient) -> None:
    api = Workflows(kube_api)
    created = api.create(workflow("x"))
    patched = api.patch_status("x", {"status": {"phase": "Running", "observedGeneration": 1}})
    assert patched["metadata"]["generation"] == 1
    assert int(patched["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    assert patched["status"] == {"phase": "Running", "observedGeneration": 1, "coreHours": 0, "billedCoreSeconds": 0}
    stale = created | {"spec": created["spec"] | {"suspend": True}}
    with pytest.raises(ApiException) as conflict:
        api.replace("x", stale)
    body = status(conflict.value)
    assert conflict.value.status == 409 and body["reason"] == "Conflict"
    assert body["message"] == (
        'Operation cannot be fulfilled on workflows.hpc.reconciler.dev "x": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    fresh = patched | {"spec": patched["spec"] | {"suspend": True}, "status": {"phase": "Failed"}}
    replaced = api.replace("x", fresh)
    assert replaced["spec"]["suspend"] is True and replaced["metadata"]["generation"] == 2
    assert replaced["status"]["phase"] == "Running"  # the main resource cannot write status
    # An identical status write is not a write: same resourceVersion.
    again = api.patch_status("x", {"status": {"phase": "Running"}})
    assert again["metadata"]["resourceVersion"] == replaced["metadata"]["resourceVersion"]
    with pytest.raises(ApiException) as invalid:
        api.patch_status("x", {"status": {"phase": "Exploded"}})
    causes = status(invalid.value)["details"]["causes"]
    assert causes == [
        {
            "reason": "FieldValueNotSupported",
            "field": "status.phase",
            "message": 'Unsupported value: "Exploded": supported values: "Pending", "Running", "Succeeded", '
            '"Failed", "Suspended", "Invalid"',
        }
    ]


def test_injected_conflicts_hit_status_writes_only(
    crds: None, kube_api: client.ApiClient, apiserver: ApiServer
) -> None:
    api = Workflows(kube_api)
    api.create(workflow("storm"))
    apiserver.inject_conflicts("workflows", 2)
    api.patch("storm", {"spec": {"suspend": True}})
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            api.patch_status("storm", {"status": {"phase": "Running"}})
        assert err.value.status == 409
    done = api.patch_status("storm", {"status": {"phase": "Running"}})
    assert done["status"]["phase"] == "Running"
    assert [r.verb for r in apiserver.requests_for("workflows/status")] == ["patch"] * 3


def test_watch_resumes_from_a_resource_version_and_expires(
    crds: None, kube_api: client.ApiClient, apiserver: ApiServer
) -> None:
    api = Workflows(kube_api)
    api.create(workflow("w1", {"app": "x"}))
    listed = api.list()
    since = listed["metadata"]["resourceVersion"]
    api.create(workflow("w2", {"app": "x"}))
    api.patch_status("w1", {"status": {"phase": "Running"}})
    api.delete("w2")
    seen = []
    stream = watch.Watch()
    for event in stream.stream(
        api.api.list_namespaced_custom_object,
        GROUP,
        VERSION,
        "default",
        PLURAL,
        resource_version=since,
        label_selector="app=x",
        timeout_seconds=5,
    ):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if len(seen) == 3:
            stream.stop()
    assert seen == [("ADDED", "w2"), ("MODIFIED", "w1"), ("DELETED", "w2")]
    apiserver.expire_history()
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(
            api.api.list_namespaced_custom_object,
            GROUP,
            VERSION,
            "default",
            PLURAL,
            resource_version=since,
            timeout_seconds=5,
        ):
            pass
    assert gone.value.status == 410 and "too old resource version" in str(gone.value.reason)


def test_watch_stream_bookmarks_initial_events_and_timeout(
    crds: None, kube_api: client.ApiClient, apiserver: ApiServer
) -> None:
    api = Workflows(kube_api)
    api.create(workflow("one"))
    url = (
        f"{apiserver.url}/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
        "?watch=true&allowWatchBookmarks=true&timeoutSeconds=2"
    )
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Transfer-Encoding"] == "chunked"
        lines = [json.loads(line) for line in response.read().splitlines()]
    assert 1.5 < time.monotonic() - started < 5  # the server ended the stream itself
    assert lines[0]["type"] == "ADDED" and lines[0]["object"]["metadata"]["name"] == "one"
    bookmarks = [e for e in lines if e["type"] == "BOOKMARK"]
    assert bookmarks and bookmarks[-1]["object"] == {
        "kind": "Workflow",
        "apiVersion": f"{GROUP}/{VERSION}",
        "metadata": {"resourceVersion": lines[0]["object"]["metadata"]["resourceVersion"]},
    }
    with urllib.request.urlopen(url + "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan", timeout=10) as r:
        events = [json.loads(line) for line in r.read().splitlines()]
    assert events[1]["type"] == "BOOKMARK"
    assert events[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_tables_for_custom_resources(crds: None, kube_api: client.ApiClient, apiserver: ApiServer) -> None:
    api = Workflows(kube_api)
    api.create(workflow("t"))
    api.patch_status(
        "t",
        {
            "status": {
                "phase": "Failed",
                "coreHours": 2,
                "conditions": [
                    {
                        "type": "Stalled",
                        "status": "True",
                        "reason": "X",
                        "message": "no",
                        "lastTransitionTime": "2025-01-01T00:00:00Z",
                    },
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "TaskFailed",
                        "message": "simulate failed",
                        "lastTransitionTime": "2025-01-01T00:00:00Z",
                    },
                ],
            }
        },
    )
    request = urllib.request.Request(
        f"{apiserver.url}/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    with urllib.request.urlopen(request) as response:
        table = json.load(response)
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [(c["name"], c["type"], c["priority"]) for c in table["columnDefinitions"]] == [
        ("Name", "string", 0),
        ("Phase", "string", 0),
        ("Progress", "string", 0),
        ("Attention", "string", 0),
        ("Core-hours", "number", 0),
        ("Age", "date", 0),
        ("Cluster", "string", 1),
        ("Message", "string", 1),
    ]
    cells = table["rows"][0]["cells"]
    assert cells[:5] == ["t", "Failed", None, None, 2] and cells[6:] == [None, "simulate failed"]
    assert re.fullmatch(r"\d+s", cells[5])
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_unknown_fields_schema_validation_and_openapi(crds: None, apiserver: ApiServer) -> None:
    def call(method: str, path: str, body: Any = None, content_type: str = "application/json") -> tuple[int, Any, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            apiserver.url + path, data=data, method=method, headers={"Content-Type": content_type}
        )
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, json.load(response), response.headers
        except urllib.error.HTTPError as err:
            return err.code, json.load(err), err.headers

    base = f"/apis/{GROUP}/{VERSION}/namespaces/default/{PLURAL}"
    extra = workflow("u") | {"spec": {"tasks": [{"name": "t", "bogus": 1}], "other": True}}
    code, obj, headers = call("POST", base, extra)
    assert code == 201 and "bogus" not in obj["spec"]["tasks"][0] and "other" not in obj["spec"]
    assert sorted(headers.get_all("Warning")) == [
        '299 - "unknown field \\"spec.other\\""',
        '299 - "unknown field \\"spec.tasks[0].bogus\\""',
    ]
    code, obj, _ = call("POST", base + "?fieldValidation=Strict", extra | {"metadata": {"name": "v"}})
    assert code == 400 and obj["reason"] == "BadRequest"
    code, obj, _ = call("POST", base, workflow("w") | {"spec": {"tasks": [{"name": "t", "retry": {"limit": "x"}}]}})
    assert code == 422 and obj["details"]["causes"][0] == {
        "reason": "FieldValueTypeInvalid",
        "field": "spec.tasks[0].retry.limit",
        "message": 'Invalid value: "x": spec.tasks[0].retry.limit in body must be of type integer: "string"',
    }
    code, obj, _ = call("PATCH", base + "/u", {"spec": {"suspend": True}}, "application/apply-patch+yaml")
    assert code == 415 and obj["reason"] == "UnsupportedMediaType"
    code, obj, _ = call("GET", f"/apis/{GROUP}/{VERSION}/namespaces/default/nothings")
    assert code == 404 and obj["kind"] == "Status"
    code, root, _ = call("GET", "/openapi/v3")
    assert f"apis/{GROUP}/{VERSION}" in root["paths"] and "api/v1" in root["paths"]
    code, doc, _ = call("GET", root["paths"][f"apis/{GROUP}/{VERSION}"]["serverRelativeURL"])
    item = doc["paths"][f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}"]
    assert item["patch"]["x-kubernetes-group-version-kind"] == {"group": GROUP, "version": VERSION, "kind": "Workflow"}
    assert "fieldValidation" in [p["name"] for p in item["patch"]["parameters"]]
    assert {"get", "put", "patch", "delete"} <= set(item)
    component = doc["components"]["schemas"]["dev.reconciler.hpc.v1alpha1.Workflow"]
    assert component["x-kubernetes-group-version-kind"] == [{"group": GROUP, "version": VERSION, "kind": "Workflow"}]
    assert component["properties"]["spec"]["properties"]["suspend"]["default"] is False


def test_leases_events_and_secrets(kube_api: client.ApiClient, apiserver: ApiServer) -> None:
    coordination = client.CoordinationV1Api(kube_api)
    now = datetime.now(UTC)
    lease = coordination.create_namespaced_lease(
        "default",
        client.V1Lease(
            metadata=client.V1ObjectMeta(name="slurm-reconciler"),
            spec=client.V1LeaseSpec(holder_identity="pod-a", lease_duration_seconds=15, renew_time=now),
        ),
    )
    assert lease.spec is not None and lease.spec.renew_time == now  # kept to the microsecond
    lease.spec.holder_identity = "pod-b"
    renewed = coordination.replace_namespaced_lease("slurm-reconciler", "default", lease)
    assert renewed.spec is not None and renewed.spec.holder_identity == "pod-b"
    with pytest.raises(ApiException) as lost:
        coordination.replace_namespaced_lease("slurm-reconciler", "default", lease)  # stale resourceVersion
    assert lost.value.status == 409

    core = client.CoreV1Api(kube_api)
    reference = client.V1ObjectReference(
        api_version=f"{GROUP}/{VERSION}", kind="Workflow", name="p", namespace="default"
    )
    event = core.create_namespaced_event(
        "default",
        client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name="p."),
            involved_object=reference,
            reason="Submitted",
            message="job 42 submitted",
            type="Normal",
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        ),
    )
    assert event.metadata is not None and (event.metadata.name or "").startswith("p.")
    client.EventsV1Api(kube_api).create_namespaced_event(
        "default",
        client.EventsV1Event(
            metadata=client.V1ObjectMeta(name="p.2"),
            event_time=now,
            reporting_controller="hpc.reconciler.dev/operator",
            reporting_instance="pod-a",
            action="Submit",
            reason="Submitted",
            note="job 43 submitted",
            type="Normal",
            regarding=reference,
        ),
    )
    # One store, two views: the events.k8s.io event reads back through the core API.
    listed = core.list_namespaced_event("default", field_selector="involvedObject.name=p")
    assert sorted(e.message or "" for e in listed.items) == ["job 42 submitted", "job 43 submitted"]
    with pytest.raises(ApiException) as bad_type:
        core.create_namespaced_event(
            "default",
            client.CoreV1Event(metadata=client.V1ObjectMeta(name="q"), involved_object=reference, type="Catastrophic"),
        )
    assert bad_type.value.status == 422

    core.create_namespaced_secret(
        "default",
        client.V1Secret(metadata=client.V1ObjectMeta(name="cluster-key"), string_data={"id_ed25519": "PRIVATE"}),
    )
    secret = core.read_namespaced_secret("cluster-key", "default")
    assert secret.data == {"id_ed25519": "UFJJVkFURQ=="} and secret.type == "Opaque" and secret.string_data is None
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_secret("absent", "default")
    assert missing.value.status == 404
    assert status(missing.value)["details"] == {"name": "absent", "kind": "secrets"}
    recorded = {(r.verb, r.api_group, r.resource) for r in apiserver.requests}
    assert {
        ("create", "coordination.k8s.io", "leases"),
        ("update", "coordination.k8s.io", "leases"),
        ("create", "", "events"),
        ("create", "events.k8s.io", "events"),
        ("get", "", "secrets"),
    } <= recorded


def test_deleting_a_crd_deletes_its_resources(crds: None, kube_api: client.ApiClient) -> None:
    api = Workflows(kube_api)
    api.create(workflow("doomed"))
    client.ApiextensionsV1Api(kube_api).delete_custom_resource_definition("workflows.hpc.reconciler.dev")
    with pytest.raises(ApiException) as gone:
        api.list()
    assert gone.value.status == 404
