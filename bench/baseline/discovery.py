"""ClusterDiscovery as people write it today: crhelper + boto3, the benchmarks' baseline.

The same job as functions/cluster-discovery: DescribeCluster, GetInstanceProfile, DescribeVpcs,
DescribeRouteTables, and the same attributes. Idiomatic, not tuned: module-level clients, calls
one after another. Runs under awslambdaric (`python -m awslambdaric discovery.handler`).
"""

import boto3
from crhelper import CfnResource

helper = CfnResource(json_logging=True, log_level="INFO", boto_level="CRITICAL", sleep_on_delete=0)

eks = boto3.client("eks")
iam = boto3.client("iam")
ec2 = boto3.client("ec2")


def is_public(table):
    return any(
        route.get("GatewayId", "").startswith("igw-")
        and (route.get("DestinationCidrBlock") == "0.0.0.0/0"
             or route.get("DestinationIpv6CidrBlock") == "::/0")
        for route in table.get("Routes", [])
    )


def subnets_by_exposure(vpc_id, subnet_ids):
    tables = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])["RouteTables"]
    main = next((t for t in tables
                 if any(a.get("Main") for a in t.get("Associations", []))), None)
    public, private = [], []
    for subnet in subnet_ids:
        table = next((t for t in tables if any(a.get("SubnetId") == subnet
                                                for a in t.get("Associations", []))), main)
        (public if table and is_public(table) else private).append(subnet)
    return public, private


@helper.create
@helper.update
def discover(event, _context):
    props = event["ResourceProperties"]
    cluster = eks.describe_cluster(name=props["ClusterName"])["cluster"]
    profile = iam.get_instance_profile(
        InstanceProfileName=props["InstanceProfile"].split("/")[-1])["InstanceProfile"]
    if not profile["Roles"]:
        raise ValueError(f"instance profile {profile['InstanceProfileName']} has no role")
    role = profile["Roles"][0]
    vpc_config = cluster["resourcesVpcConfig"]
    vpc_id = vpc_config["vpcId"]
    vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
    public, private = subnets_by_exposure(vpc_id, vpc_config["subnetIds"])
    _, partition, _, region, account, _ = cluster["arn"].split(":", 5)
    account_prefix, _ = role["Arn"].split(":role/", 1)
    helper.Data.update({
        "ClusterName": cluster["name"],
        "ClusterArn": cluster["arn"],
        "Partition": partition,
        "Region": region,
        "AccountId": account,
        "Endpoint": cluster["endpoint"],
        "KubernetesVersion": cluster["version"],
        "AuthenticationMode": cluster.get("accessConfig", {}).get("authenticationMode",
                                                                   "CONFIG_MAP"),
        "VpcId": vpc_id,
        "VpcCidr": vpc["CidrBlock"],
        "ClusterSecurityGroupId": vpc_config["clusterSecurityGroupId"],
        "SubnetIds": ",".join(vpc_config["subnetIds"]),
        "PublicSubnetIds": ",".join(public),
        "PrivateSubnetIds": ",".join(private),
        "InstanceProfileName": profile["InstanceProfileName"],
        "InstanceProfileArn": profile["Arn"],
        "RoleName": role["RoleName"],
        "RoleArn": role["Arn"],
        "RoleArnWithoutPath": f"{account_prefix}:role/{role['RoleName']}",
    })
    return cluster["arn"]


@helper.delete
def delete(_event, _context):
    pass


def handler(event, context):
    helper(event, context)
