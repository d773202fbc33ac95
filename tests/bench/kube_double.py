"""A Kubernetes API server double for one EKS cluster: HTTPS on loopback, EKS authentication.

What a client of an EKS cluster's API server depends on, and nothing more:

- TLS with a server certificate for 127.0.0.1 and localhost from a bench CA (trustme);
- authentication as aws-iam-authenticator does it: the bearer token is a pre-signed STS
  GetCallerIdentity URL; its shape is checked as the authenticator checks it and its SigV4
  signature as STS would (recomputed here with the secret of the access key, looked up in
  moto's own IAM and STS backends, in-process);
- mapping the caller to a Kubernetes user as EKS does: access entries (API modes), the
  cluster creator, then the `aws-auth` ConfigMap this double serves (unless the mode is API);
- authorization reduced to "admin or not" (system:masters, the creator, or the
  AmazonEKSClusterAdminPolicy access policy);
- ConfigMaps (create, get, list, replace, delete) with resourceVersion conflicts, the 1 MiB
  limit and Kubernetes `Status` errors; SelfSubjectReview; /version;
- fault injection and a request log, for the bench's control API: an error status, a delay
  before the request is served, a forced 409, a write applied whose answer is then lost (the
  connection closed, or the answer sent only after a while), optionally after letting the first
  few matching requests through; and faults of the cluster's EKS API (eks_shim), injected here
  because this is the cluster's control route.
"""

import base64
import binascii
import copy
import hashlib
import hmac
import json
import logging
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlsplit

import yaml
from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

from eks_shim import API_MODES, find_iam_principal

log = logging.getLogger("bench.kube_double")


# --- Loopback HTTP(S) servers -----------------------------------------------------------------


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server for the bench: TCP_NODELAY on every accepted socket, no
    reverse DNS at bind time, and (with `ssl_context`) TLS whose handshake runs on the
    connection's own thread, so one slow or failing client never stalls the accept loop."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, ssl_context=None):
        self.ssl_context = ssl_context
        super().__init__(address, handler)

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn(), which can block on DNS for seconds.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    def get_request(self):
        sock, address = super().get_request()
        # Without it, delayed ACKs add ~40 ms to every small request/response pair.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, address

    def finish_request(self, request, client_address):
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        request.settimeout(10)  # a client that never finishes the handshake
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            # Typically a client that does not trust this CA: it hangs up mid-handshake.
            log.debug("TLS handshake with %s failed: %s", client_address, e)
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            tls.close()

    def handle_error(self, request, client_address):
        # Clients hanging up (resets, broken pipes) are routine here; anything else is a bug.
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError)):
            log.exception("request from %s failed", client_address)


def serve_in_thread(server, name):
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=name, daemon=True)
    thread.start()
    return thread


class JsonHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; JSON bodies in and out; quiet."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120  # idle keep-alive connections
    server_version = "bench"
    sys_version = ""
    MAX_BODY = 3 * 1024 * 1024  # kube-apiserver's request size limit

    def log_message(self, format, *args):
        log.debug("%s " + format, self.address_string(), *args)

    def read_body(self):
        """The raw request body (Content-Length or chunked), or None if it is too large."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > self.MAX_BODY:
                    self.close_connection = True
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.MAX_BODY:
            self.close_connection = True  # the unread body makes the connection unusable
            return None
        return self.rfile.read(length) if length else b""

    def send_json(self, status, payload, headers=()):
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# --- Kubernetes Status objects ----------------------------------------------------------------

_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}


def status_object(code, message, reason=None, details=None):
    status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": message, "reason": reason or _REASONS.get(code, "Unknown")}
    if details is not None:
        status["details"] = details
    status["code"] = code
    return status


UNAUTHORIZED = status_object(401, "Unauthorized")


class KubeError(Exception):
    def __init__(self, code, message, reason=None, details=None):
        super().__init__(message)
        self.code = code
        self.status = status_object(code, message, reason, details)


def not_found(name, kind="configmaps"):
    return KubeError(404, f'{kind} "{name}" not found', "NotFound", {"name": name, "kind": kind})


def conflict(name):
    return KubeError(409, f'Operation cannot be fulfilled on configmaps "{name}": the object has '
                          "been modified; please apply your changes to the latest version and "
                          "try again", "Conflict", {"name": name, "kind": "configmaps"})


def invalid(name, field, message, cause_reason):
    return KubeError(422, f'ConfigMap "{name}" is invalid: {field}: {message}', "Invalid",
                     {"name": name, "kind": "ConfigMap",
                      "causes": [{"reason": cause_reason, "message": message, "field": field}]})


# --- Authentication: the EKS bearer token -----------------------------------------------------

TOKEN_PREFIX = "k8s-aws-v1."
ALLOWED_QUERY = {"action", "version", "x-amz-algorithm", "x-amz-credential", "x-amz-date",
                 "x-amz-expires", "x-amz-signedheaders", "x-amz-security-token",
                 "x-amz-signature"}
TOKEN_LIFETIME = timedelta(minutes=15)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class AuthError(Exception):
    """Why a token was refused (for the request log; the client only sees 401)."""


@dataclass
class Caller:
    arn: str  # as STS GetCallerIdentity reports it
    canonical_arn: str  # what aws-auth and access entries are matched against
    account: str
    access_key_id: str
    user_id: str  # GetCallerIdentity's UserId: AROA...:session or AIDA...
    session_name: str | None
    principal: object  # eks_shim.IamPrincipal, or None if the role does not exist in IAM


def verify_token(header, cluster_name, now=None):
    """The caller a `Authorization: Bearer k8s-aws-v1...` header proves, or AuthError."""
    now = now or datetime.now(timezone.utc)
    if not header or not header.startswith("Bearer "):
        raise AuthError("no bearer token")
    token = header[len("Bearer "):].strip()
    if not token.startswith(TOKEN_PREFIX):
        raise AuthError("not an EKS token (no k8s-aws-v1. prefix)")
    encoded = token[len(TOKEN_PREFIX):]
    try:
        url = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_",
                               validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthError("token is not base64url")
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise AuthError("scheme is not https")
    if parts.path != "/":
        raise AuthError("path is not /")

    params = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() not in ALLOWED_QUERY:
            raise AuthError(f"query parameter {key} is not allowed")
        if key in params:
            raise AuthError(f"query parameter {key} given twice")
        params[key] = value
    lower = {k.lower(): v for k, v in params.items()}
    if lower.get("action") != "GetCallerIdentity":
        raise AuthError("action is not GetCallerIdentity")
    if lower.get("version") != "2011-06-15":
        raise AuthError("missing or unknown Version")
    if lower.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        raise AuthError("algorithm is not AWS4-HMAC-SHA256")
    signed_headers = lower.get("x-amz-signedheaders", "").split(";")
    if "x-k8s-aws-id" not in signed_headers:
        raise AuthError("x-k8s-aws-id is not a signed header")
    # The authenticator forwards only x-k8s-aws-id (and host) to STS: a signature over any
    # other header cannot verify there.
    if set(signed_headers) != {"host", "x-k8s-aws-id"}:
        raise AuthError(f"signed headers {signed_headers} are not host;x-k8s-aws-id")
    try:
        expires = int(lower.get("x-amz-expires", ""))
    except ValueError:
        raise AuthError("X-Amz-Expires is not a number")
    if not 0 < expires <= 900:
        raise AuthError("X-Amz-Expires is not in 1..900")
    try:
        signed_at = datetime.strptime(lower.get("x-amz-date", ""), "%Y%m%dT%H%M%SZ").replace(
            tzinfo=timezone.utc)
    except ValueError:
        raise AuthError("X-Amz-Date is malformed")
    if now > signed_at + TOKEN_LIFETIME:
        raise AuthError("token expired (X-Amz-Date is more than 15 minutes old)")
    if signed_at > now + TOKEN_LIFETIME:
        raise AuthError("X-Amz-Date is in the future")

    credential = lower.get("x-amz-credential", "").split("/")
    if len(credential) != 5 or credential[3] != "sts" or credential[4] != "aws4_request":
        raise AuthError("X-Amz-Credential is malformed")
    access_key_id, date, region = credential[:3]
    if date != signed_at.strftime("%Y%m%d"):
        raise AuthError("credential date is not X-Amz-Date's")
    host = parts.netloc
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    # STS only honours a signature scoped to the endpoint's own region.
    if host != f"sts.{region}.{suffix}" and not (host == "sts.amazonaws.com"
                                                 and region == "us-east-1"):
        raise AuthError(f"host {host} is not STS for region {region}")

    secret, caller = _resolve_access_key(access_key_id, lower.get("x-amz-security-token"), now)
    # Recompute the SigV4 query signature, with x-k8s-aws-id set to THIS cluster's name: a
    # token made for another cluster does not verify.
    query = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~"))
                   for k, v in params.items() if k.lower() != "x-amz-signature")
    header_values = {"host": host, "x-k8s-aws-id": cluster_name}
    canonical_request = "\n".join([
        "GET", "/", "&".join(f"{k}={v}" for k, v in query),
        "".join(f"{h}:{header_values[h]}\n" for h in sorted(header_values)),
        ";".join(sorted(header_values)), EMPTY_SHA256])
    scope = f"{date}/{region}/sts/aws4_request"
    string_to_sign = "\n".join([
        "AWS4-HMAC-SHA256", lower["x-amz-date"], scope,
        hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (date, region, "sts", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, lower.get("x-amz-signature", "")):
        raise AuthError("signature does not match (wrong secret, or signed for another "
                        "cluster, or altered)")
    return caller


def _resolve_access_key(access_key_id, session_token, now):
    """(secret, Caller) for an access key moto issued: an STS session or an IAM user key."""
    for account, backends in list(iam_backends.items()):
        iam = backends["aws"]
        key = iam.access_keys.get(access_key_id)
        if key is None:
            continue
        if key.user_name is None:  # temporary: find the session AssumeRole made
            session = next((s for s in list(sts_backends[account]["aws"].assumed_roles)
                            if s.access_key_id == access_key_id), None)
            if session is None:
                raise AuthError("temporary access key without an STS session")
            if session_token != session.session_token:
                raise AuthError("X-Amz-Security-Token does not match the session")
            if session.expiration.replace(tzinfo=timezone.utc) <= now:
                raise AuthError("the STS session has expired")
            role_name = session.role_arn.split("/")[-1]
            principal = find_iam_principal(account, "role", role_name)
            role_id = principal.id if principal else "AROA" + "0" * 17
            return session.secret_access_key, Caller(
                arn=session.arn,
                # The canonical ARN has no path: the STS ARN it comes from has none.
                canonical_arn=f"arn:aws:iam::{account}:role/{role_name}",
                account=account, access_key_id=access_key_id,
                user_id=f"{role_id}:{session.session_name}",
                session_name=session.session_name, principal=principal)
        user = iam.users.get(key.user_name)
        if user is None or key not in user.access_keys or key.status != "Active":
            raise AuthError("the access key is deleted or inactive")
        if session_token:
            raise AuthError("a security token with a long-term access key")
        return key.secret_access_key, Caller(
            arn=user.arn, canonical_arn=user.arn, account=account,
            access_key_id=access_key_id, user_id=user.id, session_name=None,
            principal=find_iam_principal(account, "user", user.name))
    raise AuthError(f"unknown access key {access_key_id}")


# --- Mapping: IAM caller -> Kubernetes user ---------------------------------------------------


@dataclass
class KubeUser:
    username: str
    groups: list
    admin: bool  # system:masters, the creator, or AmazonEKSClusterAdminPolicy
    via: str  # access-entry | creator | aws-auth
    caller: Caller


def expand_username(template, caller):
    if "{{EC2PrivateDNSName}}" in template:
        return None  # needs the EC2 instance behind the session: nodes only, not emulated
    session = caller.session_name or ""
    return (template.replace("{{AccountID}}", caller.account)
            .replace("{{SessionNameRaw}}", session)
            .replace("{{SessionName}}", session.replace("@", "-"))
            .replace("{{AccessKeyID}}", caller.access_key_id))


def _parse_mappings(text, arn_key):
    """mapRoles / mapUsers: a YAML list of {<arn_key>, username, groups}. Anything that does
    not parse as such maps nobody (the authenticator drops the whole list)."""
    if text is None:
        return []
    try:
        items = yaml.safe_load(text)
    except yaml.YAMLError as e:
        log.info("aws-auth: %s does not parse: %s", arn_key, e)
        return []
    if items is None:
        return []
    if not isinstance(items, list):
        return []
    good = []
    for item in items:
        if not isinstance(item, dict):
            return []
        # The authenticator reads the list as JSON into a Go struct: keys match whatever their
        # case (`roleARN`, `Username`), the last of several spellings winning.
        item = {str(k).lower(): v for k, v in item.items()}
        arn, username = item.get(arn_key), item.get("username")
        groups = item.get("groups", [])
        if not isinstance(arn, str) or not isinstance(username, str) or not (
                isinstance(groups, list) and all(isinstance(g, str) for g in groups)):
            return []
        good.append({"arn": arn, "username": username, "groups": groups})
    return good


def map_from_aws_auth(configmap, caller):
    """(username template, groups) for the caller from aws-auth's data, or None."""
    data = (configmap or {}).get("data") or {}
    if caller.arn.startswith("arn:aws:sts::"):
        mappings = _parse_mappings(data.get("mapRoles"), "rolearn")
    else:
        mappings = _parse_mappings(data.get("mapUsers"), "userarn")
    # As the authenticator: ARNs compared without regard to case, against the canonical ARN (no
    # path: an entry written with the role's IAM path never matches); of several entries for one
    # ARN, the last one counts.
    for m in reversed(mappings):
        if m["arn"].lower() == caller.canonical_arn.lower():
            return m["username"], m["groups"]
    try:
        accounts = yaml.safe_load(data.get("mapAccounts") or "[]") or []
    except yaml.YAMLError:
        accounts = []
    if isinstance(accounts, list) and caller.account in [str(a) for a in accounts]:
        return caller.canonical_arn, []
    return None


# --- The double -------------------------------------------------------------------------------

NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
MAX_CONFIGMAP_BYTES = 1024 * 1024
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIGMAPS = re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps(?:/([^/]+))?/?$")
SELF_SUBJECT_REVIEWS = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


FAULT_KINDS = ("status", "delay", "conflict", "drop", "late")


@dataclass
class Fault:
    # status: answer this error; delay: serve only after `seconds`; conflict: answer 409;
    # drop: serve the request (a write is applied), then close the connection unanswered;
    # late: serve it, and answer only after `seconds`.
    kind: str
    times: int
    status: int = 500
    seconds: float = 0.0
    method: str | None = None
    path_contains: str | None = None
    skip: int = 0  # matching requests to let through first

    def matches(self, method, path):
        return ((self.method is None or self.method.upper() == method)
                and (self.path_contains is None or self.path_contains in path))

    @classmethod
    def from_json(cls, spec):
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}, or eks")
        times = int(spec.get("times", 1))
        if times < 1:
            raise ValueError("times must be at least 1")
        skip = int(spec.get("skip", 0))
        if skip < 0:
            raise ValueError("skip must not be negative")
        fault = cls(kind, times, int(spec.get("status") or 500), float(spec.get("seconds") or 0),
                    spec.get("method"), spec.get("path_contains"), skip)
        if kind == "conflict" and fault.method is None:
            fault.method = "PUT"
        if kind == "status" and not 100 <= fault.status <= 599:
            raise ValueError("status must be an HTTP status code")
        return fault


def _now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class KubeDouble:
    """The API server of one cluster. `store` is the EKS shim's AccessStore."""

    def __init__(self, cluster_name, cluster_arn, store, ca, version="1.29"):
        self.cluster_name, self.cluster_arn, self.store = cluster_name, cluster_arn, store
        self.version = version
        self.ca = ca
        self._lock = threading.Lock()  # objects, resource versions, faults, request log
        self._objects = {}  # (namespace, name) -> ConfigMap JSON
        self._resource_version = 1000
        self._faults = []
        self._requests = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        context.set_alpn_protocols(["http/1.1"])
        self._server = LoopbackHTTPServer(("127.0.0.1", 0), _KubeHandler, context)
        self._server.double = self
        self._thread = None

    @property
    def endpoint(self):
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def ca_pem(self):
        return self.ca.cert_pem.bytes().decode()

    def start(self):
        self._thread = serve_in_thread(self._server, f"kube-{self.cluster_name}")
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    # Control side (no authentication)

    def get_object(self, namespace, name):
        with self._lock:
            obj = self._objects.get((namespace, name))
            return copy.deepcopy(obj)

    def put_object(self, namespace, name, obj):
        """Store `obj` as given, with the path's name and namespace and a new resourceVersion."""
        obj = copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        with self._lock:
            old = self._objects.get((namespace, name))
            meta["name"], meta["namespace"] = name, namespace
            meta.setdefault("uid", old["metadata"].get("uid") if old else str(uuid.uuid4()))
            meta.setdefault("creationTimestamp",
                            old["metadata"].get("creationTimestamp") if old else _now_rfc3339())
            meta["resourceVersion"] = self._bump()
            self._objects[(namespace, name)] = obj
            return copy.deepcopy(obj)

    def delete_object(self, namespace, name):
        with self._lock:
            return self._objects.pop((namespace, name), None) is not None

    def add_fault(self, spec):
        if spec.get("kind") == "eks":  # {"kind": "eks", "operation", ...}: see AccessStore
            self.store.add_fault(self.cluster_arn, spec)
            return
        fault = Fault.from_json(spec)
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self):
        with self._lock:
            self._faults.clear()
        self.store.clear_faults(self.cluster_arn)

    def faults(self):
        """The API server's faults that have not fired (all their times) yet."""
        with self._lock:
            return [{"kind": f.kind, "times": f.times, "method": f.method,
                     "path_contains": f.path_contains, "skip": f.skip} for f in self._faults]

    def requests(self):
        with self._lock:
            return list(self._requests)

    def clear_requests(self):
        with self._lock:
            self._requests.clear()

    # Internals (call with the lock held where noted)

    def _bump(self):  # lock held
        self._resource_version += 1
        return str(self._resource_version)

    def _take_fault(self, kinds, method, path):
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(method, path):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _record(self, method, path, query, user, status, auth_error, seconds=None):
        with self._lock:
            self._requests.append({"method": method, "path": path, "query": query,
                                   "username": user.username if user else None,
                                   "status": status, "auth_error": auth_error,
                                   "seconds": seconds})

    def identify(self, caller):
        """The Kubernetes user EKS would make of `caller`, or None (401)."""
        mode = self.store.mode(self.cluster_arn) or "CONFIG_MAP"
        if mode in API_MODES and caller.principal is not None:
            entry = self.store.entry_for(self.cluster_arn, caller.principal)
            if entry is not None:
                username = expand_username(entry.username, caller)
                if username is not None:
                    return KubeUser(username, list(entry.groups), entry.is_cluster_admin,
                                    "access-entry", caller)
        if caller.canonical_arn == self.store.creator(self.cluster_arn):
            # EKS's hidden mapping of the cluster creator.
            return KubeUser("kubernetes-admin", ["system:masters"], True, "creator", caller)
        if mode != "API":
            mapped = map_from_aws_auth(self.get_object("kube-system", "aws-auth"), caller)
            if mapped is not None:
                username = expand_username(mapped[0], caller)
                if username is not None:
                    return KubeUser(username, list(mapped[1]), "system:masters" in mapped[1],
                                    "aws-auth", caller)
        return None


class _KubeHandler(JsonHandler):
    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET

    def _handle(self):
        started = time.perf_counter()  # the double's own time per request, for the benchmarks
        double = self.server.double
        method = self.command
        path, _, query = self.path.partition("?")
        user, auth_error, status, after = None, None, 500, None
        try:
            body = self.read_body()
            if body is None:
                raise KubeError(413, f"Request entity too large: limit is {self.MAX_BODY}")
            if method == "GET" and path == "/version":  # public, as in Kubernetes
                status, payload = 200, {
                    "major": "1", "minor": double.version.split(".")[1],
                    "gitVersion": f"v{double.version}.0-eks-bench", "platform": "linux/amd64"}
            else:
                # Authenticate first (to log who it was), then let faults fire.
                caller = None
                try:
                    caller = verify_token(self.headers.get("Authorization"), double.cluster_name)
                    user = double.identify(caller)
                    if user is None:
                        auth_error = f"{caller.arn} is not mapped in cluster {double.cluster_name}"
                except AuthError as e:
                    auth_error = str(e)
                self._inject_faults(double, method, path)
                if user is None:
                    raise KubeError(401, "Unauthorized")
                status, payload = self._route(double, user, method, path, query, body)
                after = double._take_fault(("drop", "late"), method, path)
        except KubeError as e:
            status, payload = e.code, e.status
        except Exception:
            log.exception("kube double %s: %s %s failed", double.cluster_name, method, path)
            status, payload = 500, status_object(500, "Internal error occurred: bench bug")
        double._record(method, path, query, user, status, auth_error,
                       time.perf_counter() - started)
        if after is not None and after.kind == "drop":
            # Served (a write is stored), but the client never hears: the connection goes.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if after is not None:
            time.sleep(after.seconds)  # late: the client may have given up by now
        self.send_json(status, payload, [("Audit-Id", str(uuid.uuid4())),
                                         ("Cache-Control", "no-cache, private")])

    @staticmethod
    def _inject_faults(double, method, path):
        delay = double._take_fault(("delay",), method, path)
        if delay is not None:
            time.sleep(delay.seconds)
        fault = double._take_fault(("status",), method, path)
        if fault is not None:
            raise KubeError(fault.status, "Internal error occurred: injected fault"
                            if fault.status == 500 else f"injected fault ({fault.status})")

    def _route(self, double, user, method, path, query, body):
        if path == SELF_SUBJECT_REVIEWS:
            if method != "POST":
                raise KubeError(405, "the server does not allow this method on the requested "
                                     "resource")
            return 201, self._self_subject_review(user)
        m = _CONFIGMAPS.match(path)
        if m is None:
            raise KubeError(404, "the server could not find the requested resource", "NotFound",
                            {})
        namespace, name = m.group(1), m.group(2)
        verbs = ({"GET": "get", "PUT": "update", "DELETE": "delete"} if name
                 else {"GET": "list", "POST": "create"})
        verb = verbs.get(method)
        if verb is None:
            raise KubeError(405, "the server does not allow this method on the requested "
                                 "resource")
        if not user.admin:
            target = f'configmaps "{name}"' if name else "configmaps"
            raise KubeError(403, f'{target} is forbidden: User "{user.username}" cannot {verb} '
                                 f'resource "configmaps" in API group "" in the namespace '
                                 f'"{namespace}"', "Forbidden",
                            {**({"name": name} if name else {}), "kind": "configmaps"})
        dry_run = "dryRun=All" in query.split("&")
        store = _ConfigMaps(double, namespace)
        if verb == "get":
            return 200, store.get(name)
        if verb == "list":
            return 200, store.list()
        if verb == "delete":
            return 200, store.delete(name, dry_run)
        obj = _parse_configmap(body)
        if verb == "create":
            return 201, store.create(obj, dry_run)
        return 200, store.replace(name, obj, dry_run)

    @staticmethod
    def _self_subject_review(user):
        caller = user.caller
        principal_id = caller.user_id.split(":")[0]
        extra = {"accessKeyId": [caller.access_key_id], "arn": [caller.arn],
                 "canonicalArn": [caller.canonical_arn], "principalId": [principal_id]}
        if caller.session_name:
            extra["sessionName"] = [caller.session_name]
        return {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": None},
                "status": {"userInfo": {
                    "username": user.username,
                    "uid": f"aws-iam-authenticator:{caller.account}:{principal_id}",
                    "groups": [*user.groups, "system:authenticated"], "extra": extra}}}


def _parse_configmap(body):
    try:
        obj = json.loads(body or b"")
    except ValueError as e:
        raise KubeError(400, "the object provided is unrecognized (must be of type ConfigMap): "
                             f"couldn't get version/kind; json parse error: {e}")
    if not isinstance(obj, dict):
        raise KubeError(400, "the object provided is unrecognized (must be of type ConfigMap)")
    if obj.get("kind", "ConfigMap") != "ConfigMap" or obj.get("apiVersion", "v1") != "v1":
        raise KubeError(400, f"the object provided is unrecognized (must be of type ConfigMap): "
                             f"{obj.get('apiVersion')}, Kind={obj.get('kind')}")
    meta = obj.get("metadata")
    if meta is None:
        obj["metadata"] = meta = {}
    if not isinstance(meta, dict):
        raise KubeError(400, "metadata must be an object")
    for section in ("data", "binaryData"):
        values = obj.get(section)
        if values is not None and not (isinstance(values, dict) and all(
                isinstance(v, str) for v in values.values())):
            raise KubeError(400, f"ConfigMap.{section} must map keys to strings")
    for section in ("labels", "annotations"):
        values = meta.get(section)
        if values is not None and not (isinstance(values, dict) and all(
                isinstance(v, str) for v in values.values())):
            raise KubeError(400, f"metadata.{section} must map keys to strings")
    return obj


class _ConfigMaps:
    """ConfigMap operations in one namespace of a double; each takes the double's lock."""

    # Fields kept from a client's object; the server owns uid, resourceVersion, creationTimestamp.
    META_KEPT = ("labels", "annotations", "ownerReferences", "finalizers")

    def __init__(self, double, namespace):
        self.double, self.namespace = double, namespace

    def get(self, name):
        obj = self.double.get_object(self.namespace, name)
        if obj is None:
            raise not_found(name)
        return obj

    def list(self):
        d = self.double
        with d._lock:
            # As in Kubernetes, a list's items carry no kind/apiVersion of their own.
            items = [{k: copy.deepcopy(v) for k, v in o.items() if k not in ("kind", "apiVersion")}
                     for (ns, _), o in sorted(d._objects.items()) if ns == self.namespace]
            version = str(d._resource_version)
        return {"kind": "ConfigMapList", "apiVersion": "v1",
                "metadata": {"resourceVersion": version}, "items": items}

    def _build(self, name, obj, old):
        meta = obj["metadata"]
        stored_meta = {"name": name, "namespace": self.namespace,
                       "uid": old["metadata"]["uid"] if old else str(uuid.uuid4()),
                       "resourceVersion": None,
                       "creationTimestamp": (old["metadata"]["creationTimestamp"] if old
                                             else _now_rfc3339())}
        for key in self.META_KEPT:
            if meta.get(key) is not None:
                stored_meta[key] = meta[key]
        stored = {"kind": "ConfigMap", "apiVersion": "v1", "metadata": stored_meta}
        for key in ("immutable", "data", "binaryData"):
            if obj.get(key) is not None:
                stored[key] = obj[key]
        return stored

    def _validate(self, name, obj):
        if not name:
            raise invalid("", "metadata.name", "Required value: name or generateName is required",
                          "FieldValueRequired")
        if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
            raise invalid(name, "metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 '
                          "subdomain must consist of lower case alphanumeric characters, '-' or "
                          "'.', and must start and end with an alphanumeric character",
                          "FieldValueInvalid")
        namespace = obj["metadata"].get("namespace")
        if namespace and namespace != self.namespace:
            raise KubeError(400, "the namespace of the provided object does not match the "
                                 "namespace sent on the request")
        data, binary = obj.get("data") or {}, obj.get("binaryData") or {}
        size = 0
        for section, values in (("data", data), ("binaryData", binary)):
            for key, value in values.items():
                if len(key) > 253 or not _CONFIG_KEY.match(key):
                    raise invalid(name, f"{section}[{key}]", f'Invalid value: "{key}": a valid '
                                  "config key must consist of alphanumeric characters, '-', '_' "
                                  "or '.'", "FieldValueInvalid")
                if section == "data":
                    size += len(value.encode("utf-8"))
                else:
                    try:
                        size += len(base64.b64decode(value, validate=True))
                    except (binascii.Error, ValueError):
                        raise KubeError(400, f"binaryData[{key}] is not base64")
        for key in set(data) & set(binary):
            raise invalid(name, f"data[{key}]", f'Invalid value: "{key}": duplicate of key '
                          f'present in binaryData', "FieldValueInvalid")
        if size > MAX_CONFIGMAP_BYTES:
            raise invalid(name, "[]", f"Too long: must have at most {MAX_CONFIGMAP_BYTES} bytes",
                          "FieldValueTooLong")

    def create(self, obj, dry_run):
        name = obj["metadata"].get("name") or ""
        self._validate(name, obj)
        if self.namespace not in NAMESPACES:
            raise not_found(self.namespace, "namespaces")
        if obj["metadata"].get("resourceVersion"):
            raise KubeError(500, "resourceVersion should not be set on objects to be created",
                            "InternalError")
        d = self.double
        with d._lock:
            if (self.namespace, name) in d._objects:
                raise KubeError(409, f'configmaps "{name}" already exists', "AlreadyExists",
                                {"name": name, "kind": "configmaps"})
            stored = self._build(name, obj, None)
            if dry_run:
                stored["metadata"].pop("resourceVersion")
            else:
                stored["metadata"]["resourceVersion"] = d._bump()
                d._objects[(self.namespace, name)] = stored
            return copy.deepcopy(stored)

    def replace(self, name, obj, dry_run):
        given = obj["metadata"].get("name")
        if given != name:
            raise KubeError(400, f"the name of the object ({given}) does not match the name on "
                                 f"the URL ({name})")
        self._validate(name, obj)
        d = self.double
        with d._lock:
            old = d._objects.get((self.namespace, name))
            if old is None:
                raise not_found(name)  # ConfigMaps are not created by PUT
        # Outside the lock: _take_fault takes it.
        if d._take_fault(("conflict",), "PUT", f"/api/v1/namespaces/{self.namespace}/configmaps/"
                                               f"{name}"):
            raise conflict(name)
        with d._lock:
            old = d._objects.get((self.namespace, name))
            if old is None:
                raise not_found(name)
            wanted = obj["metadata"].get("resourceVersion")
            # Without a resourceVersion the update is unconditional, as in Kubernetes.
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise conflict(name)
            if old.get("immutable") and (obj.get("data") != old.get("data")
                                         or obj.get("binaryData") != old.get("binaryData")):
                raise invalid(name, "data", "Forbidden: field is immutable when `immutable` is "
                              "set", "FieldValueForbidden")
            stored = self._build(name, obj, old)
            if dry_run:
                stored["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            else:
                stored["metadata"]["resourceVersion"] = d._bump()
                d._objects[(self.namespace, name)] = stored
            return copy.deepcopy(stored)

    def delete(self, name, dry_run):
        d = self.double
        with d._lock:
            old = d._objects.get((self.namespace, name))
            if old is None:
                raise not_found(name)
            if not dry_run:
                del d._objects[(self.namespace, name)]
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "kind": "configmaps", "uid": old["metadata"]["uid"]}}
