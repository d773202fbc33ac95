"""A fake AWS account for the integration tests: moto, in-process, on loopback.

Usage: .venv/bin/python tests/bench/aws_bench.py --state-file PATH [--host H] [--port P]

Starts moto's server on a thread, seeds a realistic EKS setup in us-east-2 with
boto3 over HTTP (so the seed goes through the same code paths as the Lambdas),
patches the few DescribeCluster fields moto does not fill in, writes PATH as
JSON (atomically), prints `READY <endpoint>` and serves until stdin reaches EOF
or SIGTERM/SIGINT arrives, then stops the server and exits 0.
"""

import argparse
import json
import logging
import os
import random
import signal
import sys
import tempfile

import boto3
from botocore import xform_name
from moto.eks.models import eks_backends
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

REGION = "us-east-2"
CLUSTER = "demo-eks"
CREATING_CLUSTER = "creating-eks"
VPC_CIDR = "10.42.0.0/16"
PUBLIC = [("10.42.0.0/20", "us-east-2a"), ("10.42.16.0/20", "us-east-2b")]
PRIVATE = [("10.42.128.0/20", "us-east-2a"), ("10.42.144.0/20", "us-east-2b")]
HOPSWORKS_PATH = "/hopsworks/"

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

    def _server_entry(self):
        try:
            app = DomainDispatcherApplication(create_backend_app)
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


def set_cluster_fields(name, **fields):
    """Overwrite what DescribeCluster returns for cluster `name`.

    Keys are DescribeCluster's own (camelCase) names: status, endpoint,
    certificateAuthority, resourcesVpcConfig, ... A dict value is merged into
    the existing dict (so resourcesVpcConfig={"vpcId": ...} keeps subnetIds);
    a value of None removes the field from the response. moto's serializer
    looks the camelCase name up first, then its snake_case form.
    """
    cluster = eks_backends[_account_id][REGION].clusters[name]
    for key, value in fields.items():
        attr = key if hasattr(cluster, key) else xform_name(key)
        old = getattr(cluster, attr, None)
        if isinstance(value, dict) and isinstance(old, dict):
            # Build a new dict rather than update in place: a request thread
            # may be iterating over the old one right now.
            value = {**old, **value}
        setattr(cluster, attr, value)


def seed(endpoint):
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
    # EKS names its cluster SG eks-cluster-sg-<cluster>-<10 digits>, tags it as
    # below and lets everything in from itself.
    cluster_sg_name = f"eks-cluster-sg-{CLUSTER}-{random.randrange(10**9, 10**10)}"
    cluster_sg = ec2.create_security_group(
        GroupName=cluster_sg_name, VpcId=vpc_id,
        Description="EKS created security group applied to ENI that is attached to EKS "
                    "Control Plane master nodes, as well as any managed workloads.",
        TagSpecifications=spec("security-group", cluster_sg_name, **{
            "aws:eks:cluster-name": CLUSTER, f"kubernetes.io/cluster/{CLUSTER}": "owned"}),
    )["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=cluster_sg, IpPermissions=[
        {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": cluster_sg}]}])

    def role(name, service, path="/"):
        trust = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
        return iam.create_role(RoleName=name, Path=path,
                               AssumeRolePolicyDocument=json.dumps(trust))["Role"]

    cluster_role = role("demo-eks-cluster-role", "eks.amazonaws.com")
    node_role = role("demo-eks-node-role", "ec2.amazonaws.com")
    hw_role = role("hopsworks-instance-role", "ec2.amazonaws.com", HOPSWORKS_PATH)
    hw_profile = iam.create_instance_profile(InstanceProfileName="hopsworks-instance-profile")
    iam.add_role_to_instance_profile(InstanceProfileName="hopsworks-instance-profile",
                                     RoleName=hw_role["RoleName"])
    empty_profile = iam.create_instance_profile(InstanceProfileName="empty-instance-profile")

    vpc_config = {"subnetIds": public + private, "securityGroupIds": [node_sg],
                  "endpointPublicAccess": True, "endpointPrivateAccess": False}
    clusters = {}
    for name in (CLUSTER, CREATING_CLUSTER):
        clusters[name] = eks.create_cluster(
            name=name, version="1.29", roleArn=cluster_role["Arn"],
            resourcesVpcConfig=vpc_config)["cluster"]

    # What real EKS adds to resourcesVpcConfig and moto leaves out.
    global _account_id
    _account_id = account_id
    extra = {"vpcId": vpc_id, "publicAccessCidrs": ["0.0.0.0/0"]}
    set_cluster_fields(CLUSTER, resourcesVpcConfig={**extra, "clusterSecurityGroupId": cluster_sg})
    # A cluster still being created has no endpoint or CA yet (nor, here, a
    # cluster SG: EKS makes that part-way through creation).
    set_cluster_fields(CREATING_CLUSTER, status="CREATING", endpoint=None,
                       certificateAuthority=None, resourcesVpcConfig=extra)

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
    }


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

    server = BenchServer(args.host, args.port, verbose=False)
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
        state = seed(endpoint)
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
        server.stop()
    return 0


if __name__ == "__main__":
    code = main()
    # The server is stopped and the state file written; skip the ~0.8 s the
    # interpreter spends tearing down moto's modules (nothing registers atexit).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
