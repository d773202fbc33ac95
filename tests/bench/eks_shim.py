"""EKS access entries and `accessConfig`, which moto 5.2.5 lacks, in front of moto's own app.

moto answers the access-entry operations with a bare 404 and never returns
`cluster.accessConfig`. `EksShim` is WSGI middleware wrapped around moto's app in
the same server: it answers the operations below itself, following the EKS API
reference (REST-JSON; errors as the `x-amzn-ErrorType` header plus a JSON body
`{"message": ...}`), and forwards every other request to moto untouched.

    CreateAccessEntry            POST   /clusters/{name}/access-entries
    ListAccessEntries            GET    /clusters/{name}/access-entries
    DescribeAccessEntry          GET    /clusters/{name}/access-entries/{principalArn}
    DeleteAccessEntry            DELETE /clusters/{name}/access-entries/{principalArn}
    AssociateAccessPolicy        POST   /clusters/{name}/access-entries/{principalArn}/access-policies
    ListAssociatedAccessPolicies GET    /clusters/{name}/access-entries/{principalArn}/access-policies
    DisassociateAccessPolicy     DELETE /clusters/{name}/access-entries/{principalArn}/access-policies/{policyArn}
    TagResource                  POST   /tags/{accessEntryArn}
    UntagResource                DELETE /tags/{accessEntryArn}?tagKeys=...
    ListTagsForResource          GET    /tags/{accessEntryArn}
    DescribeCluster              GET    /clusters/{name}   (moto's answer, plus accessConfig)

Tags are checked as EKS checks them (keys of 1 to 128 characters not starting with `aws:`,
values of at most 256, both of letters, digits, spaces and `_ . : / = + - @` only, at most 50),
so a value EKS would refuse is refused here too. The tag operations on other ARNs (clusters) go
to moto.

CreateCluster, CreateNodegroup and DeleteCluster go to moto; when moto succeeds, the shim's
`service` (an `eks_service.EksService`) does what EKS does besides (the cluster security group, a
Kubernetes API, accessConfig, the node role's access).

The state (authentication mode and access entries per cluster) lives in an
`AccessStore`, which the Kubernetes API doubles read to map callers, and the bench's
control API writes (the authentication mode).
"""

import base64
import copy
import io
import json
import logging
import re
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote

from moto.eks.models import eks_backends
from moto.iam.models import get_account_id_from, iam_backends
from moto.sts.models import sts_backends

log = logging.getLogger("bench.eks_shim")

AUTH_MODES = ("CONFIG_MAP", "API_AND_CONFIG_MAP", "API")
# The modes in which access entries exist and count.
API_MODES = ("API_AND_CONFIG_MAP", "API")

POLICY_ARN_PREFIX = "arn:aws:eks::aws:cluster-access-policy/"
ACCESS_POLICY_NAMES = (
    "AmazonEKSClusterAdminPolicy",
    "AmazonEKSAdminPolicy",
    "AmazonEKSEditPolicy",
    "AmazonEKSViewPolicy",
)
CLUSTER_ADMIN_POLICY_ARN = POLICY_ARN_PREFIX + "AmazonEKSClusterAdminPolicy"

ENTRY_TYPES = ("STANDARD", "EC2_LINUX", "EC2_WINDOWS", "FARGATE_LINUX", "EC2",
               "HYBRID_LINUX", "HYPERPOD_LINUX")
# Usernames (and groups) EKS keeps for itself.
RESERVED_PREFIXES = ("system:", "eks:", "aws:", "amazon:", "iam:")

MODE_REQUIRED = ("The cluster's authentication mode must be set to one of "
                 "[API, API_AND_CONFIG_MAP] to perform this operation.")
ENTRY_IN_USE = "The specified access entry resource is already in use on this cluster."
ENTRY_NOT_FOUND = ("The specified principalArn could not be found. You can view your "
                   "available access entries with 'list-access-entries'.")

# What EKS accepts in tag keys and values besides letters, digits and spaces.
TAG_PUNCTUATION = "_.:/=+-@"
MAX_TAGS = 50

# arn:aws:iam::123456789012:role/some/path/Name -> (account, kind, path, name)
_IAM_ARN = re.compile(r"^arn:aws:iam::(\d{12}):(role|user)(/(?:[^/]+/)*)([\w+=,.@-]{1,128})$")


class EksApiError(Exception):
    def __init__(self, status, error_type, message):
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def not_found(message):
    return EksApiError(404, "ResourceNotFoundException", message)


def invalid_parameter(message):
    return EksApiError(400, "InvalidParameterException", message)


# --- IAM principals, looked up in moto's own IAM backend --------------------------------------


@dataclass(frozen=True)
class IamPrincipal:
    account: str
    kind: str  # "role" or "user"
    name: str
    path: str
    id: str  # RoleId / UserId: what EKS binds an entry to (a recreated role is another principal)

    @property
    def key(self):
        """Same key whether the ARN was written with the path or without it."""
        return (self.account, self.kind, self.name)


def parse_iam_arn(arn):
    """(account, kind, path, name) of an IAM role or user ARN, or None."""
    m = _IAM_ARN.match(arn or "")
    return (m.group(1), m.group(2), m.group(3), m.group(4)) if m else None


def find_iam_principal(account, kind, name):
    """The role or user `name` of `account` in moto's IAM backend, or None."""
    if account not in iam_backends:  # do not let the lookup create an account
        return None
    iam = iam_backends[account]["aws"]
    if kind == "role":
        # list(): a request thread may be adding a role right now.
        found = next((r for r in list(iam.roles.values()) if r.name == name), None)
    else:
        found = iam.users.get(name)
    if found is None:
        return None
    return IamPrincipal(account, kind, found.name, found.path, found.id)


def resolve_principal_arn(arn):
    """The existing IAM principal an access entry's ARN names (with or without the role's
    path), or an InvalidParameterException."""
    if (arn or "").startswith("arn:aws:sts::"):
        raise invalid_parameter(
            f"The specified principalArn is invalid: {arn}. STS session principals "
            "can't be used with access entries; use the IAM role's ARN.")
    parsed = parse_iam_arn(arn)
    if parsed is None:
        raise invalid_parameter(f"The specified principalArn is invalid: {arn}.")
    account, kind, path, name = parsed
    principal = find_iam_principal(account, kind, name)
    # An ARN that spells out a path must spell out the principal's own.
    if principal is None or (path != "/" and path != principal.path):
        raise invalid_parameter(
            f"The specified principalArn is invalid: {arn}. The IAM {kind} does not exist.")
    return principal


# --- The store -------------------------------------------------------------------------------


@dataclass
class AccessEntry:
    cluster_name: str
    principal_arn: str  # as the caller wrote it
    principal: IamPrincipal
    username: str
    groups: list
    type: str
    tags: dict
    arn: str
    client_request_token: str | None
    created_at: float
    modified_at: float
    policies: dict = field(default_factory=dict)  # policyArn -> AssociatedAccessPolicy JSON

    def to_json(self):
        return {
            "clusterName": self.cluster_name, "principalArn": self.principal_arn,
            "kubernetesGroups": list(self.groups), "accessEntryArn": self.arn,
            "createdAt": self.created_at, "modifiedAt": self.modified_at,
            "tags": dict(self.tags), "username": self.username, "type": self.type,
        }

    @property
    def is_cluster_admin(self):
        policy = self.policies.get(CLUSTER_ADMIN_POLICY_ARN)
        return policy is not None and policy["accessScope"]["type"] == "cluster"


@dataclass
class ClusterAccess:
    mode: str | None = None  # None: no accessConfig at all (an older cluster: CONFIG_MAP)
    creator_arn: str | None = None
    bootstrapped: bool = False
    entries: dict = field(default_factory=dict)  # IamPrincipal.key -> AccessEntry, in creation order


class AccessStore:
    """Authentication mode and access entries per cluster, keyed by the cluster's ARN.

    One lock guards everything; it is never held while calling out.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._clusters = {}
        self._faults = {}  # cluster ARN -> [{operation, status, error, message, times}]

    def _cluster(self, cluster_arn):
        return self._clusters.setdefault(cluster_arn, ClusterAccess())

    def set_creator(self, cluster_arn, creator_arn):
        with self._lock:
            self._cluster(cluster_arn).creator_arn = creator_arn

    def creator(self, cluster_arn):
        with self._lock:
            return self._cluster(cluster_arn).creator_arn

    def mode(self, cluster_arn):
        with self._lock:
            return self._cluster(cluster_arn).mode

    def set_mode(self, cluster_arn, mode):
        """Set (or, with None, remove) the cluster's authentication mode.

        The first time a cluster enters an API mode its creator gets an access entry with
        AmazonEKSClusterAdminPolicy, as EKS does with bootstrapClusterCreatorAdminPermissions.
        """
        if mode is not None and mode not in AUTH_MODES:
            raise ValueError(f"authentication mode must be one of {AUTH_MODES} or null")
        creator = None
        with self._lock:
            c = self._cluster(cluster_arn)
            c.mode = mode
            if mode in API_MODES and not c.bootstrapped and c.creator_arn:
                creator = c.creator_arn
        if creator:
            account, region, name = _split_cluster_arn(cluster_arn)
            principal = resolve_principal_arn(creator)
            now = time.time()
            entry = _new_entry(name, region, account, creator, principal, None, [],
                               "STANDARD", {}, None, now)
            entry.policies[CLUSTER_ADMIN_POLICY_ARN] = {
                "policyArn": CLUSTER_ADMIN_POLICY_ARN,
                "accessScope": {"type": "cluster", "namespaces": []},
                "associatedAt": now, "modifiedAt": now}
            with self._lock:
                c = self._cluster(cluster_arn)
                if not c.bootstrapped:
                    c.entries.setdefault(principal.key, entry)
                    c.bootstrapped = True

    def entry_for(self, cluster_arn, principal):
        """A copy of the entry that grants `principal` (an IamPrincipal) access, or None.

        Matched by the principal's id as well as its name: an entry made for a role that
        was deleted and recreated since no longer works, as in EKS."""
        with self._lock:
            entry = self._cluster(cluster_arn).entries.get(principal.key)
            if entry is None or entry.principal.id != principal.id:
                return None
            return copy.deepcopy(entry)

    # Used by the shim; each runs under the lock and raises EksApiError.

    # Faults, injected by the bench through a cluster's Kubernetes API double (its control route).

    def add_fault(self, cluster_arn, spec):
        """`{"operation": "DescribeAccessEntry", "status"?: 404, "error"?: "...", "message"?,
        "times"?: 1}`: the next `times` calls of that operation on this cluster fail so."""
        operation = spec.get("operation")
        if not isinstance(operation, str) or not operation:
            raise ValueError("an eks fault needs an operation, e.g. DescribeAccessEntry")
        times = int(spec.get("times", 1))
        if times < 1:
            raise ValueError("times must be at least 1")
        status = int(spec.get("status") or 500)
        error = spec.get("error") or ("ResourceNotFoundException" if status == 404
                                      else "ServerException")
        message = spec.get("message") or (ENTRY_NOT_FOUND if status == 404
                                          else "Injected by the bench.")
        with self._lock:
            self._faults.setdefault(cluster_arn, []).append(
                {"operation": operation, "status": status, "error": error, "message": message,
                 "times": times})

    def clear_faults(self, cluster_arn):
        with self._lock:
            self._faults.pop(cluster_arn, None)

    def take_fault(self, cluster_arn, operation):
        """The EksApiError to answer this call with, if a fault is due."""
        with self._lock:
            for fault in self._faults.get(cluster_arn, []):
                if fault["operation"] == operation:
                    fault["times"] -= 1
                    if fault["times"] == 0:
                        self._faults[cluster_arn].remove(fault)
                    return EksApiError(fault["status"], fault["error"], fault["message"])
        return None

    # Tags on access entries, by the entry's ARN.

    def _entry_by_arn(self, arn):  # lock held
        for c in self._clusters.values():
            for entry in c.entries.values():
                if entry.arn == arn:
                    return entry
        raise EksApiError(404, "NotFoundException", f"Resource {arn} was not found.")

    def tag(self, arn, tags):
        with self._lock:
            entry = self._entry_by_arn(arn)
            merged = {**entry.tags, **tags}
            if len(merged) > MAX_TAGS:
                raise EksApiError(400, "BadRequestException",
                                  f"An access entry can have at most {MAX_TAGS} tags.")
            entry.tags = merged

    def untag(self, arn, keys):
        with self._lock:
            entry = self._entry_by_arn(arn)
            for key in keys:
                entry.tags.pop(key, None)

    def tags_of(self, arn):
        with self._lock:
            return dict(self._entry_by_arn(arn).tags)

    def require_api_mode(self, cluster_arn):
        with self._lock:
            if self._cluster(cluster_arn).mode not in API_MODES:
                raise EksApiError(400, "InvalidRequestException", MODE_REQUIRED)

    def create_entry(self, cluster_arn, body, principal):
        account, region, name = _split_cluster_arn(cluster_arn)
        with self._lock:
            c = self._cluster(cluster_arn)
            if c.mode not in API_MODES:
                raise EksApiError(400, "InvalidRequestException", MODE_REQUIRED)
            existing = c.entries.get(principal.key)
            if existing is not None:
                token = body.get("clientRequestToken")
                if token and token == existing.client_request_token:
                    return existing.to_json()  # an idempotent retry
                raise EksApiError(409, "ResourceInUseException", ENTRY_IN_USE)
            entry = _new_entry(name, region, account, body["principalArn"], principal,
                               body.get("username"), body.get("kubernetesGroups") or [],
                               body.get("type") or "STANDARD", body.get("tags") or {},
                               body.get("clientRequestToken"), time.time())
            c.entries[principal.key] = entry
            return entry.to_json()

    def _entry(self, cluster_arn, principal_arn):
        c = self._cluster(cluster_arn)
        if c.mode not in API_MODES:
            raise EksApiError(400, "InvalidRequestException", MODE_REQUIRED)
        key = _entry_key(principal_arn)
        entry = c.entries.get(key) if key else None
        if entry is None:
            raise not_found(ENTRY_NOT_FOUND)
        return entry

    def describe_entry(self, cluster_arn, principal_arn):
        with self._lock:
            return self._entry(cluster_arn, principal_arn).to_json()

    def delete_entry(self, cluster_arn, principal_arn):
        with self._lock:
            entry = self._entry(cluster_arn, principal_arn)
            # Its policy associations go with it.
            del self._cluster(cluster_arn).entries[entry.principal.key]

    def list_entries(self, cluster_arn, policy_arn=None):
        with self._lock:
            c = self._cluster(cluster_arn)
            if c.mode not in API_MODES:
                raise EksApiError(400, "InvalidRequestException", MODE_REQUIRED)
            return [e.principal_arn for e in c.entries.values()
                    if policy_arn is None or policy_arn in e.policies]

    def associate(self, cluster_arn, principal_arn, policy_arn, scope):
        with self._lock:
            entry = self._entry(cluster_arn, principal_arn)
            if entry.type != "STANDARD":
                raise EksApiError(400, "InvalidRequestException",
                                  f"Access policies can't be associated with an access entry "
                                  f"of type {entry.type}.")
            now = time.time()
            old = entry.policies.get(policy_arn)
            entry.policies[policy_arn] = policy = {
                "policyArn": policy_arn, "accessScope": scope,
                "associatedAt": old["associatedAt"] if old else now, "modifiedAt": now}
            entry.modified_at = now
            return copy.deepcopy(policy)

    def associated_policies(self, cluster_arn, principal_arn):
        with self._lock:
            return copy.deepcopy(list(self._entry(cluster_arn, principal_arn).policies.values()))

    def disassociate(self, cluster_arn, principal_arn, policy_arn):
        with self._lock:
            entry = self._entry(cluster_arn, principal_arn)
            # EKS answers 200 for a policy that was not associated.
            if entry.policies.pop(policy_arn, None) is not None:
                entry.modified_at = time.time()


def _split_cluster_arn(cluster_arn):
    # arn:aws:eks:REGION:ACCOUNT:cluster/NAME
    parts = cluster_arn.split(":", 5)
    return parts[4], parts[3], parts[5].split("/", 1)[1]


def _entry_key(principal_arn):
    parsed = parse_iam_arn(principal_arn)
    return (parsed[0], parsed[1], parsed[3]) if parsed else None


def _new_entry(cluster, region, account, principal_arn, principal, username, groups, type_,
               tags, token, now):
    if username is None:
        if type_ == "STANDARD":
            # What EKS picks: the session ARN template for a role (no path), the ARN for a user.
            username = (f"arn:aws:sts::{principal.account}:assumed-role/{principal.name}"
                        "/{{SessionName}}" if principal.kind == "role" else principal_arn)
        else:
            username = "system:node:{{EC2PrivateDNSName}}"
    arn = (f"arn:aws:eks:{region}:{account}:access-entry/{cluster}/{principal.kind}/"
           f"{principal.account}/{principal.name}/{uuid.uuid4()}")
    return AccessEntry(cluster, principal_arn, principal, username, list(groups), type_,
                       dict(tags), arn, token, now, now)


# --- The middleware ---------------------------------------------------------------------------


_CREDENTIAL = re.compile(r"Credential=[^/,\s]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


class EksShim:
    """WSGI middleware: the EKS operations moto lacks, answered here; the rest, moto's."""

    def __init__(self, store=None):
        self.store = store or AccessStore()
        self.app = None
        # EKS's side effects of creating and deleting clusters (eks_service.EksService), or None.
        self.service = None
        self._records = []
        self._records_lock = threading.Lock()

    def wrap(self, app):
        self.app = app
        return self

    def records(self):
        with self._records_lock:
            return list(self._records)

    def clear_records(self):
        with self._records_lock:
            self._records.clear()

    def _record(self, operation, cluster, principal, status, error=None):
        with self._records_lock:
            self._records.append({"operation": operation, "cluster": cluster,
                                  "principal": principal, "status": status, "error": error})

    # Routing

    def __call__(self, environ, start_response):
        lifecycle = self._lifecycle_route(environ)
        if lifecycle is not None and self.service is not None:
            return self._lifecycle(environ, start_response, *lifecycle)
        tags = self._tags_route(environ)
        if tags is not None:
            return self._tags(environ, start_response, *tags)
        route = self._route(environ)
        if route is None:
            return self.app(environ, start_response)
        operation, segments, region, account = route
        if operation == "DescribeCluster":
            return self._describe_cluster(environ, start_response, segments[1], region, account)
        cluster = segments[1]
        principal = segments[3] if len(segments) > 3 else None
        try:
            body = _read_json(environ) if environ["REQUEST_METHOD"] == "POST" else {}
            if operation == "CreateAccessEntry":
                principal = body.get("principalArn") if isinstance(body, dict) else None
            status, payload = self._dispatch(operation, segments, body, region, account,
                                             parse_qs(environ.get("QUERY_STRING", "")))
            self._record(operation, cluster, principal, status)
            return _respond(start_response, status, payload)
        except EksApiError as e:
            self._record(operation, cluster, principal, e.status, e.error_type)
            return _respond(start_response, e.status, {"message": e.message}, e.error_type)
        except Exception:  # a bug here must not look like an answer from EKS
            log.exception("EKS shim: %s failed", operation)
            self._record(operation, cluster, principal, 500, "ServerException")
            return _respond(start_response, 500, {"message": "Internal failure in the bench's "
                                                  "EKS shim (see its stderr)."}, "ServerException")

    def _route(self, environ):
        """(operation, path segments, region, account) for a request to intercept, else None."""
        scope = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if scope is None or scope.group(2) != "eks":
            return None
        # Split the raw path: PATH_INFO has %2F decoded, which would split principal ARNs.
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        segments = [unquote(s) for s in raw.split("?", 1)[0].split("/")[1:]]
        method, n = environ["REQUEST_METHOD"], len(segments)
        if n < 2 or segments[0] != "clusters" or (n > 2 and segments[2] != "access-entries"):
            return None
        if n > 4 and segments[4] != "access-policies":
            return None
        operation = {
            (2, "GET"): "DescribeCluster",
            (3, "POST"): "CreateAccessEntry", (3, "GET"): "ListAccessEntries",
            (4, "GET"): "DescribeAccessEntry", (4, "DELETE"): "DeleteAccessEntry",
            (5, "POST"): "AssociateAccessPolicy", (5, "GET"): "ListAssociatedAccessPolicies",
            (6, "DELETE"): "DisassociateAccessPolicy",
        }.get((n, method))
        if operation is None:
            return None
        # The account moto files this caller's requests under.
        access_key = re.search(r"Credential=([^/]+)/", environ["HTTP_AUTHORIZATION"]).group(1)
        return operation, segments, scope.group(1), get_account_id_from(access_key)

    def _tags_route(self, environ):
        """(operation, access entry ARN) for the tag operations on an access entry, else None
        (tags of a cluster are moto's)."""
        scope = _CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
        if scope is None or scope.group(2) != "eks":
            return None
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        segments = [unquote(s) for s in raw.split("?", 1)[0].split("/")[1:]]
        if len(segments) != 2 or segments[0] != "tags" or ":access-entry/" not in segments[1]:
            return None
        operation = {"POST": "TagResource", "DELETE": "UntagResource",
                     "GET": "ListTagsForResource"}.get(environ["REQUEST_METHOD"])
        return (operation, segments[1]) if operation else None

    def _tags(self, environ, start_response, operation, arn):
        try:
            if operation == "TagResource":
                body = _read_json(environ)
                tags = body.get("tags")
                if not isinstance(tags, dict) or not tags:
                    raise EksApiError(400, "BadRequestException", "tags is required.")
                _validate_tags(tags, "BadRequestException")
                self.store.tag(arn, tags)
                payload = {}
            elif operation == "UntagResource":
                keys = parse_qs(environ.get("QUERY_STRING", "")).get("tagKeys", [])
                if not keys:
                    raise EksApiError(400, "BadRequestException", "tagKeys is required.")
                self.store.untag(arn, keys)
                payload = {}
            else:
                payload = {"tags": self.store.tags_of(arn)}
            self._record(operation, None, arn, 200)
            return _respond(start_response, 200, payload)
        except EksApiError as e:
            self._record(operation, None, arn, e.status, e.error_type)
            return _respond(start_response, e.status, {"message": e.message}, e.error_type)

    def _lifecycle_route(self, environ):
        """(operation, cluster name, region, account, access key) for CreateCluster,
        CreateNodegroup and DeleteCluster, else None."""
        auth = environ.get("HTTP_AUTHORIZATION", "")
        scope = _CREDENTIAL.search(auth)
        if scope is None or scope.group(2) != "eks":
            return None
        segments = environ.get("PATH_INFO", "").strip("/").split("/")
        operation = {
            (1, "POST"): "CreateCluster", (2, "DELETE"): "DeleteCluster",
            (3, "POST"): "CreateNodegroup",
        }.get((len(segments), environ["REQUEST_METHOD"]))
        if segments[0] != "clusters" or operation is None:
            return None
        if operation == "CreateNodegroup" and segments[2] != "node-groups":
            return None
        access_key = re.search(r"Credential=([^/]+)/", auth).group(1)
        name = segments[1] if len(segments) > 1 else None
        return operation, name, scope.group(1), get_account_id_from(access_key), access_key

    def _lifecycle(self, environ, start_response, operation, name, region, account, access_key):
        """moto's answer; then, if it succeeded, what EKS does besides."""
        try:
            body = _read_json(environ) if operation != "DeleteCluster" else {}
        except EksApiError as e:
            return _respond(start_response, e.status, {"message": e.message}, e.error_type)
        arn = None
        if operation == "DeleteCluster":
            cluster = eks_backends.get(account, {}).get(region)
            found = cluster.clusters.get(name) if cluster is not None else None
            arn = found.arn if found is not None else None
        status, headers, payload = self._forward(environ)
        if status.startswith("200"):
            try:
                if operation == "CreateCluster":
                    self.service.cluster_created(account, region, body, caller_arn(access_key))
                elif operation == "CreateNodegroup":
                    self.service.nodegroup_created(account, region, name, body)
                elif arn is not None:
                    self.service.cluster_deleted(arn, name)
            except Exception:  # a bug here must not look like an answer from EKS
                log.exception("EKS shim: completing %s failed", operation)
                return _respond(start_response, 500, {"message": "Internal failure in the "
                                "bench's EKS service (see its stderr)."}, "ServerException")
        self._record(operation, name or body.get("name"), None, int(status.split()[0]))
        start_response(status, headers)
        return [payload]

    def _forward(self, environ):
        """moto's (status, headers, body) for the request."""
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None  # moto's Flask app never uses write()

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        return captured["status"], captured["headers"], body

    def _cluster_arn(self, name, region, account):
        if account not in eks_backends:
            raise not_found(f"No cluster found for name: {name}.")
        cluster = eks_backends[account][region].clusters.get(name)
        if cluster is None:
            raise not_found(f"No cluster found for name: {name}.")
        return cluster.arn

    def _dispatch(self, operation, segments, body, region, account, query):
        name = segments[1]
        cluster_arn = self._cluster_arn(name, region, account)
        store = self.store
        fault = store.take_fault(cluster_arn, operation)
        if fault is not None:
            raise fault
        if operation == "CreateAccessEntry":
            # The cluster's mode first: in CONFIG_MAP mode nothing else matters.
            store.require_api_mode(cluster_arn)
            _validate_create(body)
            principal = resolve_principal_arn(body["principalArn"])
            return 200, {"accessEntry": store.create_entry(cluster_arn, body, principal)}
        if operation == "ListAccessEntries":
            policy = _one(query, "associatedPolicyArn")
            arns = store.list_entries(cluster_arn, policy)
            page, token = _paginate(arns, query)
            return 200, {"accessEntries": page, **({"nextToken": token} if token else {})}
        principal_arn = segments[3]
        if operation == "DescribeAccessEntry":
            return 200, {"accessEntry": store.describe_entry(cluster_arn, principal_arn)}
        if operation == "DeleteAccessEntry":
            store.delete_entry(cluster_arn, principal_arn)
            return 200, {}
        if operation == "AssociateAccessPolicy":
            policy_arn, scope = _validate_association(body)
            policy = store.associate(cluster_arn, principal_arn, policy_arn, scope)
            return 200, {"clusterName": name, "principalArn": principal_arn,
                         "associatedAccessPolicy": policy}
        if operation == "ListAssociatedAccessPolicies":
            page, token = _paginate(store.associated_policies(cluster_arn, principal_arn), query)
            return 200, {"clusterName": name, "principalArn": principal_arn,
                         "associatedAccessPolicies": page,
                         **({"nextToken": token} if token else {})}
        if operation == "DisassociateAccessPolicy":
            store.disassociate(cluster_arn, principal_arn, segments[5])
            return 200, {}
        raise AssertionError(operation)

    def _describe_cluster(self, environ, start_response, name, region, account):
        """moto's DescribeCluster, plus accessConfig for a cluster whose mode the bench set."""
        status, headers, body = self._forward(environ)
        code = int(status.split()[0])
        mode = None
        if code == 200:
            try:
                mode = self.store.mode(self._cluster_arn(name, region, account))
            except EksApiError:
                pass
        if mode is not None:
            doc = json.loads(body)
            doc["cluster"]["accessConfig"] = {
                "bootstrapClusterCreatorAdminPermissions": True, "authenticationMode": mode}
            body = json.dumps(doc).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        self._record("DescribeCluster", name, None, code)
        start_response(status, headers)
        return [body]


# --- Request validation and helpers -----------------------------------------------------------


def caller_arn(access_key):
    """The IAM role or user whose credentials `access_key` is, as EKS records a cluster's
    creator; None for keys that are neither (moto's default test credentials)."""
    for account in list(iam_backends.keys()):
        iam = iam_backends[account]["aws"]
        for user in list(iam.users.values()):
            if any(k.access_key_id == access_key for k in user.access_keys):
                return user.arn
    for account in list(sts_backends.keys()):
        session = sts_backends[account]["aws"].get_assumed_role_from_access_key(access_key)
        if session is not None:
            return session.role_arn  # EKS records the role, not the session
    return None


def _read_json(environ):
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise EksApiError(400, "SerializationException", "Could not parse the request body as JSON.")
    if not isinstance(body, dict):
        raise EksApiError(400, "SerializationException", "The request body must be a JSON object.")
    return body


def _is_str_list(value):
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _validate_create(body):
    arn = body.get("principalArn")
    if not isinstance(arn, str) or not arn:
        raise invalid_parameter("principalArn is required.")
    groups = body.get("kubernetesGroups")
    if groups is not None and not _is_str_list(groups):
        raise invalid_parameter("kubernetesGroups must be a list of strings.")
    for group in groups or []:
        if group.startswith("system:"):
            raise invalid_parameter(
                f"The kubernetes group name {group} is invalid, it cannot start with system:")
    username = body.get("username")
    if username is not None:
        if not isinstance(username, str) or not username:
            raise invalid_parameter("username must be a non-empty string.")
        for prefix in RESERVED_PREFIXES:
            if username.startswith(prefix):
                raise invalid_parameter(
                    f"The username {username} is invalid, it cannot start with {prefix}")
    type_ = body.get("type") or "STANDARD"
    if type_ not in ENTRY_TYPES:
        raise invalid_parameter(f"The access entry type {type_} is invalid. Valid types: "
                                f"{', '.join(ENTRY_TYPES)}.")
    if type_ != "STANDARD" and (groups or username):
        raise invalid_parameter(f"kubernetesGroups and username can't be set for an access "
                                f"entry of type {type_}.")
    tags = body.get("tags")
    if tags is not None:
        _validate_tags(tags, "InvalidParameterException")


def _tag_text_ok(text):
    """Letters, digits and spaces (any script, as `\\p{L}\\p{Z}\\p{N}`) and `_ . : / = + - @`."""
    return all(unicodedata.category(c)[0] in "LZN" or c in TAG_PUNCTUATION for c in text)


def _validate_tags(tags, error_type):
    """Tags as EKS accepts them, else the error EKS answers (with `error_type`)."""
    if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise EksApiError(400, error_type, "tags must be a map of strings.")
    if len(tags) > MAX_TAGS:
        raise EksApiError(400, error_type, f"A resource can have at most {MAX_TAGS} tags.")
    pattern = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"
    for key, value in tags.items():
        if not 1 <= len(key) <= 128 or not _tag_text_ok(key) or key.lower().startswith("aws:"):
            raise EksApiError(400, error_type, f"1 validation error detected: Value '{key}' at "
                              "'tags' failed to satisfy constraint: Map keys must satisfy "
                              "constraint: [Member must have length less than or equal to 128, "
                              f"Member must satisfy regular expression pattern: {pattern}]")
        if len(value) > 256 or not _tag_text_ok(value):
            raise EksApiError(400, error_type, f"1 validation error detected: Value '{value}' "
                              f"at 'tags.{key}' failed to satisfy constraint: Member must have "
                              "length less than or equal to 256, Member must satisfy regular "
                              f"expression pattern: {pattern}")


def _validate_association(body):
    policy_arn = body.get("policyArn")
    if not isinstance(policy_arn, str) or not policy_arn.startswith(POLICY_ARN_PREFIX) \
            or policy_arn[len(POLICY_ARN_PREFIX):] not in ACCESS_POLICY_NAMES:
        raise invalid_parameter(f"The specified policyArn is invalid: {policy_arn}. "
                                "Use ListAccessPolicies to see the available policies.")
    scope = body.get("accessScope")
    if not isinstance(scope, dict) or scope.get("type") not in ("cluster", "namespace"):
        raise invalid_parameter("accessScope.type must be one of [cluster, namespace].")
    namespaces = scope.get("namespaces") or []
    if not _is_str_list(namespaces):
        raise invalid_parameter("accessScope.namespaces must be a list of strings.")
    if scope["type"] == "namespace" and not namespaces:
        raise invalid_parameter("accessScope.namespaces is required when the type is namespace.")
    if scope["type"] == "cluster" and namespaces:
        raise invalid_parameter("accessScope.namespaces must be empty when the type is cluster.")
    return policy_arn, {"type": scope["type"], "namespaces": list(namespaces)}


def _one(query, name):
    values = query.get(name)
    return values[0] if values else None


def _paginate(items, query):
    """A page of `items` and the token for the next one (None on the last page)."""
    max_results = _one(query, "maxResults")
    try:
        size = 100 if max_results is None else int(max_results)
    except ValueError:
        size = 0
    if not 1 <= size <= 100:
        raise invalid_parameter("maxResults must be between 1 and 100.")
    start = 0
    token = _one(query, "nextToken")
    if token:
        try:
            start = int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
        except (ValueError, KeyError, TypeError):
            raise invalid_parameter("The nextToken is invalid.")
    end = start + size
    next_token = None
    if end < len(items):
        next_token = base64.urlsafe_b64encode(json.dumps({"offset": end}).encode()).decode()
    return items[start:end], next_token


def _respond(start_response, status, payload, error_type=None):
    body = json.dumps(payload).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
               ("x-amzn-RequestId", str(uuid.uuid4()))]
    if error_type:
        headers.append(("x-amzn-ErrorType", error_type))
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 409: "Conflict",
               500: "Internal Server Error"}
    start_response(f"{status} {reasons.get(status, 'Error')}", headers)
    return [body]
