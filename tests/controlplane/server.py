"""A real Kubernetes control plane for the tests: etcd and kube-apiserver as local processes on
loopback ports, the way controller-runtime's envtest runs them.

Called by the session fixture ``control_plane`` (tests/conftest.py). Guarantees:

* the servers are the upstream binaries built from tests/controlplane/go.mod (``build.py``);
* TLS everywhere it matters: a CA made for this run signs the API server's serving certificate
  and the admin's client certificate (``system:masters``), so kubectl and the python client verify
  the server as they would in production;
* authorization is RBAC only: a ServiceAccount can do exactly what its Role grants; the API server
  signs ServiceAccount tokens (``token``), so the operator runs as its ServiceAccount;
* an audit policy logs every request at Metadata level to ``audit_log`` (JSON lines), so tests can
  read who called what;
* ``restart_apiserver`` kills the kube-apiserver alone and starts it again with the same
  arguments and ports (etcd and its data stay): clients see their connections dropped and, a
  few seconds later, a server whose watch cache starts afresh, as after a crash (``restarts``
  keeps when, for the audit of the operator's calls);
* ``stop`` ends both processes (and is safe to call twice); their output is kept in the run
  directory for a failing test's report.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ..ports import free_port
from .build import Binaries

START_TIMEOUT = 120.0
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
"""


class ControlPlaneError(RuntimeError):
    """A server did not start or answer; the message holds the tail of its log."""


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(parts)


@dataclass(frozen=True)
class Certificates:
    ca: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    service_account_key: Path
    service_account_public: Path


def make_certificates(directory: Path) -> Certificates:
    """A CA, the server's certificate for 127.0.0.1 and localhost, an admin client certificate in
    ``system:masters``, and the ServiceAccount token signing key pair."""
    import ipaddress

    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = _key()
    ca_name = _name("slurm-reconciler-test-ca")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def issue(subject: x509.Name, *, server: bool) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
        key = _key()
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    serving, serving_key = issue(_name("kube-apiserver"), server=True)
    admin, admin_key = issue(_name("admin", "system:masters"), server=False)
    sa_key = _key()
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "serving.crt": serving.public_bytes(serialization.Encoding.PEM),
        "serving.key": _pem_key(serving_key),
        "admin.crt": admin.public_bytes(serialization.Encoding.PEM),
        "admin.key": _pem_key(admin_key),
        "sa.key": _pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
        os.chmod(directory / name, 0o600)
    return Certificates(ca=directory / "ca.crt", serving_cert=directory / "serving.crt",
                        serving_key=directory / "serving.key", admin_cert=directory / "admin.crt",
                        admin_key=directory / "admin.key", service_account_key=directory / "sa.key",
                        service_account_public=directory / "sa.pub")


def kubeconfig_text(*, server: str, ca: Path, user: dict[str, str], namespace: str = "default") -> str:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "test", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": namespace}}],
    }
    return json.dumps(config, indent=1)


class ControlPlane:
    def __init__(self, binaries: Binaries, directory: Path) -> None:
        self.binaries = binaries
        self.directory = directory
        self.etcd_port = free_port()
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.audit_log = directory / "audit.log"
        self.admin_kubeconfig = directory / "admin.kubeconfig"
        self._processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._argv: dict[str, list[str]] = {}
        self.certificates: Certificates | None = None
        # (killed, ready again) of each restart_apiserver, in UTC: while it starts, the server
        # answers before its RBAC authorizer has read the roles, so a 403 then is the restart's.
        self.restarts: list[tuple[datetime.datetime, datetime.datetime]] = []

    def start(self) -> ControlPlane:
        self.directory.mkdir(parents=True, exist_ok=True)
        certs = self.certificates = make_certificates(self.directory / "pki")
        self._spawn("etcd", [
            str(self.binaries.etcd), "--data-dir", str(self.directory / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", "http://127.0.0.1:0",
            # A test store: nothing in it must outlive the run, so durability buys nothing.
            "--unsafe-no-fsync", "--log-level", "warn"])
        policy = self.directory / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        self._spawn("kube-apiserver", [
            str(self.binaries.kube_apiserver),
            "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
            "--secure-port", str(self.port),
            "--tls-cert-file", str(certs.serving_cert), "--tls-private-key-file", str(certs.serving_key),
            "--client-ca-file", str(certs.ca),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", SERVICE_ACCOUNT_ISSUER,
            "--service-account-key-file", str(certs.service_account_public),
            "--service-account-signing-key-file", str(certs.service_account_key),
            "--service-cluster-ip-range", "10.0.0.0/24",
            "--allow-privileged=true",
            # No controller-manager runs: nothing would keep the kubernetes Service's endpoints.
            "--endpoint-reconciler-type", "none",
            "--audit-policy-file", str(policy), "--audit-log-path", str(self.audit_log),
            "--audit-log-format", "json", "--audit-log-mode", "blocking",
            "--cert-dir", str(self.directory / "serving"),
            "--v", "1"])
        self.admin_kubeconfig.write_text(kubeconfig_text(
            server=self.url, ca=certs.ca,
            user={"client-certificate": str(certs.admin_cert), "client-key": str(certs.admin_key)}))
        self._wait_ready()
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        self._argv[name] = argv
        log = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115 - the child writes to it for its whole life
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self._processes.append((name, process))

    def _ssl_context(self) -> ssl.SSLContext:
        assert self.certificates is not None
        context = ssl.create_default_context(cafile=str(self.certificates.ca))
        context.load_cert_chain(str(self.certificates.admin_cert), str(self.certificates.admin_key))
        return context

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        context = self._ssl_context()
        last = ""
        while time.monotonic() < deadline:
            for name, process in self._processes:
                if process.poll() is not None:
                    raise ControlPlaneError(f"{name} exited ({process.returncode}):\n{self.log_tail(name)}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", context=context, timeout=5) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.2)
        raise ControlPlaneError(f"kube-apiserver not ready in {START_TIMEOUT}s ({last}):\n"
                                f"{self.log_tail('kube-apiserver')}")

    def log_tail(self, name: str, size: int = 4000) -> str:
        path = self.directory / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    def kubeconfig_for_token(self, token: str, path: Path, *, namespace: str = "default") -> Path:
        assert self.certificates is not None
        path.write_text(kubeconfig_text(server=self.url, ca=self.certificates.ca, user={"token": token},
                                        namespace=namespace))
        return path

    def audit_events(self) -> Iterator[dict[str, Any]]:
        """Every audit event logged so far (ResponseComplete and Panic stages)."""
        if not self.audit_log.exists():
            return
        with open(self.audit_log) as lines:
            for line in lines:
                if line.strip():
                    yield json.loads(line)

    def restart_apiserver(self) -> None:
        """Kill the kube-apiserver and start it again as it was; returns once it is ready."""
        [(name, process)] = [entry for entry in self._processes if entry[0] == "kube-apiserver"]
        killed = datetime.datetime.now(datetime.UTC)
        # Killed, not stopped: a graceful stop waits for requests in flight (up to a minute),
        # longer than the clients' leases and retries last; a crash is what they must survive.
        process.kill()
        process.wait(timeout=30)
        self._processes.remove((name, process))
        self._spawn(name, self._argv[name])
        self._wait_ready()
        self.restarts.append((killed, datetime.datetime.now(datetime.UTC)))

    def stop(self) -> None:
        # The API server first, so it does not log a storm of etcd errors on its way out.
        for name, process in reversed(self._processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
            del name
        self._processes.clear()
