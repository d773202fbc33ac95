"""A Hopsworks.ai cluster API double (AWS, EKS/ECR): plain HTTP on loopback.

It follows the contract in /work/shared/reference/hopsworks-api.md, every endpoint it lists:

    POST   /api/clusters          {"cloudProvider": "AWS", "cluster": {...flat AWS fields...}}
    GET    /api/clusters[?cloud=AWS]
    GET    /api/clusters/{id}
    DELETE /api/clusters/{id}
    PUT    /api/clusters/{id}/stop, /start
    POST   /api/clusters/{id}/workers      {"workers": [{instanceType, diskSize, count, spotInfo?}]}
    DELETE /api/clusters/{id}/workers      the same body: removes that many
    POST   /api/clusters/{id}/autoscale    {"autoscale": {"nonGpu": {...}, "gpu"?: {...}}}
    DELETE /api/clusters/{id}/autoscale
    POST   /api/clusters/{id}/ports        {"ports": {featureStore, onlineFeatureStore, kafka, ssh}}
    POST   /api/clusters/{id}/upgrade      {"version", "dockerRegistryAccount"?}
    PUT    /api/clusters/{id}/upgrade/rollback
    PUT    /api/clusters/{id}/nodes/modify-instance-type  {"nodeInfo": {nodeType, instanceType}}
    POST   /api/clusters/restore/{backupId}
           {"cluster": {name?, sshKeyName?, tags?, autoscale?, instanceProfileArn?,
                        headInstanceProfileArn?, vpcId?, subnetId?, securityGroupId?}}
    GET    /api/clusters/hopsworks/versions/AWS
    GET    /api/clusters/nodes/supported-types?cloud=AWS[&region=R]
    POST   /api/backups                          {"backup": {"clusterId", "backupName"}} -> backupId
    GET    /api/backups[?clusterId=]
    GET    /api/backups/{id}
    DELETE /api/backups/{id}

- Every request needs `x-api-key: <the bench's key>` and `hopsai-api-version: v1`, else
  HTTP 403 with the plain-text body `Unauthorized` (not the envelope), as the real service.
- Every other reply is the envelope {"apiVersion", "status", "code", "message"?, "payload"?}
  with the HTTP status equal to `code`. Bodies are checked as strictly as create's: a 400
  names the field. Day-2 and restore bodies refuse fields the contract does not list.
- Clusters move one state per `polls_per_state` GETs of them (GET /api/clusters/{id} only):
  pending -> initializing -> starting-hopsworks -> running, or, for a cluster created after
  `fail_next_with` was set, pending -> initializing -> error. After DELETE they report
  shutting-down for `polls_per_state` GETs, then they are gone (404). With `delete_lag_polls`
  set, a DELETE takes effect that many GETs late (the cluster still reads as it was, `error`
  say), as an asynchronous service acts on a request some time after accepting it.
- Day-2 operations need a `running` cluster with nothing else under way (no operation, no
  upgrade in progress, no pending backup), else 400. What they change shows once the cluster
  is `running` again:
  workers, autoscale, ports: updating -> running. Workers and autoscale are exclusive (400).
  A DELETE of workers names a group (instanceType, diskSize, spotInfo) with at least `count`.
  upgrade: stopping -> stopped -> starting -> running with upgradeInProgress{from,to} ->
  running (version = to). 400 unless the version is in the catalogue and upgradable from the
  cluster's (its upgradableFromVersion equals it), or when dockerRegistryAccount is missing or
  differs from the cluster's ecrRegistryAccountId. While `fail_upgrade_with` is set (not
  one-shot), an upgrade goes stopping -> stopped -> error with that errorMessage,
  upgradeInProgress still shown.
  upgrade/rollback (400 without an upgrade, failed or done, to roll back): stopping ->
  stopped -> starting -> running with the version the upgrade came from, error cleared.
  nodes/modify-instance-type (head, or a RonDB node the cluster has; 400 when unchanged):
  stopping -> stopped -> starting -> running.
  stop (running only): stopping -> stopped; start (stopped only): starting -> running.
- The versions catalogue: 3.8.0, 3.9.0 (default), 4.0.0 (from 3.9.0), 4.1.0 (from 4.0.0);
  behaviour `versions` replaces it (null: back to this one).
- Backups belong to a running cluster (400 otherwise, or while one of its backups is pending,
  or for a backupName it already has). They are pending for `polls_per_state` GETs of the
  backup (GET /api/backups/{id} only), then `succeed`, or `failed` with stateMessage for the
  backup made after `fail_next_backup_with` was set (one-shot). While one is pending the
  cluster shows backupPipelineInProgress and a DELETE of it answers 400. An unknown or
  deleted backup is 404 "no backup"; a DELETE of a pending one is 400. Backups outlive their
  cluster and hold a snapshot of its configuration: a restore (404 no backup, 400 unless
  `succeed`) makes a new cluster from it, the request's fields overriding, checked as a
  create (unique name, one cluster per EKS cluster) and booting as one.
- Names are unique among live clusters: a second POST of a name answers 400 with the error
  envelope ("a cluster named … already exists"), as does a second cluster on one EKS cluster
  (same name and region).
- As the real service pushes its images: when a cluster first reaches `running`, the
  repositories `<clusterId>/<name>` (the seven of ECR_IMAGES) are created in moto's ECR, in the
  cluster's ecrRegistryAccountId and region, with one image each; when a deleted cluster goes
  away they are force-deleted, unless `leave_ecr_repos` is set (the real service probably
  leaves them: that is what a stack's own clean-up is tested against).
- Fault injection and a request log that never holds the API key, for every endpoint. A fault
  matches a method and a substring of the path (and query), lets `skip` matching requests
  through first, then fires `times` times: `status` answers an error (with `retry_after`, a
  Retry-After header), `delay` answers late, `drop` closes the connection without an answer;
  with `after` the request is applied first (a cluster made, a DELETE accepted, a backup
  started), so the caller cannot tell it happened.

Undocumented upstream, chosen here: the HTTP codes and messages, the state sequences, that a
change shows only when it is done, and a POST /api/backups for an unknown cluster answering 400
(not 404, which a client reads as success).
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
                        TERMINATED: "terminated", "updating": "updating",
                        "stopping": "stopping", "stopped": "stopped", "starting": "starting"}
ACTIVATION = {"running": "stoppable", "stopped": "startable"}
# Day-2 state sequences (the contract's are plausible, not observed).
UPDATE = ("updating", "running")
RESTART = ("stopping", "stopped", "starting", "running")
UPGRADE = ("stopping", "stopped", "starting", "running", "running")  # the 4th: upgradeInProgress
UPGRADE_THEN_FAIL = ("stopping", "stopped", "error")
STOP, START = ("stopping", "stopped"), ("starting", "running")
BACKUP_PENDING, BACKUP_SUCCEED, BACKUP_FAILED = "pending", "succeed", "failed"

REGIONS = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-north-1", "eu-central-1"]


def _version_entry(version, upgradable_from, default=False):
    return {"version": version, "upgradableFromVersion": upgradable_from, "default": default,
            "experimental": False, "regions": {"ubuntu": list(REGIONS), "centos": []},
            "releaseNotesUrl": f"https://docs.hopsworks.ai/{version.rsplit('.', 1)[0]}/"
                               "release-notes/"}


DEFAULT_VERSIONS = [_version_entry("3.8.0", ""), _version_entry("3.9.0", "3.8.0", default=True),
                    _version_entry("4.0.0", "3.9.0"), _version_entry("4.1.0", "4.0.0")]


def _types(*specs):
    return [{"id": i, "cpus": c, "memory": m, "withNVMe": n} for i, c, m, n in specs]


SUPPORTED_TYPES = {"aws": {
    "head": _types(("m5.2xlarge", 8, 32, False), ("m5.4xlarge", 16, 64, False),
                   ("m5.8xlarge", 32, 128, False), ("r5.2xlarge", 8, 64, False)),
    "worker": _types(("m5.xlarge", 4, 16, False), ("m5.2xlarge", 8, 32, False),
                     ("m5.4xlarge", 16, 64, False), ("r5.2xlarge", 8, 64, False),
                     ("g4dn.xlarge", 4, 16, True)),
    "ronDB": {"mgmd": _types(("t3a.medium", 2, 4, False), ("t3a.large", 2, 8, False)),
              "ndbd": _types(("r5.large", 2, 16, False), ("r5.xlarge", 4, 32, False),
                             ("r5.2xlarge", 8, 64, False)),
              "mysqld": _types(("c5.large", 2, 4, False), ("c5.xlarge", 4, 8, False)),
              "api": _types(("c5.large", 2, 4, False), ("c5.xlarge", 4, 8, False))}}}

# nodes/modify-instance-type: nodeType -> the ronDB node it changes (head: the head).
NODE_TYPES = {"head": None, "rondb_data": "ndbd", "rondb_mysql": "mysqld", "rondb_api": "api",
              "rondb_aio": "ndbd"}
PORTS = ("featureStore", "onlineFeatureStore", "kafka", "ssh")
AUTOSCALE_GROUP_FIELDS = ("instanceType", "diskSize", "minWorkers", "maxWorkers",
                          "standbyWorkers", "downscaleWaitTime")
RESTORE_FIELDS = ("name", "sshKeyName", "tags", "autoscale", "instanceProfileArn",
                  "headInstanceProfileArn", "vpcId", "subnetId", "securityGroupId")

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


def _not_allowed(method, path):
    return ApiError(405, f"method {method} not allowed on {path}")


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


# --- Validation of the day-2, backup and restore bodies -------------------------------------


def _object(value, where):
    if value is None:
        raise _bad(f"{where} is required")
    if not isinstance(value, dict):
        raise _bad(f"{where} must be an object")
    return value


def _body(body, key, allowed):
    """body[key], an object whose fields are all in `allowed`; the body has no other field."""
    _object(body, "the request body")
    _only(body, (key,), "")
    value = _object(body.get(key), key)
    _only(value, allowed, f"{key}.")
    return value


def _only(obj, allowed, where):
    unknown = sorted(set(obj) - set(allowed))
    if unknown:
        raise _bad(f"unexpected field {where}{unknown[0]} (expected: {', '.join(allowed)})")


def _require_int(obj, key, where, minimum):
    value = _get(obj, key, int, where)
    if value is None:
        raise _bad(f"{where}{key} is required")
    if value < minimum:
        raise _bad(f"{where}{key} must be at least {minimum}, got {value}")
    return value


def _spot_info(obj, where):
    spot = _get(obj, "spotInfo", dict, where)
    if spot is None:
        return None
    where = f"{where}spotInfo."
    _only(spot, ("maxPrice", "fallBackOnDemand"), where)
    price = _require_int(spot, "maxPrice", where, 1)
    if price > 200:
        raise _bad(f"{where}maxPrice must be at most 200 (% of the on-demand price), got {price}")
    if _get(spot, "fallBackOnDemand", bool, where) is None:
        raise _bad(f"{where}fallBackOnDemand is required")
    return spot


def validate_workers(body):
    """[{instanceType, diskSize, count, spotInfo?}] of a POST or DELETE .../workers."""
    _object(body, "the request body")
    _only(body, ("workers",), "")
    workers = _get(body, "workers", list)
    if not workers:
        raise _bad("workers is required: a non-empty array of {instanceType, diskSize, count}")
    groups = []
    for i, worker in enumerate(workers):
        where = f"workers[{i}]."
        if not isinstance(worker, dict):
            raise _bad(f"workers[{i}] must be an object")
        _only(worker, ("instanceType", "diskSize", "count", "spotInfo"), where)
        group = {"instanceType": _require(worker, "instanceType", where),
                 "diskSize": _require_int(worker, "diskSize", where, 1),
                 "count": _require_int(worker, "count", where, 1)}
        spot = _spot_info(worker, where)
        if spot is not None:
            group["spotInfo"] = spot
        groups.append(group)
    return groups


def validate_autoscale(autoscale, where="autoscale."):
    """The `autoscale` object ({nonGpu, gpu?}) of POST .../autoscale or a restore."""
    _only(autoscale, ("nonGpu", "gpu"), where)
    if autoscale.get("nonGpu") is None and autoscale.get("gpu") is None:
        raise _bad(f"{where}nonGpu is required")
    for kind in ("nonGpu", "gpu"):
        group = _get(autoscale, kind, dict, where)
        if group is None:
            continue
        at = f"{where}{kind}."
        _only(group, AUTOSCALE_GROUP_FIELDS + ("spotInfo",), at)
        _require(group, "instanceType", at)
        _require_int(group, "diskSize", at, 1)
        low = _require_int(group, "minWorkers", at, 0)
        high = _require_int(group, "maxWorkers", at, 1)
        if high < low:
            raise _bad(f"{at}maxWorkers ({high}) must be at least minWorkers ({low})")
        standby = group.get("standbyWorkers")
        if standby is None:
            raise _bad(f"{at}standbyWorkers is required")
        if not isinstance(standby, (int, float)) or isinstance(standby, bool) or standby < 0:
            raise _bad(f"{at}standbyWorkers must be a number >= 0, got {standby!r}")
        _require_int(group, "downscaleWaitTime", at, 0)
        _spot_info(group, at)
    return autoscale


def validate_ports(body):
    ports = _body(body, "ports", PORTS)
    for key in PORTS:
        if _get(ports, key, bool, "ports.") is None:
            raise _bad(f"ports.{key} is required")
    return {key: ports[key] for key in PORTS}


def validate_upgrade(body):
    """(version, dockerRegistryAccount or None) of POST .../upgrade."""
    _object(body, "the request body")
    _only(body, ("version", "dockerRegistryAccount"), "")
    version = _require(body, "version")
    account = _get(body, "dockerRegistryAccount", str) or None
    if account is not None and not ACCOUNT_ID.fullmatch(account):
        raise _bad(f"invalid dockerRegistryAccount {account!r}: it must be a 12-digit AWS "
                   "account id")
    return version, account


def validate_node_info(body):
    """(nodeType, instanceType) of PUT .../nodes/modify-instance-type."""
    info = _body(body, "nodeInfo", ("nodeType", "instanceType"))
    node_type = _require(info, "nodeType", "nodeInfo.")
    if node_type not in NODE_TYPES:
        raise _bad(f"nodeInfo.nodeType must be one of {', '.join(NODE_TYPES)}, got "
                   f"{node_type!r}")
    return node_type, _require(info, "instanceType", "nodeInfo.")


def validate_backup(body):
    """(clusterId, backupName) of POST /api/backups."""
    backup = _body(body, "backup", ("clusterId", "backupName"))
    return _require(backup, "clusterId", "backup."), _require(backup, "backupName", "backup.")


def validate_restore(body):
    """The `cluster` object of POST /api/clusters/restore/{id}: overrides, all optional."""
    cluster = _body(body, "cluster", RESTORE_FIELDS)
    for key in RESTORE_FIELDS:
        if key not in ("tags", "autoscale"):
            _get(cluster, key, str, "cluster.")
    if "name" in cluster and not cluster["name"]:
        raise _bad("cluster.name must not be empty (leave it out to keep the backup's)")
    for key in ("instanceProfileArn", "headInstanceProfileArn"):
        value = cluster.get(key) or ""
        if value and not INSTANCE_PROFILE_ARN.fullmatch(value):
            raise _bad(f"invalid cluster.{key} {value!r}: it must match "
                       f"{INSTANCE_PROFILE_ARN.pattern}")
    tags = _get(cluster, "tags", list, "cluster.")
    for i, tag in enumerate(tags or []):
        where = f"cluster.tags[{i}]."
        if not isinstance(tag, dict):
            raise _bad(f"cluster.tags[{i}] must be an object")
        _only(tag, ("name", "value"), where)
        _require(tag, "name", where)
        if _get(tag, "value", str, where) is None:
            raise _bad(f"{where}value is required")
    autoscale = _get(cluster, "autoscale", dict, "cluster.")
    if autoscale is not None:
        validate_autoscale(autoscale, "cluster.autoscale.")
    return cluster


def _version_key(version):
    """3.9.0 -> (3, 9, 0); the text is cut at the first `_`, as the provider does."""
    try:
        return tuple(int(p) for p in version.split("_", 1)[0].split("."))
    except ValueError:
        return ()


def validate_versions(versions):
    """The `versions` behaviour: a catalogue like GET .../versions/AWS's, or None (the default)."""
    if versions is None:
        return None
    if not isinstance(versions, list) or not versions:
        raise ValueError("versions must be a non-empty array of {version, upgradableFromVersion"
                         ", default?, experimental?} or null")
    catalogue = []
    for i, v in enumerate(versions):
        if not isinstance(v, dict) or not isinstance(v.get("version"), str) or not v["version"]:
            raise ValueError(f"versions[{i}].version must be a non-empty string")
        if not isinstance(v.get("upgradableFromVersion", ""), str):
            raise ValueError(f"versions[{i}].upgradableFromVersion must be a string")
        entry = _version_entry(v["version"], v.get("upgradableFromVersion", ""))
        entry.update(v)
        catalogue.append(entry)
    return catalogue


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
    effects: dict = field(default_factory=dict)  # index into states -> applied on entering it
    ports: dict = field(default_factory=lambda: dict.fromkeys(PORTS, False))
    upgrade: dict | None = None  # upgradeInProgress {from, to}
    last_upgrade: dict | None = None  # the upgrade a rollback undoes (done or failed)
    restored_from: str | None = None  # the backup's id

    @property
    def name(self):
        return self.spec["name"]

    @property
    def busy(self):
        """In the middle of a sequence (boot, a day-2 operation): not at its last state."""
        return self.index < len(self.states) - 1

    def begin(self, states, effects=None):
        """Start a state sequence; `effects`: index -> function(cluster), run on entering it."""
        self.states, self.index, self.seen = tuple(states), 0, 0
        self.effects = dict(effects or {})
        if 0 in self.effects:
            self.effects.pop(0)(self)

    def advance(self):
        self.index += 1
        self.seen = 0
        effect = self.effects.pop(self.index, None)
        if effect is not None:
            effect(self)

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


@dataclass
class Backup:
    id: str
    name: str
    cluster_id: str
    created_on: int
    snapshot: dict  # {"spec": the cluster's create fields then, "ports": ...}
    origin: str  # "api" or "control"
    fail_with: str | None = None  # stateMessage once failed
    state: str = BACKUP_PENDING
    seen: int = 0  # GETs that reported the current state
    gets: int = 0
    deleted: bool = False

    def view(self):
        return {"backupId": self.id, "backupName": self.name, "clusterId": self.cluster_id,
                "createdOn": self.created_on, "cloudProvider": "AWS", "state": self.state,
                "stateMessage": (self.fail_with or "") if self.state == BACKUP_FAILED else ""}


def _group_key(group):
    """What tells worker groups apart: instance type, disk size, spot pricing."""
    return (group.get("instanceType"), group.get("diskSize"),
            json.dumps(group.get("spotInfo"), sort_keys=True))


def _no_backup():
    return ApiError(404, "no backup")


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
        self._backups = {}  # id -> Backup, including deleted ones
        self._behaviour = {"polls_per_state": 1, "fail_next_with": None,
                           "leave_ecr_repos": False, "delete_lag_polls": 0,
                           "fail_upgrade_with": None, "fail_next_backup_with": None,
                           "versions": None}
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
        for key in ("fail_next_with", "fail_upgrade_with", "fail_next_backup_with"):
            text = changes.get(key)
            if text is not None and (not isinstance(text, str) or not text):
                raise ValueError(f"{key} must be a non-empty string or null")
        if "versions" in changes:
            changes = {**changes, "versions": validate_versions(changes["versions"])}
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

    def backups(self):
        """Every backup ever (deleted ones flagged), in creation order, with its snapshot."""
        with self._lock:
            return [self._backup_control_view(b) for b in self._backups.values()]

    def backup(self, backup_id):
        with self._lock:
            b = self._backups.get(backup_id)
            return None if b is None else self._backup_control_view(b)

    def create_succeeded_backup(self, body):
        """A backup already `succeed` holding the snapshot of a cluster that is not here (of
        another account, or long gone): {"cluster": {flat create fields over defaults, "name"
        required}, "ports"?, "backupName"?, "clusterId"?}. ValueError if invalid."""
        if not isinstance(body, dict):
            raise ValueError('expected {"cluster": {...}, "ports"?, "backupName"?, "clusterId"?}')
        unknown = set(body) - {"cluster", "ports", "backupName", "clusterId"}
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")
        spec = self._control_spec(body.get("cluster"))
        ports = body.get("ports") or dict.fromkeys(PORTS, False)
        for key in ("backupName", "clusterId"):
            if body.get(key) is not None and (not isinstance(body[key], str) or not body[key]):
                raise ValueError(f"{key} must be a non-empty string")
        try:
            validate_create({"cloudProvider": "AWS", "cluster": spec})
            ports = validate_ports({"ports": ports})
        except ApiError as e:
            raise ValueError(e.message)
        with self._lock:
            b = Backup(str(uuid.uuid4()), body.get("backupName") or
                       f"bench-backup-{secrets.token_hex(4)}",
                       body.get("clusterId") or str(uuid.uuid4()), int(time.time()),
                       {"spec": spec, "ports": ports}, "control", state=BACKUP_SUCCEED)
            self._backups[b.id] = b
            return self._backup_control_view(b)

    def _control_spec(self, fields):
        """Flat create fields over defaults, as the control API makes clusters."""
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
        return spec

    def create_running(self, fields):
        """A cluster already `running` (its ECR repositories pushed), from flat create fields
        over defaults. Checked as a create request, except for EKS sharing: tests use this to
        make a cluster that already holds an EKS cluster. ValueError if invalid."""
        spec = self._control_spec(fields)
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
                if c.busy:
                    c.advance()
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
            if c.deleting:  # a repeated DELETE changes nothing
                return
            pending = self._pending_backup(c)
            if pending is not None:
                raise _bad(f"cluster {c.name} ({c.id}) has a backup in progress "
                           f"({pending.id}): delete it once the backup has finished")
            c.deleting, c.seen = True, 0
            c.delete_lag = self._behaviour["delete_lag_polls"]

    # --- Day-2 operations (API side) ------------------------------------------------------------

    def stop_cluster(self, cluster_id):
        with self._lock:
            c = self._live(cluster_id)
            self._require_idle(c, "stop it")
            c.begin(STOP)

    def start_cluster(self, cluster_id):
        with self._lock:
            c = self._live(cluster_id)
            if c.deleting or c.state != "stopped" or c.busy:
                raise _bad(f"cluster {c.name} ({c.id}) is {self._shown_state(c)}, not stopped: "
                           "only a stopped cluster can be started")
            c.begin(START)

    def add_workers(self, cluster_id, groups):
        with self._lock:
            c = self._live(cluster_id)
            self._require_idle(c, "add workers")
            if c.spec.get("autoscale"):
                raise _bad(f"cluster {c.name} ({c.id}) has autoscale enabled: workers and "
                           "autoscale are exclusive; disable autoscale first")

            def apply(c):
                workers = c.spec.setdefault("clusterConfiguration", {}).setdefault("workers", [])
                for group in groups:
                    same = next((w for w in workers if _group_key(w) == _group_key(group)), None)
                    if same is None:
                        workers.append(copy.deepcopy(group))
                    else:
                        same["count"] = (same.get("count") or 0) + group["count"]
            c.begin(UPDATE, {1: apply})

    def remove_workers(self, cluster_id, groups):
        with self._lock:
            c = self._live(cluster_id)
            self._require_idle(c, "remove workers")
            wanted = {}
            for group in groups:
                wanted[_group_key(group)] = wanted.get(_group_key(group), 0) + group["count"]
            have = {}
            for w in self._workers(c):
                have[_group_key(w)] = have.get(_group_key(w), 0) + (w.get("count") or 0)
            for key, count in wanted.items():
                if have.get(key, 0) < count:
                    raise _bad(f"cluster {c.name} ({c.id}) has {have.get(key, 0)} workers of "
                               f"type {key[0]} with {key[1]} GB disks"
                               f"{' (spot)' if key[2] != 'null' else ''}, cannot remove {count}")

            def apply(c):
                left = dict(wanted)
                for w in self._workers(c):
                    take = min(left.get(_group_key(w), 0), w.get("count") or 0)
                    left[_group_key(w)] = left.get(_group_key(w), 0) - take
                    w["count"] = (w.get("count") or 0) - take
                c.spec["clusterConfiguration"]["workers"] = [
                    w for w in self._workers(c) if w["count"] > 0]
            c.begin(UPDATE, {1: apply})

    def set_autoscale(self, cluster_id, autoscale):
        with self._lock:
            c = self._live(cluster_id)
            self._require_idle(c, "configure autoscale")
            count = sum(w.get("count") or 0 for w in self._workers(c))
            if count:
                raise _bad(f"cluster {c.name} ({c.id}) has {count} workers: workers and "
                           "autoscale are exclusive; remove the workers first")

            def apply(c):
                c.spec["autoscale"] = copy.deepcopy(autoscale)
            c.begin(UPDATE, {1: apply})

    def disable_autoscale(self, cluster_id):
        with self._lock:
            c = self._live(cluster_id)
            self._require_idle(c, "disable autoscale")
            if not c.spec.get("autoscale"):
                raise _bad(f"cluster {c.name} ({c.id}) has no autoscale to disable")
            c.begin(UPDATE, {1: lambda c: c.spec.pop("autoscale", None)})

    def set_ports(self, cluster_id, ports):
        with self._lock:
            c = self._live(cluster_id)
            self._require_idle(c, "open or close ports")
            c.begin(UPDATE, {1: lambda c: setattr(c, "ports", dict(ports))})

    def upgrade(self, cluster_id, version, account):
        with self._lock:
            c = self._live(cluster_id)
            self._require_idle(c, "upgrade it")
            current = c.spec.get("version") or DEFAULT_VERSION
            catalogue = self._versions()
            entry = next((v for v in catalogue if v["version"] == version), None)
            if entry is None:
                raise _bad(f"version {version} is not a supported Hopsworks version (supported: "
                           f"{', '.join(v['version'] for v in catalogue)})")
            if entry["upgradableFromVersion"] != current:
                raise _bad(f"cluster {c.name} ({c.id}) runs {current}: version {version} can "
                           f"only be upgraded to from {entry['upgradableFromVersion'] or 'none'}")
            registry = c.spec.get("ecrRegistryAccountId") or ""
            if registry and _version_key(version) > (3, 0, 0):
                if account is None:
                    raise _bad(f"dockerRegistryAccount is required: the cluster's "
                               f"ecrRegistryAccountId is {registry}")
                if account != registry:
                    raise _bad(f"dockerRegistryAccount {account} differs from the cluster's "
                               f"ecrRegistryAccountId {registry} (it cannot change)")
            move = {"from": current, "to": version}
            fail_with = self._behaviour["fail_upgrade_with"]

            def begin(c):
                c.upgrade, c.last_upgrade = dict(move), dict(move)

            def done(c):
                c.spec["version"], c.upgrade = move["to"], None

            if fail_with:
                c.begin(UPGRADE_THEN_FAIL,
                        {0: begin, 2: lambda c: setattr(c, "error_text", fail_with)})
            else:
                c.begin(UPGRADE, {0: begin, len(UPGRADE) - 1: done})

    def rollback(self, cluster_id):
        with self._lock:
            c = self._live(cluster_id)
            move = c.last_upgrade
            if move is None:
                raise _bad(f"cluster {c.name} ({c.id}) has no upgrade to roll back")
            failed = c.state == "error" and c.upgrade is not None and not c.deleting
            if not failed:
                self._require_idle(c, "roll back its upgrade")

            def done(c):
                c.spec["version"] = move["from"]
                c.upgrade = c.last_upgrade = c.error_text = None
            c.begin(RESTART, {len(RESTART) - 1: done})

    def modify_instance_type(self, cluster_id, node_type, instance_type):
        with self._lock:
            c = self._live(cluster_id)
            self._require_idle(c, "change an instance type")
            config = c.spec.setdefault("clusterConfiguration", {})
            if node_type == "head":
                node = config.setdefault("head", {})
            else:
                ron = c.spec.get("ronDB")
                if not isinstance(ron, dict):
                    raise _bad(f"cluster {c.name} ({c.id}) has no RonDB configuration: "
                               f"nodeType {node_type} does not apply")
                if (node_type == "rondb_aio") != bool(ron.get("allInOne")):
                    raise _bad(f"nodeType {node_type} does not apply to cluster {c.name}: its "
                               f"RonDB is {'' if ron.get('allInOne') else 'not '}all-in-one"
                               f"{' (use rondb_aio)' if ron.get('allInOne') else ''}")
                node = ron.get(NODE_TYPES[node_type])
                if not isinstance(node, dict) or (node.get("count") or 0) < 1:
                    raise _bad(f"cluster {c.name} ({c.id}) has no {node_type} nodes")
            if node.get("instanceType") == instance_type:
                raise _bad(f"the {node_type} of cluster {c.name} ({c.id}) is already "
                           f"{instance_type}")
            c.begin(RESTART, {len(RESTART) - 1:
                              lambda c: node.__setitem__("instanceType", instance_type)})

    def versions(self):
        with self._lock:
            return self._versions()

    # --- Backups and restore (API side) ---------------------------------------------------------

    def create_backup(self, cluster_id, name):
        with self._lock:
            c = self._clusters.get(cluster_id)
            if c is None or c.gone:
                raise _bad(f"no cluster {cluster_id}: backup.clusterId must name a cluster")
            same = next((b for b in self._backups.values() if b.cluster_id == c.id
                         and b.name == name and not b.deleted), None)
            if same is not None:
                raise _bad(f"cluster {c.name} ({c.id}) already has a backup named {name} "
                           f"({same.id})")
            self._require_idle(c, "back it up")
            fail_with = self._behaviour["fail_next_backup_with"]
            self._behaviour["fail_next_backup_with"] = None  # one-shot
            b = Backup(str(uuid.uuid4()), name, c.id, int(time.time()),
                       {"spec": copy.deepcopy(c.spec), "ports": dict(c.ports)}, "api",
                       fail_with)
            self._backups[b.id] = b
            return b.id

    def get_backup(self, backup_id):
        """The backup as GET shows it, after counting this GET as a poll (state changes)."""
        with self._lock:
            b = self._backup(backup_id)
            if b.state == BACKUP_PENDING and b.seen >= self._behaviour["polls_per_state"]:
                b.state = BACKUP_FAILED if b.fail_with else BACKUP_SUCCEED
                b.seen = 0
            b.seen += 1
            b.gets += 1
            return b.view()

    def list_backups(self, cluster_id):
        with self._lock:
            return [b.view() for b in self._backups.values()
                    if not b.deleted and cluster_id in (None, b.cluster_id)]

    def delete_backup(self, backup_id):
        with self._lock:
            b = self._backup(backup_id)
            if b.state == BACKUP_PENDING:
                raise _bad(f"backup {b.name} ({b.id}) is still pending: delete it once it has "
                           "finished")
            b.deleted = True

    def restore(self, backup_id, overrides):
        """A new cluster from a backup's snapshot, `overrides` (validate_restore's) on top."""
        with self._lock:
            b = self._backup(backup_id)
            if b.state != BACKUP_SUCCEED:
                raise _bad(f"backup {b.name} ({b.id}) is {b.state}: only a backup in state "
                           f"{BACKUP_SUCCEED} can be restored")
            spec = copy.deepcopy(b.snapshot["spec"])
            spec.update(copy.deepcopy(overrides))
            validate_create({"cloudProvider": "AWS", "cluster": spec})
            self._check_name(spec["name"])
            self._check_eks(spec)
            fail_with = self._behaviour["fail_next_with"]
            self._behaviour["fail_next_with"] = None  # one-shot, as for a create
            c = self._new_cluster(spec, "api", BOOT_THEN_FAIL if fail_with else BOOT, fail_with)
            c.ports, c.restored_from = dict(b.snapshot["ports"]), b.id
            return c.id

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

    def _live(self, cluster_id):
        c = self._clusters.get(cluster_id)
        if c is None or c.gone:
            raise _not_found()
        return c

    def _backup(self, backup_id):
        b = self._backups.get(backup_id)
        if b is None or b.deleted:
            raise _no_backup()
        return b

    def _pending_backup(self, c):
        return next((b for b in self._backups.values() if b.cluster_id == c.id
                     and not b.deleted and b.state == BACKUP_PENDING), None)

    def _shown_state(self, c):
        return c.state if not c.delete_lag else f"{SHUTTING_DOWN} (requested)"

    def _require_idle(self, c, what):
        """400 unless the cluster is running with nothing else under way."""
        if c.deleting:
            raise _bad(f"cluster {c.name} ({c.id}) is being deleted: cannot {what}")
        if c.state != "running" or c.busy:
            shown = "upgrading" if c.upgrade else (
                "updating" if c.state == "running" else c.state)
            raise _bad(f"cluster {c.name} ({c.id}) is {shown}, not running: to {what} it must "
                       "be running with no operation under way; wait until it is")
        pending = self._pending_backup(c)
        if pending is not None:
            raise _bad(f"cluster {c.name} ({c.id}) has a backup in progress ({pending.id}): "
                       f"to {what} wait until the backup has finished")

    def _workers(self, c):
        return (c.spec.get("clusterConfiguration") or {}).get("workers") or []

    def _versions(self):
        return copy.deepcopy(self._behaviour["versions"] or DEFAULT_VERSIONS)

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
            if not c.ecr:  # the first time it runs
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
                "activationState": ACTIVATION.get(state, "terminable"),
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
        view["ports"] = dict(c.ports)
        for key in ("ronDB", "autoscale"):
            if s.get(key) is not None:
                view[key] = s[key]
        if c.upgrade is not None:
            view["upgradeInProgress"] = dict(c.upgrade)
        view["backupPipelineInProgress"] = self._pending_backup(c) is not None
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
            "ecr": copy.deepcopy(c.ecr) or None, "restored_from": c.restored_from,
            "last_upgrade": copy.deepcopy(c.last_upgrade)}
        return view

    def _backup_control_view(self, b):
        view = b.view()
        view["bench"] = {"origin": b.origin, "gets": b.gets, "deleted": b.deleted,
                         "snapshot": copy.deepcopy(b.snapshot)}
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
        if path.endswith("/") or parts[:1] != ["api"]:
            raise ApiError(404, f"no such endpoint: {path}")
        if parts[1:2] == ["backups"]:
            return self._route_backups(double, method, path, parts[2:], query, raw)
        if parts[1:2] != ["clusters"]:
            raise ApiError(404, f"no such endpoint: {path}")
        rest = parts[2:]
        if not rest:
            if method == "GET":
                cloud = parse_qs(query).get("cloud", [None])[0]
                return _ok({"clusters": double.list(cloud)})
            if method == "POST":
                return _ok({"id": double.create(self._json_body(raw))})
            raise _not_allowed(method, path)
        if rest == ["hopsworks", "versions", "AWS"]:
            if method != "GET":
                raise _not_allowed(method, path)
            return _ok({"versions": double.versions()})
        if rest == ["nodes", "supported-types"]:
            if method != "GET":
                raise _not_allowed(method, path)
            cloud = parse_qs(query).get("cloud", [None])[0]
            if cloud != "AWS":
                raise _bad(f"cloud must be AWS, got {cloud!r}")
            return _ok(copy.deepcopy(SUPPORTED_TYPES))
        if len(rest) == 2 and rest[0] == "restore":
            if method != "POST":
                raise _not_allowed(method, path)
            overrides = validate_restore(self._json_body(raw))
            return _ok({"id": double.restore(rest[1], overrides)})
        cluster_id, suffix = rest[0], "/".join(rest[1:])
        if not suffix:
            if method == "GET":
                return _ok({"cluster": double.get(cluster_id)})
            if method == "DELETE":
                double.delete(cluster_id)
                return _ok()
            raise _not_allowed(method, path)
        routes = {
            ("PUT", "stop"): lambda: double.stop_cluster(cluster_id),
            ("PUT", "start"): lambda: double.start_cluster(cluster_id),
            ("POST", "workers"): lambda: double.add_workers(
                cluster_id, validate_workers(self._json_body(raw))),
            ("DELETE", "workers"): lambda: double.remove_workers(
                cluster_id, validate_workers(self._json_body(raw))),
            ("POST", "autoscale"): lambda: double.set_autoscale(
                cluster_id, validate_autoscale(_body(self._json_body(raw), "autoscale",
                                                     ("nonGpu", "gpu")))),
            ("DELETE", "autoscale"): lambda: double.disable_autoscale(cluster_id),
            ("POST", "ports"): lambda: double.set_ports(
                cluster_id, validate_ports(self._json_body(raw))),
            ("POST", "upgrade"): lambda: double.upgrade(
                cluster_id, *validate_upgrade(self._json_body(raw))),
            ("PUT", "upgrade/rollback"): lambda: double.rollback(cluster_id),
            ("PUT", "nodes/modify-instance-type"): lambda: double.modify_instance_type(
                cluster_id, *validate_node_info(self._json_body(raw))),
        }
        action = routes.get((method, suffix))
        if action is None:
            if any(s == suffix for _, s in routes):
                raise _not_allowed(method, path)
            raise ApiError(404, f"no such endpoint: {path}")
        action()
        return _ok()

    def _route_backups(self, double, method, path, rest, query, raw):
        if not rest:
            if method == "GET":
                cluster_id = parse_qs(query).get("clusterId", [None])[0]
                return _ok({"backups": double.list_backups(cluster_id)})
            if method == "POST":
                return _ok({"backupId": double.create_backup(
                    *validate_backup(self._json_body(raw)))})
            raise _not_allowed(method, path)
        if len(rest) == 1:
            if method == "GET":
                return _ok({"backup": double.get_backup(rest[0])})
            if method == "DELETE":
                double.delete_backup(rest[0])
                return _ok()
            raise _not_allowed(method, path)
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
