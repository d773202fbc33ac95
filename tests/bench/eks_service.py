"""What EKS does around CreateCluster, CreateNodegroup and DeleteCluster that moto does not.

moto 5.2.5 records a new cluster and reports it ACTIVE at once, and that is all. Real EKS also:

- creates the cluster security group in the cluster's VPC (``eks-cluster-sg-<name>-<digits>``,
  tagged ``aws:eks:cluster-name``, allowing everything from itself) and reports it, and the VPC, in
  ``resourcesVpcConfig``;
- serves a Kubernetes API with a CA of its own (``endpoint``, ``certificateAuthority``);
- applies ``accessConfig``: the authentication mode (``CONFIG_MAP`` when none is asked for), and,
  unless ``bootstrapClusterCreatorAdminPermissions`` is false, an admin access entry for the
  principal that created the cluster;
- lets a managed node group's role in: an ``EC2_LINUX`` access entry in the API modes, an aws-auth
  mapping (``system:bootstrappers``, ``system:nodes``) in ``CONFIG_MAP``;
- with control-plane logging on, writes to the log group ``/aws/eks/<name>/cluster``, making it
  (without a retention) when it does not exist; it keeps it when the cluster is deleted;
- restricts the public endpoint to ``publicAccessCidrs`` (``0.0.0.0/0`` when none are given);
- removes the cluster security group when the cluster is deleted.

`EksService` does those, called by the EKS shim after moto has answered the request, so that a
cluster created through the EKS API (by the stack's ``AWS::EKS::Cluster``) is as usable as the ones
the bench seeds.
"""

import base64
import logging
import random
import threading

import trustme
from moto.eks.models import eks_backends
from moto.logs.models import logs_backends

from eks_shim import API_MODES, resolve_principal_arn
from kube_double import KubeDouble

log = logging.getLogger("bench.eks_service")

NODE_GROUPS = ["system:bootstrappers", "system:nodes"]


class EksService:
    """The EKS side effects of cluster and node-group calls, for clusters made through the API.

    `ec2` is a boto3 EC2 client on the bench; `doubles` the bench's dict of Kubernetes API
    doubles by cluster name (the control API reads it); `set_fields(account, region, name,
    **fields)` overwrites what DescribeCluster returns.
    """

    def __init__(self, ec2, store, doubles, set_fields):
        self.ec2, self.store, self.doubles, self.set_fields = ec2, store, doubles, set_fields
        self._lock = threading.Lock()
        self._security_groups = {}  # cluster ARN -> the cluster security group's id

    def cluster_created(self, account, region, body, caller_arn):
        name = body["name"]
        cluster = eks_backends[account][region].clusters[name]
        subnets = (body.get("resourcesVpcConfig") or {}).get("subnetIds") or []
        vpc_id = self.ec2.describe_subnets(SubnetIds=subnets[:1])["Subnets"][0]["VpcId"]
        group_id = self._cluster_security_group(name, vpc_id)
        with self._lock:
            self._security_groups[cluster.arn] = group_id
        access = body.get("accessConfig") or {}
        self.store.set_creator(cluster.arn, caller_arn)
        if access.get("bootstrapClusterCreatorAdminPermissions") is False:
            self.store.set_creator(cluster.arn, None)
        self.store.set_mode(cluster.arn, access.get("authenticationMode", "CONFIG_MAP"))
        double = KubeDouble(name, cluster.arn, self.store, trustme.CA(), cluster.version).start()
        with self._lock:
            self.doubles[name] = double
        cidrs = (body.get("resourcesVpcConfig") or {}).get("publicAccessCidrs") or ["0.0.0.0/0"]
        self.set_fields(account, region, name, endpoint=double.endpoint,
                        certificateAuthority={
                            "data": base64.b64encode(double.ca_pem.encode()).decode()},
                        resourcesVpcConfig={"vpcId": vpc_id, "clusterSecurityGroupId": group_id,
                                            "publicAccessCidrs": cidrs})
        logging_on = any(setting.get("enabled") and setting.get("types") for setting in
                         ((body.get("logging") or {}).get("clusterLogging") or []))
        group = f"/aws/eks/{name}/cluster"
        logs = logs_backends[account][region]
        if logging_on and group not in logs.groups:
            logs.create_log_group(group, {})
        log.info("EKS cluster %s: security group %s, Kubernetes API %s", name, group_id,
                 double.endpoint)

    def nodegroup_created(self, account, region, cluster_name, body):
        cluster = eks_backends[account][region].clusters[cluster_name]
        node_role = body["nodeRole"]
        if self.store.mode(cluster.arn) in API_MODES:
            self.store.create_entry(cluster.arn, {"principalArn": node_role, "type": "EC2_LINUX"},
                                    resolve_principal_arn(node_role))
            return
        double = self.doubles.get(cluster_name)
        if double is None:
            return
        aws_auth = double.get_object("kube-system", "aws-auth") or {
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "aws-auth", "namespace": "kube-system"}, "data": {}}
        roles = aws_auth.setdefault("data", {}).get("mapRoles", "")
        roles += (f"- groups:\n  - {NODE_GROUPS[0]}\n  - {NODE_GROUPS[1]}\n"
                  f"  rolearn: {node_role}\n  username: system:node:{{{{EC2PrivateDNSName}}}}\n")
        aws_auth["data"]["mapRoles"] = roles
        double.put_object("kube-system", "aws-auth", aws_auth)

    def cluster_deleted(self, cluster_arn, name):
        with self._lock:
            double = self.doubles.pop(name, None)
            group_id = self._security_groups.pop(cluster_arn, None)
        if double is not None:
            double.stop()
        if group_id is not None:
            self.ec2.delete_security_group(GroupId=group_id)

    def _cluster_security_group(self, cluster, vpc_id):
        name = f"eks-cluster-sg-{cluster}-{random.randrange(10**9, 10**10)}"
        tags = [{"Key": "Name", "Value": name}, {"Key": "aws:eks:cluster-name", "Value": cluster},
                {"Key": f"kubernetes.io/cluster/{cluster}", "Value": "owned"}]
        group_id = self.ec2.create_security_group(
            GroupName=name, VpcId=vpc_id,
            Description="EKS created security group applied to ENI that is attached to EKS "
                        "Control Plane master nodes, as well as any managed workloads.",
            TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
        )["GroupId"]
        self.ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[
            {"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group_id}]}])
        return group_id
