"""A Hopsworks.ai cluster API double (AWS, EKS/ECR): plain HTTP on loopback.

It follows the contract in /work/shared/reference/hopsworks-api.md, for the calls a
CloudFormation custom resource makes to create, watch and delete one cluster:

    POST   /api/clusters          {"cloudProvider": "AWS", "cluster": {...flat AWS fields...}}
    GET    /api/clusters[?cloud=AWS]
    GET    /api/clusters/{id}
    DELETE /api/clusters/{id}

- Every request needs `x-api-key: <the bench's key>` and `hopsai-api-version: v1`, else
  HTTP 403 with the plain-text body `Unauthorized` (not the envelope), as the real service.
- Every other reply is the envelope {"apiVersion", "status", "code", "message"?, "payload"?}
  with the HTTP status equal to `code`.
- Clusters move one state per `polls_per_state` GETs of them (GET /api/clusters/{id} only):
  pending -> initializing -> starting-hopsworks -> running, or, for a cluster created after
  `fail_next_with` was set, pending -> initializing -> error. After DELETE they report
  shutting-down for `polls_per_state` GETs, then they are gone (404). With `delete_lag_polls`
  set, a DELETE takes effect that many GETs late (the cluster still reads as it was, `error`
  say), as an asynchronous service acts on a request some time after accepting it.
- Names are unique among live clusters: a second POST of a name answers 400 with the error
  envelope ("a cluster named … already exists"), as does a second cluster on one EKS cluster
  (same name and region).
- As the real service pushes its images: when a cluster reaches `running`, the repositories
  `<clusterId>/<name>` (the seven of ECR_IMAGES) are created in moto's ECR, in the cluster's
  ecrRegistryAccountId and region, with one image each; when a deleted cluster goes away they
  are force-deleted, unless `leave_ecr_repos` is set (the real service probably leaves them:
  that is what a stack's own clean-up is tested against).
- Fault injection and a request log that never holds the API key. A fault matches a method and
  a substring of the path (and query), lets `skip` matching requests through first, then fires
  `times` times: `status` answers an error (with `retry_after`, a Retry-After header), `delay`
  answers late, `drop` closes the connection without an answer; with `after` the request is
  applied first (a cluster made, a DELETE accepted), so the caller cannot tell it happened.

Not implemented (501): stop/start and the day-2 operations under /api/clusters/{id}/...,
the versions and instance-type catalogues.
"""

import copy
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from moto.ecr.exceptions import RepositoryAlreadyExistsException, RepositoryNotFoundException
from moto.ecr.models import ecr_backends

from kube_double import JsonHandler, LoopbackHTTPServer, serve_in_thread

log = logging.getLogger("bench.hopsworks_double")

API_VERSION = "v1"
DEFAULT_VERSION = "3.9.0"  # the provider's default Hopsworks version
# Pushed by a running cluster to <clusterId>/<name> in its ECR registry account.
ECR_IMAGES = ("filebeat", "base", "onlinefs", "airflow", "git", "testconnector", "flyingduck")

# The provider's validation regexps (Go RE2). They are used with fullmatch and re.ASCII so that
# they mean what they mean in Go: `\d` and `\w` are ASCII only, and `$` does not accept a
# trailing newline. The provider's instance-profile pattern names the `aws` partition only; the
# double also takes `aws-cn` and `aws-us-gov` (a server has no reason to refuse them; unverified).
INSTANCE_PROFILE_ARN = re.compile(r"^arn:aws(?:-cn|-us-gov)?:iam::([0-9]*):instance-profile/(.*)$",
                                  re.ASCII)
EKS_CLUSTER_NAME = re.compile(r"^[0-9A-Za-z][A-Za-z0-9\-_]+$", re.ASCII)
ACCOUNT_ID = re.compile(r"^\d{12}$", re.ASCII)
KMS_KEY_ARN = re.compile(r"^arn:aws:kms:\w+(?:-\w+)+:\d{12}:(key|alias)/(.*)$", re.ASCII)
ENCRYPTION_MODES = ("None", "SSE-S3", "SSE-KMS")
KMS_TYPES = ("User", "Managed")
MIN_HEAD_DISK_GB = 256
MIN_BACKUP_RETENTION_DAYS = 7

BOOT = ("pending", "initializing", "starting-hopsworks", "running")
BOOT_THEN_FAIL = ("pending", "initializing", "error")
SHUTTING_DOWN, TERMINATED = "shutting-down", "terminated"  # "terminated": control view only
# Undocumented upstream; plausible values (the contract's vectors show two of them).
INITIALIZATION_STAGE = {"pending": "creating-resources", "initializing": "installing",
                        "starting-hopsworks": "starting-services", "running": "running",
                        "error": "failed", SHUTTING_DOWN: "shutting-down",
                        TERMINATED: "terminated"}

# The day-2 operations the contract lists under /api/clusters/{id}: answered 501, not 404 (a
# client treats 404 as success, and silently "succeeding" at something the double cannot do
# would hide bugs).
DAY2_SUFFIXES = ("stop", "start", "workers", "ports", "autoscale", "upgrade",
                 "upgrade/rollback", "nodes/modify-instance-type")

FAULT_MESSAGES = {400: "Bad request", 401: "Unauthorized", 404: "not found", 409: "Conflict",
                  429: "Too many requests", 500: "Internal server error", 502: "Bad gateway",
                  503: "Service unavailable", 504: "Gateway timeout"}
REDACTED = "<redacted>"


class ApiError(Exception):
    """An error reply: the envelope with `code` (or, for 403, the plain-text body)."""

    def __init__(self, code, message, headers=()):
        super().__init__(message)
        self.code, self.message, self.headers = code, message, list(headers)


@dataclass
class HopsworksFault:
    """One injected fault (see the module's docstring)."""
    kind: str  # status | delay | drop
    times: int = 1
    status: int = 500
    seconds: float = 0.0
    method: str | None = None
    path_contains: str | None = None
    skip: int = 0
    after: bool = False
    retry_after: int | None = None

    KINDS = ("status", "delay", "drop")

    def matches(self, method, target):
        return ((self.method is None or self.method.upper() == method)
                and (self.path_contains is None or self.path_contains in target))

    @classmethod
    def from_json(cls, spec):
        if not isinstance(spec, dict):
            raise ValueError("expected a fault object")
        unknown = set(spec) - {"kind", "times", "status", "seconds", "method", "path_contains",
                               "skip", "after", "retry_after"}
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        kind = spec.get("kind")
        if kind not in cls.KINDS:
            raise ValueError(f"kind must be one of {', '.join(cls.KINDS)}")
        fault = cls(kind, int(spec.get("times", 1)), int(spec.get("status") or 500),
                    float(spec.get("seconds") or 0), spec.get("method"),
                    spec.get("path_contains"), int(spec.get("skip") or 0),
                    bool(spec.get("after", False)),
                    None if spec.get("retry_after") is None else int(spec["retry_after"]))
        if fault.times < 1:
            raise ValueError("times must be at least 1")
        if fault.skip < 0:
            raise ValueError("skip must not be negative")
        if kind == "status" and not 400 <= fault.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if kind == "delay" and fault.seconds <= 0:
            raise ValueError("seconds must be positive")
        if fault.retry_after is not None and fault.retry_after < 0:
            raise ValueError("retry_after must not be negative")
        return fault

    def describe(self):
        return {"kind": self.kind, "status": self.status, "seconds": self.seconds,
                "method": self.method, "path_contains": self.path_contains, "times": self.times,
                "skip": self.skip, "after": self.after, "retry_after": self.retry_after}


def _bad(message):
    return ApiError(400, message)


def _not_found():
    return ApiError(404, "cluster not found")


def _ok(payload=None):
    envelope = {"apiVersion": API_VERSION, "status": "ok", "code": 200}
    if payload is not None:
        envelope["payload"] = payload
    return envelope


def _error(code, message):
    return {"apiVersion": API_VERSION, "status": "error", "code": code, "message": message}


# --- Validation of POST /api/clusters --------------------------------------------------------


def _get(obj, key, kind, where=""):
    """obj[key] if it is a `kind`, None if absent or null, else a 400."""
    value = obj.get(key)
    if value is None:
        return None
    # bool is an int in Python; JSON true is no integer.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = {str: "a string", int: "an integer", bool: "a boolean", dict: "an object",
                 list: "an array"}
        raise _bad(f"{where}{key} must be {names[kind]}")
    return value


def _require(obj, key, where=""):
    value = _get(obj, key, str, where)
    if not value:
        raise _bad(f"{where}{key} is required")
    return value


def _check_arn(cluster, key, required):
    value = _get(cluster, key, str) or ""
    if not value:
        if required:
            raise _bad(f"{key} is required")
        return None
    m = INSTANCE_PROFILE_ARN.fullmatch(value)
    if m is None:
        raise _bad(f"invalid {key} {value!r}: it must match {INSTANCE_PROFILE_ARN.pattern}")
    return m


def validate_create(body):
    """The `cluster` object of a create request, checked on its own; or a 400 ApiError.

    The contract's client-side rules, plus what a server surely requires. The rules that
    involve other clusters (unique name, one Hopsworks cluster per EKS cluster) are the
    double's, checked under its lock.
    """
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    provider = _get(body, "cloudProvider", str)
    if not provider:
        raise _bad("cloudProvider is required")
    if provider != "AWS":
        raise _bad(f"cloudProvider {provider!r} is not supported (only AWS)")
    cluster = body.get("cluster")
    if cluster is None:
        raise _bad("cluster is required")
    if not isinstance(cluster, dict):
        raise _bad("cluster must be an object")
    if "aws" in cluster:
        # GET's shape; on create the AWS fields sit flat inside `cluster`.
        raise _bad("unexpected field cluster.aws: AWS fields go directly inside cluster")

    _require(cluster, "name")
    _get(cluster, "version", str)
    _require(cluster, "region")
    _require(cluster, "bucketName")
    _check_arn(cluster, "instanceProfileArn", required=True)
    _check_arn(cluster, "headInstanceProfileArn", required=False)

    eks = _get(cluster, "eksClusterName", str) or ""
    if eks and not EKS_CLUSTER_NAME.fullmatch(eks):
        raise _bad(f"invalid eksClusterName {eks!r}: it must match {EKS_CLUSTER_NAME.pattern}")
    registry = _get(cluster, "ecrRegistryAccountId", str) or ""
    if eks and not registry:
        raise _bad("ecrRegistryAccountId is required when eksClusterName is set")
    if registry and not ACCOUNT_ID.fullmatch(registry):
        raise _bad(f"invalid ecrRegistryAccountId {registry!r}: it must be a 12-digit AWS "
                   "account id")

    retention = _get(cluster, "backupRetentionPeriod", int) or 0
    if retention != 0 and retention < MIN_BACKUP_RETENTION_DAYS:
        raise _bad(f"backupRetentionPeriod must be 0 (no backups) or at least "
                   f"{MIN_BACKUP_RETENTION_DAYS} days, got {retention}")

    config = _get(cluster, "clusterConfiguration", dict)
    if config is None:
        raise _bad("clusterConfiguration is required")
    head = _get(config, "head", dict, "clusterConfiguration.")
    if head is None:
        raise _bad("clusterConfiguration.head is required")
    _require(head, "instanceType", "clusterConfiguration.head.")
    disk = _get(head, "diskSize", int, "clusterConfiguration.head.")
    if disk is None or disk < MIN_HEAD_DISK_GB:
        raise _bad(f"clusterConfiguration.head.diskSize must be at least {MIN_HEAD_DISK_GB} "
                   f"GB, got {disk}")
    workers = _get(config, "workers", list, "clusterConfiguration.") or []
    for i, worker in enumerate(workers):
        where = f"clusterConfiguration.workers[{i}]."
        if not isinstance(worker, dict):
            raise _bad(f"clusterConfiguration.workers[{i}] must be an object")
        _require(worker, "instanceType", where)
        count = _get(worker, "count", int, where)
        if count is None or count < 1:
            raise _bad(f"{where}count must be at least 1")
    autoscale = _get(cluster, "autoscale", dict)
    if workers and autoscale:
        raise _bad("clusterConfiguration.workers and autoscale cannot both be set")

    vpc, subnet = _get(cluster, "vpcId", str) or "", _get(cluster, "subnetId", str) or ""
    if bool(vpc) != bool(subnet):
        raise _bad("vpcId and subnetId must be set together")
    _get(cluster, "securityGroupId", str)

    bucket = _get(cluster, "bucketConfiguration", dict)
    encryption = _get(bucket, "encryption", dict, "bucketConfiguration.") if bucket else None
    if encryption:
        where = "bucketConfiguration.encryption."
        mode = _get(encryption, "mode", str, where)
        if mode not in ENCRYPTION_MODES:
            raise _bad(f"{where}mode must be one of {', '.join(ENCRYPTION_MODES)}, got {mode!r}")
        kms_type = _get(encryption, "kmsType", str, where)
        if kms_type is not None and kms_type not in KMS_TYPES:
            raise _bad(f"{where}kmsType must be one of {', '.join(KMS_TYPES)}, got {kms_type!r}")
        key_arn = _get(encryption, "userKeyArn", str, where) or ""
        if key_arn and not KMS_KEY_ARN.fullmatch(key_arn):
            raise _bad(f"invalid {where}userKeyArn {key_arn!r}: it must match "
                       f"{KMS_KEY_ARN.pattern}")
    return cluster


# --- Clusters --------------------------------------------------------------------------------


@dataclass
class Cluster:
    id: str
    spec: dict  # the create request's `cluster` object, as received
    origin: str  # "api" (POST /api/clusters) or "control" (the bench's control API)
    states: tuple  # BOOT or BOOT_THEN_FAIL
    created_on: int
    error_text: str | None = None  # errorMessage once in `error`
    index: int = 0  # into states
    seen: int = 0  # GETs that reported the current state
    gets: int = 0  # GETs of this cluster, all states
    deleting: bool = False
    delete_lag: int = 0  # GETs left that still show the state from before the DELETE
    gone: bool = False
    started_on: int | None = None
    head_node_id: str = field(default_factory=lambda: "i-0" + secrets.token_hex(8))
    ecr: dict = field(default_factory=dict)  # what the side effects did (control view)

    @property
    def name(self):
        return self.spec["name"]

    @property
    def state(self):
        if self.gone:
            return TERMINATED
        if self.deleting and not self.delete_lag:
            return SHUTTING_DOWN
        return self.states[self.index]

    @property
    def live(self):
        return not self.gone


def _manifest(cluster_id, name):
    """A small, valid Docker image manifest (schema 2), distinct per repository."""
    def digest(text):
        return "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": 1469, "digest": digest(f"config {cluster_id}/{name}")},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 2813, "digest": digest(f"layer {cluster_id}/{name}")}],
    }, separators=(",", ":"))


class HopsworksDouble:
    """The API server and its state. Everything below is guarded by one lock, held across the
    moto ECR calls too, so that a GET reporting `running` is never answered before the
    repositories exist (nor a 404 before they are gone)."""

    def __init__(self, api_key, defaults):
        """`defaults`: region, instance_profile_arn (for clusters made by the control API)."""
        self._api_key = api_key
        self._defaults = defaults
        self._lock = threading.Lock()
        self._clusters = {}  # id -> Cluster, including gone ones
        self._behaviour = {"polls_per_state": 1, "fail_next_with": None,
                           "leave_ecr_repos": False, "delete_lag_polls": 0}
        self._faults = []
        self._requests = []
        self._server = LoopbackHTTPServer(("127.0.0.1", 0), _HopsworksHandler)
        self._server.double = self

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self):
        serve_in_thread(self._server, "hopsworks-ai")
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()

    # --- Control side --------------------------------------------------------------------------

    def behaviour(self):
        with self._lock:
            return dict(self._behaviour)

    def set_behaviour(self, changes):
        """Apply a partial update; ValueError if anything in it is invalid (nothing applied)."""
        if not isinstance(changes, dict):
            raise ValueError("expected an object")
        unknown = set(changes) - set(self._behaviour)
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        if "polls_per_state" in changes:
            n = changes["polls_per_state"]
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError("polls_per_state must be an integer >= 1")
        if "fail_next_with" in changes:
            text = changes["fail_next_with"]
            if text is not None and (not isinstance(text, str) or not text):
                raise ValueError("fail_next_with must be a non-empty string or null")
        if "leave_ecr_repos" in changes and not isinstance(changes["leave_ecr_repos"], bool):
            raise ValueError("leave_ecr_repos must be a boolean")
        if "delete_lag_polls" in changes:
            n = changes["delete_lag_polls"]
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise ValueError("delete_lag_polls must be an integer >= 0")
        with self._lock:
            self._behaviour.update(changes)
            return dict(self._behaviour)

    def add_fault(self, spec):
        fault = HopsworksFault.from_json(spec)
        with self._lock:
            self._faults.append(fault)
        return fault.describe()

    def clear_faults(self):
        with self._lock:
            self._faults.clear()

    def faults(self):
        """The faults that have not fired (all their times) yet."""
        with self._lock:
            return [f.describe() for f in self._faults]

    def requests(self):
        with self._lock:
            return copy.deepcopy(self._requests)

    def clear_requests(self):
        with self._lock:
            self._requests.clear()

    def clusters(self):
        """Every cluster ever, in creation order, as the control API shows them."""
        with self._lock:
            return [self._control_view(c) for c in self._clusters.values()]

    def cluster(self, cluster_id):
        with self._lock:
            c = self._clusters.get(cluster_id)
            return None if c is None else self._control_view(c)

    def create_running(self, fields):
        """A cluster already `running` (its ECR repositories pushed), from flat create fields
        over defaults. Checked as a create request, except for EKS sharing: tests use this to
        make a cluster that already holds an EKS cluster. ValueError if invalid."""
        if not isinstance(fields, dict):
            raise ValueError("expected an object of cluster fields")
        spec = {
            "version": DEFAULT_VERSION, "sshKeyName": "",
            "clusterConfiguration": {
                "head": {"instanceType": "m5.2xlarge", "diskSize": 512, "haEnabled": False},
                "workers": []},
            "issueLetsEncrypt": True, "attachPublicIP": True, "backupRetentionPeriod": 0,
            "managedUsers": True, "region": self._defaults["region"],
            "bucketName": f"{fields.get('name') or 'hopsworks'}-bucket",
            "instanceProfileArn": self._defaults["instance_profile_arn"],
            "headInstanceProfileArn": "", "vpcId": "", "subnetId": "", "securityGroupId": "",
            "eksClusterName": "", "ecrRegistryAccountId": "", **fields}
        if spec["eksClusterName"] and not spec["ecrRegistryAccountId"]:
            # The provider's rule: the account of the instance profile.
            m = INSTANCE_PROFILE_ARN.fullmatch(spec["instanceProfileArn"] or "")
            spec["ecrRegistryAccountId"] = m.group(1) if m else ""
        with self._lock:
            try:
                validate_create({"cloudProvider": "AWS", "cluster": spec})
                self._check_name(spec["name"])
            except ApiError as e:
                raise ValueError(e.message)
            c = self._new_cluster(spec, "control", BOOT, None)
            c.index = len(BOOT) - 1
            self._enter_state(c)
            return self._control_view(c)

    # --- API side (called by the handler) ---------------------------------------------------------

    def key_matches(self, values):
        # Exactly one x-api-key header, compared in constant time.
        return len(values) == 1 and hmac.compare_digest(values[0].encode(),
                                                         self._api_key.encode())

    def redact(self, text):
        """`text` with the API key cut out, for the request log."""
        return text.replace(self._api_key, REDACTED) if text else text

    def take_fault(self, method, target):
        """The fault this request meets, if any (the first that matches, once its skips are
        used up), counted."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, target):
                    if fault.skip > 0:
                        fault.skip -= 1
                        return None
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def record(self, entry):
        with self._lock:
            self._requests.append(entry)

    def create(self, body):
        spec = validate_create(body)
        with self._lock:
            self._check_name(spec["name"])
            self._check_eks(spec)
            fail_with = self._behaviour["fail_next_with"]
            self._behaviour["fail_next_with"] = None  # one-shot
            c = self._new_cluster(spec, "api", BOOT_THEN_FAIL if fail_with else BOOT, fail_with)
            return c.id

    def get(self, cluster_id):
        """The cluster as GET shows it, after counting this GET as a poll (state changes)."""
        with self._lock:
            c = self._clusters.get(cluster_id)
            if c is None or c.gone:
                raise _not_found()
            if c.delete_lag > 0:  # the DELETE not acted on yet: as it was
                view = self._api_view(c)
                c.delete_lag -= 1
                c.gets += 1
                return view
            if c.seen >= self._behaviour["polls_per_state"]:
                if c.deleting:
                    c.gone = True
                    self._remove_ecr_repositories(c)
                    raise _not_found()
                if c.index < len(c.states) - 1:
                    c.index += 1
                    c.seen = 0
                    self._enter_state(c)
            c.seen += 1
            c.gets += 1
            return self._api_view(c)

    def list(self, cloud):
        with self._lock:
            if cloud is not None and cloud != "AWS":
                return []  # every cluster here is on AWS
            return [self._api_view(c) for c in self._clusters.values() if c.live]

    def delete(self, cluster_id):
        with self._lock:
            c = self._clusters.get(cluster_id)
            if c is None or c.gone:
                raise _not_found()
            if not c.deleting:  # a repeated DELETE changes nothing
                c.deleting, c.seen = True, 0
                c.delete_lag = self._behaviour["delete_lag_polls"]

    # --- Internals (lock held) ----------------------------------------------------------------

    def _check_eks(self, spec):
        """The docs allow one Hopsworks cluster per EKS cluster. EKS cluster names are unique
        per account and region; the request does not say which account the EKS cluster is in,
        so region and name it is."""
        eks = spec.get("eksClusterName")
        other = eks and next((c for c in self._clusters.values() if c.live
                              and c.spec.get("eksClusterName") == eks
                              and c.spec.get("region") == spec["region"]), None)
        if other:
            raise _bad(f"EKS cluster {eks} is already used by Hopsworks cluster {other.name} "
                       f"({other.id})")

    def _check_name(self, name):
        if any(c.live and c.name == name for c in self._clusters.values()):
            raise _bad(f"a cluster named {name} already exists")

    def _new_cluster(self, spec, origin, states, error_text):
        cluster_id = str(uuid.uuid4())  # lowercase: valid in an ECR repository name
        c = Cluster(cluster_id, copy.deepcopy(spec), origin, states, int(time.time()),
                    error_text)
        self._clusters[cluster_id] = c
        return c

    def _enter_state(self, c):
        if c.state == "running":
            c.started_on = int(time.time())
            self._push_ecr_images(c)

    def _push_ecr_images(self, c):
        account = c.spec.get("ecrRegistryAccountId") or ""
        region = c.spec["region"]
        c.ecr = {"account_id": account or None, "region": region, "repositories": [],
                 "removed": False, "left_behind": False, "error": None}
        if not account:
            # Without a registry account the cluster runs Hopsworks' own images: nothing pushed.
            return
        backend = ecr_backends[account][region]
        try:
            for name in ECR_IMAGES:
                repository = f"{c.id}/{name}"
                try:
                    backend.create_repository(
                        repository_name=repository, registry_id=None, encryption_config=None,
                        image_scan_config=None, image_tag_mutability=None, tags=[])
                except RepositoryAlreadyExistsException:
                    pass  # made by someone else first: push into it anyway
                backend.put_image(repository, _manifest(c.id, name),
                                  c.spec.get("version") or DEFAULT_VERSION)
                c.ecr["repositories"].append(repository)
        except Exception as e:  # a bench bug: visible in the control view and the log
            log.exception("cluster %s: pushing ECR images failed", c.id)
            c.ecr["error"] = repr(e)

    def _remove_ecr_repositories(self, c):
        if not c.ecr.get("repositories"):
            return
        if self._behaviour["leave_ecr_repos"]:
            c.ecr["left_behind"] = True
            return
        backend = ecr_backends[c.ecr["account_id"]][c.ecr["region"]]
        for repository in c.ecr["repositories"]:
            try:
                backend.delete_repository(repository, None, force=True)
            except RepositoryNotFoundException:
                pass  # already deleted (by the stack's own clean-up, say)
            except Exception as e:
                log.exception("cluster %s: deleting ECR repository %s failed", c.id, repository)
                c.ecr["error"] = repr(e)
        c.ecr["removed"] = True

    def _api_view(self, c):
        """payload.cluster of GET /api/clusters/{id} (field names as the contract's GET shape)."""
        s, state = c.spec, c.state
        config = s.get("clusterConfiguration") or {}
        head = dict(config.get("head") or {})
        head.update(nodeId=c.head_node_id, privateIp="10.0.1.10")
        workers, next_ip = [], 11
        for group in config.get("workers") or []:
            count = group.get("count") or 0
            workers.append({**group, "privateIps": [f"10.0.1.{next_ip + i}" for i in
                                                    range(count)]})
            next_ip += count
        view = {"id": c.id, "name": c.name, "state": state,
                "activationState": "stoppable" if state == "running" else "terminable",
                "initializationStage": INITIALIZATION_STAGE[state],
                "createdOn": c.created_on}
        # Like the contract's vector 2, a cluster that never ran has no startedOn and no url.
        if c.started_on is not None:
            view["startedOn"] = c.started_on
        view["version"] = s.get("version") or DEFAULT_VERSION
        if c.started_on is not None:
            view["url"] = f"https://{c.id[:8]}.cloud.hopsworks.ai/"
        view["provider"] = "AWS"
        if state == "error":
            view["errorMessage"] = c.error_text
        view.update({
            "tags": s.get("tags") or [],
            "sshKeyName": s.get("sshKeyName") or "",
            "clusterConfiguration": {"head": head, "workers": workers},
            "publicIPAttached": s.get("attachPublicIP", True),
            "letsEncryptIssued": s.get("issueLetsEncrypt", True),
            "managedUsers": s.get("managedUsers", True),
            "backupRetentionPeriod": s.get("backupRetentionPeriod") or 0,
        })
        aws = {key: s.get(key) or "" for key in (
            "region", "bucketName", "instanceProfileArn", "headInstanceProfileArn", "vpcId",
            "subnetId", "securityGroupId", "eksClusterName", "ecrRegistryAccountId")}
        for key in ("bucketConfiguration", "ebsEncryption"):
            if s.get(key) is not None:
                aws[key] = s[key]
        view["aws"] = aws
        view["ports"] = {"featureStore": False, "onlineFeatureStore": False, "kafka": False,
                         "ssh": False}
        for key in ("ronDB", "autoscale"):
            if s.get(key) is not None:
                view[key] = s[key]
        view["backupPipelineInProgress"] = False
        # The create flags, echoed back.
        for key, default in (("initScript", ""), ("runInitScriptFirst", False), ("os", "ubuntu"),
                             ("deactivateLogReport", False), ("collectLogs", False)):
            view[key] = s.get(key, default)
        for key in ("clusterDomainPrefix", "customHostedZone"):
            if s.get(key):
                view[key] = s[key]
        return copy.deepcopy(view)

    def _control_view(self, c):
        view = self._api_view(c)
        view["bench"] = {"origin": c.origin, "gets": c.gets, "create_request": {
            "cloudProvider": "AWS", "cluster": copy.deepcopy(c.spec)},
            "ecr": copy.deepcopy(c.ecr) or None}
        return view


def _injected_error(fault):
    retry_after = fault.retry_after
    if retry_after is None and fault.status == 429:
        retry_after = 1
    return ApiError(fault.status, FAULT_MESSAGES.get(fault.status, "injected fault"),
                    [] if retry_after is None else [("Retry-After", str(retry_after))])


class _HopsworksHandler(JsonHandler):
    server_version = "hopsworks-ai-double"

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _handle(self):
        double = self.server.double
        method, target = self.command, self.path
        path, _, query = target.partition("?")
        key_ok = double.key_matches(self.headers.get_all("x-api-key") or [])
        version_ok = self.headers.get_all("hopsai-api-version") == [API_VERSION]
        raw = self.read_body()
        status, doc, extra_headers = 500, None, []
        injected = double.take_fault(method, target)
        fault = None if injected is None else (
            injected.kind + (f" {injected.status}" if injected.kind == "status" else "")
            + (f" {injected.seconds}s" if injected.kind == "delay" else "")
            + (" after applying" if injected.after else ""))
        dropped = injected is not None and injected.kind == "drop"
        try:
            # As the kube doubles: faults fire before authentication is enforced (unless `after`:
            # then the request is served first, and only its answer is lost or late).
            if injected is not None and not injected.after:
                if injected.kind == "delay":
                    time.sleep(injected.seconds)
                elif injected.kind == "status":
                    raise _injected_error(injected)
            if not (key_ok and version_ok):
                raise ApiError(403, "Unauthorized")
            if raw is None:
                raise ApiError(413, f"request body larger than {self.MAX_BODY} bytes")
            if not (dropped and not injected.after):
                status, doc = 200, self._route(double, method, path, query, raw)
        except ApiError as e:
            status, doc, extra_headers = e.code, _error(e.code, e.message), e.headers
        except Exception as e:
            log.exception("hopsworks double: %s %s failed", method, path)
            status, doc = 500, _error(500, f"bench bug: {e!r}")
        if injected is not None and injected.after:
            if injected.kind == "status":
                e = _injected_error(injected)
                status, doc, extra_headers = e.code, _error(e.code, e.message), e.headers
            elif injected.kind == "delay":
                time.sleep(injected.seconds)

        # Never the key itself: not its header, nor anywhere else it might have been put.
        logged_headers = {}
        for name, value in self.headers.items():
            if name.lower() != "x-api-key":
                name = name.lower()
                value = double.redact(value)
                logged_headers[name] = (f"{logged_headers[name]}, {value}"
                                        if name in logged_headers else value)
        body_text = raw.decode("utf-8", "replace") if raw else None
        double.record({
            "time": time.time(), "method": method, "path": double.redact(path),
            "query": double.redact(query), "status": status,
            "key_present": bool(self.headers.get_all("x-api-key")), "key_ok": key_ok,
            "api_version_ok": version_ok, "headers": logged_headers,
            "body": double.redact(body_text), "fault": fault,
            "answered": not dropped})

        if dropped:
            # No answer at all: the connection closes (a network failure, a crashed server).
            self.close_connection = True
            return
        if status == 403:
            # The real service answers 403 in plain text; the provider reads it as text.
            self.send_text(403, "Unauthorized", extra_headers)
        else:
            self.send_json(status, doc, extra_headers)

    def send_text(self, status, text, headers=()):
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _route(self, double, method, path, query, raw):
        parts = path.strip("/").split("/") if path.strip("/") else []
        if parts[:2] != ["api", "clusters"] or path.endswith("/"):
            raise ApiError(404, f"no such endpoint: {path}")
        if len(parts) == 2:
            if method == "GET":
                cloud = parse_qs(query).get("cloud", [None])[0]
                return _ok({"clusters": double.list(cloud)})
            if method == "POST":
                return _ok({"id": double.create(self._json_body(raw))})
            raise ApiError(405, f"method {method} not allowed on {path}")
        if len(parts) == 3:
            if method == "GET":
                return _ok({"cluster": double.get(parts[2])})
            if method == "DELETE":
                double.delete(parts[2])
                return _ok()
            raise ApiError(405, f"method {method} not allowed on {path}")
        suffix = "/".join(parts[3:])
        if suffix in DAY2_SUFFIXES or parts[2] in ("hopsworks", "nodes"):
            raise ApiError(501, f"{method} {path} is not implemented by the bench's "
                                "Hopsworks.ai double")
        raise ApiError(404, f"no such endpoint: {path}")

    def _json_body(self, raw):
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _bad(f"Content-Type must be application/json, got "
                       f"{self.headers.get('Content-Type')!r}")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise _bad(f"the request body is not valid JSON: {e}")
