"""The operator's permissions on the real API server, where RBAC is enforced.

* Secrets: the chart lets the operator's ServiceAccount read the Secrets named for it, in their
  own namespace, and no other (kubectl with that ServiceAccount's token is refused the rest).
* The audit: after every other test of the run (marker ``after_everything``, ordered by
  tests/conftest.py), the control plane's audit log holds every request the operator made during
  the suite. The (group, resource, subresource, verb) it used must be exactly what
  reconciler/kube/permissions.py RULES grant, and none of its requests may have been refused
  (but while a test restarts the API server: it answers 403 until its authorizer has read the
  roles, and the operator retries).
  "The operator" is the chart's ServiceAccount (in any test namespace) calling with the
  operator's user agent, so the tests' own kubectl calls with that token do not count. Whether
  something granted went unused can only be judged when the run held every test that runs the
  operator; in a run of part of them that direction is skipped, saying so.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.kube.permissions import RULES
from tests.controlplane.fixtures import OPERATOR_TESTS, RELEASE, Kubectl, fresh_namespace, install_operator_account
from tests.controlplane.server import ControlPlane

# reconciler/kube/operator.py sets it: "slurm-reconciler/<version> (<identity>)".
OPERATOR_AGENT = "slurm-reconciler/"
OPERATOR_USER = re.compile(rf"system:serviceaccount:[a-z0-9-]+:{re.escape(RELEASE)}")
INTEGRATION = Path(__file__).resolve().parent

# (apiGroup, resource, subresource, verb); "" for the core group and for no subresource.
Call = tuple[str, str, str, str]


@pytest.fixture
def other_namespace(control_plane: ControlPlane) -> Iterator[str]:
    with fresh_namespace(control_plane) as name:
        yield name


def create_secret(admin: Kubectl, namespace: str, name: str) -> None:
    admin("-n", namespace, "create", "secret", "generic", name, f"--from-literal=ssh-privatekey={name}@{namespace}")


def test_the_operator_reads_only_the_secrets_named_for_it(control_plane: ControlPlane, kube_namespace: str,
                                                         other_namespace: str, tmp_path: Path):
    admin = Kubectl(control_plane.admin_kubeconfig)
    for namespace in (kube_namespace, other_namespace):
        for name in ("hpc1-ssh", "someone-elses"):
            create_secret(admin, namespace, name)
    account = install_operator_account(control_plane, kube_namespace, tmp_path,
                                       "--set", "secretAccess[0].name=hpc1-ssh")
    as_operator = Kubectl(account.kubeconfig, kube_namespace)

    read = as_operator.get("secret", "hpc1-ssh")
    assert read is not None, as_operator("get", "secret", "hpc1-ssh", check=False).stderr
    assert base64.b64decode(read["data"]["ssh-privatekey"]).decode() == f"hpc1-ssh@{kube_namespace}"

    refused = {
        "another Secret of the namespace": as_operator("get", "secret", "someone-elses", check=False),
        "the same name in another namespace": as_operator("-n", other_namespace, "get", "secret", "hpc1-ssh",
                                                          check=False),
        # A grant by name cannot list: the names of the others stay unknown too.
        "the namespace's list": as_operator("get", "secrets", check=False),
    }
    for what, done in refused.items():
        assert done.returncode != 0 and "(Forbidden)" in done.stderr, f"{what}: {done.stdout}{done.stderr}"
        assert account.service_account in done.stderr, done.stderr


# --- the audit ----------------------------------------------------------------------------------


def granted() -> set[Call]:
    calls = set()
    for rule in RULES:
        resource, _, subresource = rule.resource.partition("/")
        calls |= {(rule.api_group, resource, subresource, verb) for verb in rule.verbs}
    return calls


def operator_requests(plane: ControlPlane) -> Iterator[tuple[Call, dict[str, Any]]]:
    for event in plane.audit_events():
        if not (OPERATOR_USER.fullmatch(event.get("user", {}).get("username", ""))
                and event.get("userAgent", "").startswith(OPERATOR_AGENT)):
            continue
        ref = event.get("objectRef")
        if ref:
            yield (ref.get("apiGroup", ""), ref["resource"], ref.get("subresource", ""), event["verb"]), event
        else:  # a path outside the resource API (/version, /apis, ...): RULES grants none
            yield ("", event["requestURI"].split("?")[0], "", event["verb"]), event


def during_a_restart(plane: ControlPlane, event: dict[str, Any]) -> bool:
    received = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"])
    return any(killed <= received <= ready for killed, ready in plane.restarts)


def listed(calls: set[Call]) -> str:
    return "\n".join(f"  {group or 'core'} {resource}{'/' + sub if sub else ''} {verb}"
                     for group, resource, sub, verb in sorted(calls)) or "  (none)"


def whole_run_of_the_operator_tests(config: pytest.Config, session: pytest.Session) -> str | None:
    """None when this run holds every test that runs the operator; else why it does not."""
    collected = config.stash.get(OPERATOR_TESTS, frozenset())
    selected = {item.nodeid for item in session.items} & collected
    if not selected:
        return "no test that runs the operator was selected"
    if selected != collected:
        return f"{len(collected) - len(selected)} of the {len(collected)} tests that run the operator were deselected"
    base = config.rootpath if config.args_source == pytest.Config.ArgsSource.TESTPATHS else config.invocation_params.dir
    for arg in config.args:
        path = (base / arg).resolve()
        if "::" not in arg and (path == INTEGRATION or path in INTEGRATION.parents):
            return None
    return "the run collected only some of the integration test modules"


@pytest.mark.after_everything
def test_the_operator_used_exactly_the_permissions_it_is_granted(control_plane: ControlPlane,
                                                                 request: pytest.FixtureRequest):
    used: dict[Call, dict[str, Any]] = {}
    forbidden = []
    for call, event in operator_requests(control_plane):
        used.setdefault(call, event)
        if (event.get("responseStatus") or {}).get("code") == 403 and not during_a_restart(control_plane, event):
            forbidden.append(f"  {event['verb']} {event['requestURI']} ({event['user']['username']})")
    assert not forbidden, "the operator was refused:\n" + "\n".join(forbidden)
    not_granted = set(used) - granted()
    assert not not_granted, ("used but not granted by reconciler/kube/permissions.py:\n" + listed(not_granted)
                             + "\nfor example " + "\n".join(used[call]["requestURI"] for call in sorted(not_granted)))
    partial = whole_run_of_the_operator_tests(request.config, request.session)
    if partial is not None:
        pytest.skip(f"whether every permission was used cannot be judged: {partial} "
                    f"(nothing ungranted was used, and nothing was refused)")
    unused = granted() - set(used)
    assert not unused, "granted by reconciler/kube/permissions.py but never used in the suite:\n" + listed(unused)
