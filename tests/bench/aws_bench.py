"""A fake AWS account for the integration tests: moto, in-process, on loopback.

Usage: .venv/bin/python tests/bench/aws_bench.py --state-file PATH [--host H] [--port P]

Starts moto's server on a thread, seeds a realistic EKS setup in us-east-2 with
boto3 over HTTP (so the seed goes through the same code paths as the Lambdas),
patches the few DescribeCluster fields moto does not fill in, writes PATH as
JSON (atomically), prints `READY <endpoint>` and serves until stdin reaches EOF
or SIGTERM/SIGINT arrives, then stops the server and exits 0.

Around moto, in the same process and all on 127.0.0.1:
- eks_shim.EksShim, WSGI middleware in moto's own server: EKS access entries and
  DescribeCluster's accessConfig, which moto lacks;
- kube_double.KubeDouble, one HTTPS Kubernetes API server per ACTIVE cluster (its
  endpoint and CA are what DescribeCluster returns), authenticating EKS tokens
  against moto's IAM and STS;
- hopsworks_double.HopsworksDouble, the Hopsworks.ai cluster API (plain HTTP, its
  own port), which creates and deletes its clusters' ECR repositories in moto; its API
  key sits in Secrets Manager (seed_hopsworks_ai);
- a control API (plain HTTP, its own port, see ControlHandler) for tests to change
  authentication modes and CAs, read and write ConfigMaps behind the API server's
  back, steer the Hopsworks.ai double, inject faults and read request logs.
"""

import argparse
import base64
import json
import logging
import os
import random
import secrets
import signal
import sys
import tempfile
from urllib.parse import unquote

import boto3
import trustme
from botocore import xform_name
from moto.eks.models import eks_backends
from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.iam.models import AWSManagedPolicy, iam_backends
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from eks_service import EksService
from eks_shim import EksApiError, EksShim
from hopsworks_double import HopsworksDouble
from kube_double import JsonHandler, KubeDouble, LoopbackHTTPServer, serve_in_thread

REGION = "us-east-2"
CLUSTER = "demo-eks"
CREATING_CLUSTER = "creating-eks"
# A second ACTIVE cluster, in API_AND_CONFIG_MAP mode (demo-eks has no accessConfig at all).
ACCESS_CLUSTER = "access-eks"
CREATOR_ROLE = "eks-cluster-creator"  # created both clusters: always their admin
FUNCTION_ROLE = "hopsworks-eks-access-function"  # the Lambda's execution role: mapped nowhere
VIEWER_ROLE = "eks-viewer"  # in demo-eks's aws-auth, in a group with no RBAC rights
OPS_ADMIN_USER = "ops-admin"  # an IAM user in demo-eks's aws-auth, in system:masters
# Long enough for any test run: an expired session makes the kube doubles answer 401.
SESSION_SECONDS = 12 * 3600
VPC_CIDR = "10.42.0.0/16"
PUBLIC = [("10.42.0.0/20", "us-east-2a"), ("10.42.16.0/20", "us-east-2b")]
PRIVATE = [("10.42.128.0/20", "us-east-2a"), ("10.42.144.0/20", "us-east-2b")]
HOPSWORKS_PATH = "/hopsworks/"
# Secrets Manager names of the Hopsworks.ai API key: as a plain string, as JSON, and a wrong one.
HOPSWORKS_KEY_SECRET = "hopsworks/api-key"
HOPSWORKS_KEY_JSON_SECRET = "hopsworks/api-key-json"
HOPSWORKS_WRONG_KEY_SECRET = "hopsworks/wrong-key"
# What the Hopsworks cluster is given (the stack's pre-flight checks them): its bucket, in the
# region; a bucket of another region; an SSH key pair.
BUCKET = "hops-demo-bucket"
BUCKET_ELSEWHERE, BUCKET_ELSEWHERE_REGION = "hops-data-eu", "eu-west-1"
KEY_PAIR = "hops-demo-key"

# aws-auth's data as eksctl writes it (the ARNs are filled in by seed()).
NODE_MAPPING = """\
- groups:
  - system:bootstrappers
  - system:nodes
  rolearn: NODE_ROLE_ARN
  username: system:node:{{EC2PrivateDNSName}}
"""
VIEWER_MAPPING = """\
# Read-only access for the on-call dashboards (RBAC binds nothing to "viewers" yet).
- groups:
  - viewers
  rolearn: VIEWER_ROLE_ARN
  username: viewer
"""
OPS_ADMIN_MAPPING = """\
- groups:
  - system:masters
  userarn: OPS_ADMIN_ARN
  username: ops-admin
"""

# Set by seed() from STS: the account moto files the requests under (the key
# into its backends, used by set_cluster_fields).
_account_id = None


class NoDelayRequestHandler(MotoRequestHandler):
    # socketserver.StreamRequestHandler.setup() sets TCP_NODELAY on every
    # accepted socket when this is true; werkzeug's handler inherits that.
    disable_nagle_algorithm = True


class BenchServer(ThreadedMotoServer):
    """ThreadedMotoServer with our request handler and a start() that cannot hang.

    moto's own _server_entry hard-codes MotoRequestHandler, and if the bind fails
    werkzeug calls sys.exit() on the server thread, so the ready event is never
    set and start() waits forever. Here the event is set either way.
    """

    def __init__(self, ip_address, port, verbose=False, middleware=None):
        super().__init__(ip_address, port, verbose)
        # A callable wrapping moto's WSGI app (the EKS shim).
        self._middleware = middleware

    def _server_entry(self):
        try:
            app = DomainDispatcherApplication(create_backend_app)
            if self._middleware is not None:
                app = self._middleware(app)
            self._server = make_server(
                self._ip_address, self._port, app, threaded=True,
                request_handler=NoDelayRequestHandler,
            )
        finally:
            self._server_ready_event.set()
        # stop() waits for the loop to notice: poll faster than the 0.5 s default.
        self._server.serve_forever(poll_interval=0.05)

    def start(self):
        super().start()
        if self._server is None:
            raise RuntimeError(f"moto could not bind {self._ip_address}:{self._port}")


def set_cluster_fields(name, account=None, region=None, **fields):
    """Overwrite what DescribeCluster returns for cluster `name`.

    Keys are DescribeCluster's own (camelCase) names: status, endpoint,
    certificateAuthority, resourcesVpcConfig, ... A dict value is merged into
    the existing dict (so resourcesVpcConfig={"vpcId": ...} keeps subnetIds);
    a value of None removes the field from the response. moto's serializer
    looks the camelCase name up first, then its snake_case form.
    """
    cluster = eks_backends[account or _account_id][region or REGION].clusters[name]
    for key, value in fields.items():
        attr = key if hasattr(cluster, key) else xform_name(key)
        old = getattr(cluster, attr, None)
        if isinstance(value, dict) and isinstance(old, dict):
            # Build a new dict rather than update in place: a request thread
            # may be iterating over the old one right now.
            value = {**old, **value}
        setattr(cluster, attr, value)


EKS_MANAGED_POLICIES = ("AmazonEKSClusterPolicy", "AmazonEKSWorkerNodePolicy",
                        "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")


def load_managed_policies(account_id, names):
    """Make AWS managed policies `names` attachable in the account, with AWS's documents."""
    documents = json.loads(aws_managed_policies_data)
    backend = iam_backends[account_id]["aws"]
    for name in names:
        policy = AWSManagedPolicy.from_data(name, account_id, backend.region_name,
                                            documents[name])
        backend.managed_policies[policy.arn] = policy


def seed(endpoint, shim):
    """Seed the account; start a Kubernetes API double per ACTIVE cluster.

    Returns (state for the state file, {cluster name: KubeDouble}).
    """
    kw = dict(region_name=REGION, endpoint_url=endpoint,
              aws_access_key_id="testing", aws_secret_access_key="testing")
    ec2, iam, eks = (boto3.client(s, **kw) for s in ("ec2", "iam", "eks"))
    account_id = boto3.client("sts", **kw).get_caller_identity()["Account"]

    def tags(name, **extra):
        return [{"Key": k, "Value": v} for k, v in {"Name": name, **extra}.items()]

    def spec(kind, name, **extra):
        return [{"ResourceType": kind, "Tags": tags(name, **extra)}]

    vpc_id = ec2.create_vpc(CidrBlock=VPC_CIDR, TagSpecifications=spec("vpc", "demo-vpc"))["Vpc"]["VpcId"]
    # EKS needs both; only one attribute may be modified per call.
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
    ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})

    def subnets(specs, kind, elb_tag):
        return [ec2.create_subnet(
            VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=az,
            TagSpecifications=spec("subnet", f"demo-{kind}-{az}", **{elb_tag: "1"}),
        )["Subnet"]["SubnetId"] for cidr, az in specs]

    public = subnets(PUBLIC, "public", "kubernetes.io/role/elb")
    private = subnets(PRIVATE, "private", "kubernetes.io/role/internal-elb")

    igw = ec2.create_internet_gateway(TagSpecifications=spec("internet-gateway", "demo-igw"))
    igw_id = igw["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
    public_rt = ec2.create_route_table(VpcId=vpc_id, TagSpecifications=spec("route-table", "demo-public"))
    public_rt_id = public_rt["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw_id)

    eip = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat_id = ec2.create_nat_gateway(SubnetId=public[0], AllocationId=eip)["NatGateway"]["NatGatewayId"]
    private_rt = ec2.create_route_table(VpcId=vpc_id, TagSpecifications=spec("route-table", "demo-private"))
    private_rt_id = private_rt["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=private_rt_id, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat_id)
    for rt_id, subnet_ids in ((public_rt_id, public), (private_rt_id, private)):
        for subnet_id in subnet_ids:
            ec2.associate_route_table(RouteTableId=rt_id, SubnetId=subnet_id)

    node_sg = ec2.create_security_group(
        GroupName="demo-eks-node-sg", Description="EKS worker nodes", VpcId=vpc_id,
        TagSpecifications=spec("security-group", "demo-eks-node-sg"))["GroupId"]

    def cluster_security_group(cluster):
        # EKS names its cluster SG eks-cluster-sg-<cluster>-<10 digits>, tags it as
        # below and lets everything in from itself.
        name = f"eks-cluster-sg-{cluster}-{random.randrange(10**9, 10**10)}"
        group_id = ec2.create_security_group(
            GroupName=name, VpcId=vpc_id,
            Description="EKS created security group applied to ENI that is attached to EKS "
                        "Control Plane master nodes, as well as any managed workloads.",
            TagSpecifications=spec("security-group", name, **{
                "aws:eks:cluster-name": cluster, f"kubernetes.io/cluster/{cluster}": "owned"}),
        )["GroupId"]
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
            {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]}])
        return group_id

    cluster_sg = cluster_security_group(CLUSTER)
    access_cluster_sg = cluster_security_group(ACCESS_CLUSTER)

    def role(name, service=None, path="/"):
        # A service role, or (service None) one that people and CI in this account assume.
        principal = {"Service": service} if service else {"AWS": f"arn:aws:iam::{account_id}:root"}
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}]}
        return iam.create_role(RoleName=name, Path=path, MaxSessionDuration=SESSION_SECONDS,
                               AssumeRolePolicyDocument=json.dumps(trust))["Role"]

    cluster_role = role("demo-eks-cluster-role", "eks.amazonaws.com")
    node_role = role("demo-eks-node-role", "ec2.amazonaws.com")
    hw_role = role("hopsworks-instance-role", "ec2.amazonaws.com", HOPSWORKS_PATH)
    hw_profile = iam.create_instance_profile(InstanceProfileName="hopsworks-instance-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="hopsworks-instance-profile",
                                     RoleName=hw_role["RoleName"])
    empty_profile = iam.create_instance_profile(InstanceProfileName="empty-instance-profile")
    creator_role = role(CREATOR_ROLE)
    function_role = role(FUNCTION_ROLE, "lambda.amazonaws.com")
    viewer_role = role(VIEWER_ROLE)
    ops_admin = iam.create_user(UserName=OPS_ADMIN_USER)["User"]
    ops_admin_key = iam.create_access_key(UserName=OPS_ADMIN_USER)["AccessKey"]

    vpc_config = {"subnetIds": public + private, "securityGroupIds": [node_sg],
                  "endpointPublicAccess": True, "endpointPrivateAccess": False}
    clusters = {}
    for name, version in ((CLUSTER, "1.29"), (CREATING_CLUSTER, "1.29"), (ACCESS_CLUSTER, "1.30")):
        clusters[name] = eks.create_cluster(
            name=name, version=version, roleArn=cluster_role["Arn"],
            resourcesVpcConfig=vpc_config)["cluster"]
        # moto does not record who created a cluster: the shim is told.
        shim.store.set_creator(clusters[name]["arn"], creator_role["Arn"])

    # What real EKS adds to resourcesVpcConfig and moto leaves out.
    global _account_id
    _account_id = account_id
    extra = {"vpcId": vpc_id, "publicAccessCidrs": ["0.0.0.0/0"]}
    set_cluster_fields(CLUSTER, resourcesVpcConfig={**extra, "clusterSecurityGroupId": cluster_sg})
    # A cluster still being created has no endpoint or CA yet (nor, here, a
    # cluster SG: EKS makes that part-way through creation).
    set_cluster_fields(CREATING_CLUSTER, status="CREATING", endpoint=None,
                       certificateAuthority=None, resourcesVpcConfig=extra)
    set_cluster_fields(ACCESS_CLUSTER,
                       resourcesVpcConfig={**extra, "clusterSecurityGroupId": access_cluster_sg})
    # demo-eks keeps no accessConfig (an older cluster: CONFIG_MAP). This also gives the
    # creator its ClusterAdmin access entry on access-eks.
    shim.store.set_mode(clusters[ACCESS_CLUSTER]["arn"], "API_AND_CONFIG_MAP")

    # Session credentials, as each of these principals would hold them.
    sts = boto3.client("sts", **kw)

    def session(role_arn, session_name):
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name,
                                DurationSeconds=SESSION_SECONDS)["Credentials"]
        return {"role_arn": role_arn, "access_key_id": creds["AccessKeyId"],
                "secret_access_key": creds["SecretAccessKey"],
                "session_token": creds["SessionToken"]}

    identities = {
        # Lambda names the execution role's session after the function.
        "function": session(function_role["Arn"], "hopsworks-eks-EksAccess"),
        "creator": session(creator_role["Arn"], "cluster-admin"),
        "viewer": session(viewer_role["Arn"], "viewer"),
        # EC2 names an instance profile's session after the instance.
        "hopsworks": session(hw_role["Arn"], "i-0a1b2c3d4e5f67890"),
        "ops_admin_user": {"user_arn": ops_admin["Arn"],
                           "access_key_id": ops_admin_key["AccessKeyId"],
                           "secret_access_key": ops_admin_key["SecretAccessKey"]},
    }

    # One Kubernetes API server per ACTIVE cluster, each with its own CA, as in EKS.
    node_mapping = NODE_MAPPING.replace("NODE_ROLE_ARN", node_role["Arn"])
    aws_auth = {
        CLUSTER: {
            "mapRoles": node_mapping + VIEWER_MAPPING.replace("VIEWER_ROLE_ARN", viewer_role["Arn"]),
            "mapUsers": OPS_ADMIN_MAPPING.replace("OPS_ADMIN_ARN", ops_admin["Arn"]),
        },
        ACCESS_CLUSTER: {"mapRoles": node_mapping},
    }
    doubles, kube = {}, {}
    for name in (CLUSTER, ACCESS_CLUSTER):
        double = KubeDouble(name, clusters[name]["arn"], shim.store, trustme.CA(),
                            clusters[name]["version"]).start()
        doubles[name] = double
        set_cluster_fields(name, endpoint=double.endpoint, certificateAuthority={
            "data": base64.b64encode(double.ca_pem.encode()).decode()})
        double.put_object("kube-system", "aws-auth", {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "aws-auth", "namespace": "kube-system"},
            "data": aws_auth[name]})
        kube[name] = {"endpoint": double.endpoint, "ca_pem": double.ca_pem}

    # The AWS managed policies a new EKS cluster's roles attach (moto loads none by default, and
    # all 1,500 of them cost a second per bench).
    load_managed_policies(account_id, EKS_MANAGED_POLICIES)

    # Clusters the stack creates through the EKS API get what EKS gives a new cluster.
    shim.service = EksService(ec2, shim.store, doubles, lambda account, region, name, **fields:
                              set_cluster_fields(name, account, region, **fields))

    s3 = boto3.client("s3", **kw)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    boto3.client("s3", **{**kw, "region_name": BUCKET_ELSEWHERE_REGION}).create_bucket(
        Bucket=BUCKET_ELSEWHERE,
        CreateBucketConfiguration={"LocationConstraint": BUCKET_ELSEWHERE_REGION})
    ec2.create_key_pair(KeyName=KEY_PAIR)

    arn_prefix = f"arn:aws:iam::{account_id}:role/"
    return {
        "endpoint": endpoint,
        "region": REGION,
        "account_id": account_id,
        "cluster": {
            "name": CLUSTER, "arn": clusters[CLUSTER]["arn"], "vpc_id": vpc_id,
            "vpc_cidr": VPC_CIDR, "cluster_security_group_id": cluster_sg,
            "node_security_group_id": node_sg, "public_subnet_ids": public,
            "private_subnet_ids": private, "version": clusters[CLUSTER]["version"],
        },
        "creating_cluster_name": CREATING_CLUSTER,
        "hopsworks": {
            "role_name": hw_role["RoleName"], "role_arn": hw_role["Arn"],
            "role_arn_without_path": arn_prefix + hw_role["RoleName"],
            "role_path": hw_role["Path"],
            "instance_profile_name": hw_profile["InstanceProfile"]["InstanceProfileName"],
            "instance_profile_arn": hw_profile["InstanceProfile"]["Arn"],
        },
        "empty_instance_profile_name": empty_profile["InstanceProfile"]["InstanceProfileName"],
        "empty_instance_profile_arn": empty_profile["InstanceProfile"]["Arn"],
        "node_role_arn": node_role["Arn"],
        "storage": {
            "bucket": BUCKET, "bucket_elsewhere": BUCKET_ELSEWHERE,
            "bucket_elsewhere_region": BUCKET_ELSEWHERE_REGION, "key_pair": KEY_PAIR,
        },
        "kube": kube,
        # A CA that signed none of the API servers' certificates.
        "wrong_ca_pem": trustme.CA().cert_pem.bytes().decode(),
        "access_cluster": {
            "name": ACCESS_CLUSTER, "arn": clusters[ACCESS_CLUSTER]["arn"],
            "cluster_security_group_id": access_cluster_sg,
        },
        "identities": identities,
    }, doubles


def seed_hopsworks_ai(endpoint, account_id, instance_profile_arn):
    """Start the Hopsworks.ai double with a fresh API key; store the key in Secrets Manager.

    Returns (the state file's "hopsworks_ai" section, the double).
    """
    api_key = secrets.token_hex(20)
    wrong_key = secrets.token_hex(20)
    double = HopsworksDouble(api_key, {"region": REGION,
                                       "instance_profile_arn": instance_profile_arn}).start()
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint,
                      aws_access_key_id="testing", aws_secret_access_key="testing")

    def secret(name, value, description):
        return sm.create_secret(Name=name, SecretString=value, Description=description)["ARN"]

    return {
        "api_url": double.endpoint,
        "api_key": api_key,
        "secret_arn": secret(HOPSWORKS_KEY_SECRET, api_key, "Hopsworks.ai API key"),
        "secret_json_arn": secret(HOPSWORKS_KEY_JSON_SECRET, json.dumps({"apiKey": api_key}),
                                  "Hopsworks.ai API key, as JSON"),
        "wrong_secret_arn": secret(HOPSWORKS_WRONG_KEY_SECRET, wrong_key,
                                   "An API key Hopsworks.ai does not know"),
        # Shaped like a real one (Secrets Manager appends "-" and 6 characters), never created.
        "missing_secret_arn": f"arn:aws:secretsmanager:{REGION}:{account_id}:secret:"
                              f"hopsworks/no-such-key-{secrets.token_hex(3)}",
    }, double


class ControlError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


class ControlHandler(JsonHandler):
    """The bench's control API, for tests (plain HTTP on 127.0.0.1, JSON in and out).

    PUT    /clusters/{name}/auth-mode              {"mode": CONFIG_MAP|API_AND_CONFIG_MAP|API|null}
    PUT    /clusters/{name}/certificate-authority  {"pem": "..."}  (DescribeCluster's CA)
    GET    /kube/{cluster}/configmaps/{ns}/{name}  the stored object, exactly
    PUT    /kube/{cluster}/configmaps/{ns}/{name}  store the object as given (new resourceVersion)
    DELETE /kube/{cluster}/configmaps/{ns}/{name}
    POST   /kube/{cluster}/faults                  {"kind": status|delay|conflict|drop|late, "status"?,
                                                    "seconds"?, "method"?, "path_contains"?, "times"?,
                                                    "skip"?}, or {"kind": "eks", ...} for the EKS shim
    GET    /kube/{cluster}/faults                  the API server's faults that have not fired yet
    DELETE /kube/{cluster}/faults
    GET    /kube/{cluster}/requests                [{method, path, query, username, status, auth_error}]
    DELETE /kube/{cluster}/requests
    GET    /eks/requests                           [{operation, cluster, principal, status, error}]
    DELETE /eks/requests

    The Hopsworks.ai double (hopsworks_double.py):
    GET    /hopsworks/behaviour                    {polls_per_state, fail_next_with, leave_ecr_repos,
                                                    delete_lag_polls, fail_upgrade_with,
                                                    fail_next_backup_with, versions}
    PUT    /hopsworks/behaviour                    any of those (partial) -> the behaviour now
    POST   /hopsworks/faults                       {"kind": status|delay|drop, "status"?, "seconds"?,
                                                    "method"?, "path_contains"?, "times"?, "skip"?,
                                                    "after"?, "retry_after"?}
    GET    /hopsworks/faults                       the faults that have not fired yet
    DELETE /hopsworks/faults
    GET    /hopsworks/requests                     [{method, path, query, status, key_present,
                                                     key_ok, api_version_ok, headers, body, fault}]
    DELETE /hopsworks/requests
    GET    /hopsworks/clusters                     every cluster ever (gone ones "terminated")
    GET    /hopsworks/clusters/{id}
    POST   /hopsworks/clusters                     {"name", "eksClusterName"?, ...flat create
                                                    fields} -> a cluster already running
    GET    /hopsworks/backups                      every backup ever (bench.deleted, bench.snapshot)
    GET    /hopsworks/backups/{id}
    POST   /hopsworks/backups                      {"cluster": {"name", ...flat create fields},
                                                    "ports"?, "backupName"?, "clusterId"?} -> a
                                                    backup already `succeed` of that snapshot

    Errors are {"message": ...} with 400 (bad input) or 404 (no such cluster/object/route).
    """

    def do_GET(self):
        try:
            raw = self.read_body()
            try:
                body = json.loads(raw) if raw and raw.strip() else None
            except ValueError:
                raise ControlError(400, "the body is not JSON")
            path = self.path.split("?", 1)[0]
            parts = [unquote(p) for p in path.strip("/").split("/")]
            status, payload = self._route(self.command, parts, body)
        except ControlError as e:
            status, payload = e.status, {"message": e.message}
        except Exception as e:  # a bench bug: say so rather than hang up
            logging.getLogger("bench.control").exception("control request failed")
            status, payload = 500, {"message": f"bench bug: {e!r}"}
        self.send_json(status, payload)

    do_PUT = do_POST = do_DELETE = do_GET

    def _route(self, method, parts, body):
        shim, doubles = self.server.shim, self.server.doubles
        if len(parts) == 3 and parts[0] == "clusters" and method == "PUT":
            name = parts[1]
            cluster = eks_backends[_account_id][REGION].clusters.get(name)
            if cluster is None:
                raise ControlError(404, f"no cluster {name}")
            if parts[2] == "auth-mode":
                if not isinstance(body, dict) or "mode" not in body:
                    raise ControlError(400, 'expected {"mode": ...}')
                try:
                    shim.store.set_mode(cluster.arn, body["mode"])
                except (ValueError, EksApiError) as e:
                    raise ControlError(400, str(e))
                return 200, {"cluster": name, "mode": body["mode"]}
            if parts[2] == "certificate-authority":
                if not isinstance(body, dict) or not isinstance(body.get("pem"), str):
                    raise ControlError(400, 'expected {"pem": "..."}')
                data = base64.b64encode(body["pem"].encode()).decode()
                set_cluster_fields(name, certificateAuthority={"data": data})
                return 200, {"cluster": name}
        if len(parts) >= 3 and parts[0] == "kube":
            double = doubles.get(parts[1])
            if double is None:
                raise ControlError(404, f"no Kubernetes API double for cluster {parts[1]}")
            if len(parts) == 5 and parts[2] == "configmaps":
                namespace, name = parts[3], parts[4]
                if method == "GET":
                    obj = double.get_object(namespace, name)
                    if obj is None:
                        raise ControlError(404, f"no configmap {namespace}/{name}")
                    return 200, obj
                if method == "PUT":
                    if not isinstance(body, dict):
                        raise ControlError(400, "expected a ConfigMap object")
                    return 200, double.put_object(namespace, name, body)
                if method == "DELETE":
                    if not double.delete_object(namespace, name):
                        raise ControlError(404, f"no configmap {namespace}/{name}")
                    return 200, {}
            if len(parts) == 3 and parts[2] == "faults":
                if method == "GET":
                    return 200, double.faults()
                if method == "POST":
                    if not isinstance(body, dict):
                        raise ControlError(400, "expected a fault object")
                    try:
                        double.add_fault(body)
                    except (TypeError, ValueError) as e:
                        raise ControlError(400, str(e))
                    return 200, {}
                if method == "DELETE":
                    double.clear_faults()
                    return 200, {}
            if len(parts) == 3 and parts[2] == "requests":
                if method == "GET":
                    return 200, double.requests()
                if method == "DELETE":
                    double.clear_requests()
                    return 200, {}
        if parts and parts[0] == "hopsworks":
            return self._route_hopsworks(method, parts[1:], body)
        if parts == ["eks", "requests"]:
            if method == "GET":
                return 200, shim.records()
            if method == "DELETE":
                shim.clear_records()
                return 200, {}
        raise ControlError(404, f"no route {method} /{'/'.join(parts)}")

    def _route_hopsworks(self, method, parts, body):
        double = self.server.hopsworks
        try:
            if parts == ["behaviour"]:
                if method == "GET":
                    return 200, double.behaviour()
                if method == "PUT":
                    return 200, double.set_behaviour(body)
            if parts == ["faults"]:
                if method == "GET":
                    return 200, double.faults()
                if method == "POST":
                    return 200, double.add_fault(body)
                if method == "DELETE":
                    double.clear_faults()
                    return 200, {}
            if parts == ["requests"]:
                if method == "GET":
                    return 200, double.requests()
                if method == "DELETE":
                    double.clear_requests()
                    return 200, {}
            if parts == ["clusters"]:
                if method == "GET":
                    return 200, double.clusters()
                if method == "POST":
                    return 200, double.create_running(body)
            if len(parts) == 2 and parts[0] == "clusters" and method == "GET":
                cluster = double.cluster(parts[1])
                if cluster is None:
                    raise ControlError(404, f"no Hopsworks.ai cluster {parts[1]}")
                return 200, cluster
            if parts == ["backups"]:
                if method == "GET":
                    return 200, double.backups()
                if method == "POST":
                    return 200, double.create_succeeded_backup(body)
            if len(parts) == 2 and parts[0] == "backups" and method == "GET":
                backup = double.backup(parts[1])
                if backup is None:
                    raise ControlError(404, f"no Hopsworks.ai backup {parts[1]}")
                return 200, backup
        except (TypeError, ValueError) as e:
            raise ControlError(400, str(e))
        raise ControlError(404, f"no route {method} /hopsworks/{'/'.join(parts)}")


def start_control(shim, doubles, hopsworks):
    server = LoopbackHTTPServer(("127.0.0.1", 0), ControlHandler)
    server.shim, server.doubles, server.hopsworks = shim, doubles, hopsworks
    serve_in_thread(server, "control")
    return server


def write_atomically(path, data):
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".aws-bench-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class _Stop(BaseException):
    """Raised by the signal handler. A BaseException, because botocore's retry
    logic catches Exception and would swallow it during seeding."""


_stop_requested = False


def _raise_stop(signum, frame):
    global _stop_requested
    _stop_requested = True  # in case something swallows even a BaseException
    # Ignore repeats so a second signal cannot interrupt the shutdown itself.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise _Stop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-file", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--verbose", action="store_true",
                        help="log every request to stderr (off: a parent that pipes "
                             "stderr and never reads it would fill the pipe and stall us)")
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.ERROR)

    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="aws_bench %(name)s %(levelname)s: %(message)s")
    shim = EksShim()
    server = BenchServer(args.host, args.port, verbose=False, middleware=shim.wrap)
    doubles, control, hopsworks = {}, None, None
    # Bound inside this process before start() returns: port 0 has no race.
    # Until the handlers below are installed a signal ends the process the
    # default way (taking the daemon server thread with it), which is fine.
    server.start()
    try:
        # Raising from the handler (rather than setting an Event from it) is
        # what interrupts the blocking read below, without risking a deadlock.
        signal.signal(signal.SIGTERM, _raise_stop)
        signal.signal(signal.SIGINT, _raise_stop)
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        state, doubles = seed(endpoint, shim)
        state["hopsworks_ai"], hopsworks = seed_hopsworks_ai(
            endpoint, state["account_id"], state["hopsworks"]["instance_profile_arn"])
        control = start_control(shim, doubles, hopsworks)
        state["control_endpoint"] = f"http://127.0.0.1:{control.server_address[1]}"
        if _stop_requested:
            raise _Stop
        write_atomically(args.state_file, state)
        print(f"READY {endpoint}", flush=True)

        # Read the raw fd in the main thread: a signal handler that raises
        # interrupts os.read(), and no reader thread is left holding stdin's
        # buffer lock at interpreter shutdown (a fatal error in CPython).
        while not _stop_requested:
            try:
                if not os.read(0, 65536):
                    break
            except OSError:  # no stdin at all counts as EOF
                break
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if control is not None:
            control.shutdown()
        if hopsworks is not None:
            hopsworks.stop()
        for double in doubles.values():
            double.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    code = main()
    # The server is stopped and the state file written; skip the ~0.8 s the
    # interpreter spends tearing down moto's modules (nothing registers atexit).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
