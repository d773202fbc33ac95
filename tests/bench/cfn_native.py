"""Native resources of the stack's new-cluster path, as CloudFormation's own handlers make them.

The bench's engine (tests/src/stack/) calls `create` and `delete` here for the EC2 network (VPC,
internet gateway and its attachment, subnets, route tables, routes and their associations, an
Elastic IP, a NAT gateway, the VPC's flow log) and for EKS (the cluster, a managed node group), through boto3 against
the bench. What EKS does besides moto's records (the cluster security group, a Kubernetes API,
accessConfig) the bench's EKS shim adds as the calls pass (eks_service.py).

`create(kind, logical_id, props)` returns {"id": physical id (what Ref gives), "attrs": {...}};
`delete(kind, physical_id, props, attrs)` undoes it. Properties arrive resolved, as
CloudFormation passes them to a resource handler.
"""

import os
import secrets

import boto3


def client(name):
    return boto3.client(name, endpoint_url=os.environ["BENCH_ENDPOINT"])


def _tags(kind, props):
    tags = [{"Key": t["Key"], "Value": str(t["Value"])} for t in props.get("Tags") or []]
    return [{"ResourceType": kind, "Tags": tags}] if tags else []


def _bool(value):
    return value is True or str(value).lower() == "true"


def _name(logical_id):
    # CloudFormation's generated names: <stack>-<logical id>-<random>.
    return f"hopsworks-eks-{logical_id}-{secrets.token_hex(4)}"


def _vpc(p, _):
    ec2 = client("ec2")
    vpc = ec2.create_vpc(CidrBlock=p["CidrBlock"], TagSpecifications=_tags("vpc", p))["Vpc"]
    # One attribute per call, as the EC2 API wants.
    for attr in ("EnableDnsSupport", "EnableDnsHostnames"):
        if attr in p:
            ec2.modify_vpc_attribute(VpcId=vpc["VpcId"], **{attr: {"Value": _bool(p[attr])}})
    return vpc["VpcId"], {"VpcId": vpc["VpcId"], "CidrBlock": vpc["CidrBlock"]}


def _internet_gateway(p, _):
    igw = client("ec2").create_internet_gateway(
        TagSpecifications=_tags("internet-gateway", p))["InternetGateway"]
    return igw["InternetGatewayId"], {"InternetGatewayId": igw["InternetGatewayId"]}


def _gateway_attachment(p, logical_id):
    client("ec2").attach_internet_gateway(InternetGatewayId=p["InternetGatewayId"],
                                          VpcId=p["VpcId"])
    return f"IGW|{p['VpcId']}", {}


def _subnet(p, _):
    subnet = client("ec2").create_subnet(
        VpcId=p["VpcId"], CidrBlock=p["CidrBlock"], AvailabilityZone=p["AvailabilityZone"],
        TagSpecifications=_tags("subnet", p))["Subnet"]
    if _bool(p.get("MapPublicIpOnLaunch", False)):
        client("ec2").modify_subnet_attribute(SubnetId=subnet["SubnetId"],
                                              MapPublicIpOnLaunch={"Value": True})
    return subnet["SubnetId"], {"SubnetId": subnet["SubnetId"],
                                "AvailabilityZone": subnet["AvailabilityZone"]}


def _route_table(p, _):
    table = client("ec2").create_route_table(
        VpcId=p["VpcId"], TagSpecifications=_tags("route-table", p))["RouteTable"]
    return table["RouteTableId"], {"RouteTableId": table["RouteTableId"]}


def _route(p, _):
    target = {k: p[k] for k in ("GatewayId", "NatGatewayId") if k in p}
    client("ec2").create_route(RouteTableId=p["RouteTableId"],
                               DestinationCidrBlock=p["DestinationCidrBlock"], **target)
    return f"{p['RouteTableId']}|{p['DestinationCidrBlock']}", {}


def _association(p, _):
    association = client("ec2").associate_route_table(
        RouteTableId=p["RouteTableId"], SubnetId=p["SubnetId"])["AssociationId"]
    return association, {"Id": association}


def _eip(p, _):
    address = client("ec2").allocate_address(
        Domain=p.get("Domain", "vpc"), TagSpecifications=_tags("elastic-ip", p))
    return address["PublicIp"], {"AllocationId": address["AllocationId"],
                                 "PublicIp": address["PublicIp"]}


def _nat_gateway(p, _):
    nat = client("ec2").create_nat_gateway(
        AllocationId=p["AllocationId"], SubnetId=p["SubnetId"],
        TagSpecifications=_tags("natgateway", p))["NatGateway"]
    return nat["NatGatewayId"], {}


def _eks_cluster(p, logical_id):
    vpc = p["ResourcesVpcConfig"]
    request = {
        "name": p.get("Name") or _name(logical_id),
        "version": p["Version"],
        "roleArn": p["RoleArn"],
        "resourcesVpcConfig": {
            "subnetIds": vpc["SubnetIds"],
            "securityGroupIds": vpc.get("SecurityGroupIds", []),
            "endpointPublicAccess": _bool(vpc.get("EndpointPublicAccess", True)),
            "endpointPrivateAccess": _bool(vpc.get("EndpointPrivateAccess", False)),
        },
    }
    if vpc.get("PublicAccessCidrs"):
        request["resourcesVpcConfig"]["publicAccessCidrs"] = vpc["PublicAccessCidrs"]
    access = p.get("AccessConfig")
    if access:
        request["accessConfig"] = {
            "authenticationMode": access["AuthenticationMode"],
            "bootstrapClusterCreatorAdminPermissions":
                _bool(access.get("BootstrapClusterCreatorAdminPermissions", True)),
        }
    types = [t["Type"] for t in ((p.get("Logging") or {}).get("ClusterLogging") or {})
             .get("EnabledTypes", [])]
    if types:
        request["logging"] = {"clusterLogging": [{"types": types, "enabled": True}]}
    eks = client("eks")
    eks.create_cluster(**request)
    # CloudFormation waits for ACTIVE; the bench's clusters are ACTIVE at once.
    cluster = eks.describe_cluster(name=request["name"])["cluster"]
    if cluster["status"] != "ACTIVE":
        raise RuntimeError(f"EKS cluster {request['name']} is {cluster['status']}")
    return cluster["name"], {
        "Arn": cluster["arn"], "Endpoint": cluster["endpoint"],
        "CertificateAuthorityData": cluster["certificateAuthority"]["data"],
        "ClusterSecurityGroupId": cluster["resourcesVpcConfig"]["clusterSecurityGroupId"],
    }


def _nodegroup(p, logical_id):
    scaling = {k[0].lower() + k[1:]: int(v) for k, v in p["ScalingConfig"].items()}
    name = p.get("NodegroupName") or _name(logical_id)
    group = client("eks").create_nodegroup(
        clusterName=p["ClusterName"], nodegroupName=name, nodeRole=p["NodeRole"],
        subnets=p["Subnets"], amiType=p.get("AmiType", "AL2023_x86_64_STANDARD"),
        instanceTypes=p.get("InstanceTypes", []), scalingConfig=scaling)["nodegroup"]
    return f"{p['ClusterName']}/{name}", {"Arn": group["nodegroupArn"], "NodegroupName": name,
                                          "ClusterName": p["ClusterName"]}


def _flow_log(p, _):
    # EC2 checks the destination and the role when the flow log is made.
    if p["LogDestinationType"] == "cloud-watch-logs":
        groups = client("logs").describe_log_groups(logGroupNamePrefix=p["LogGroupName"])
        if not any(g["logGroupName"] == p["LogGroupName"] for g in groups["logGroups"]):
            raise RuntimeError(f"log group {p['LogGroupName']} does not exist")
        client("iam").get_role(RoleName=p["DeliverLogsPermissionArn"].rsplit("/", 1)[-1])
    made = client("ec2").create_flow_logs(
        ResourceIds=[p["ResourceId"]], ResourceType=p["ResourceType"],
        TrafficType=p["TrafficType"], LogDestinationType=p["LogDestinationType"],
        LogGroupName=p["LogGroupName"], DeliverLogsPermissionArn=p["DeliverLogsPermissionArn"],
        TagSpecifications=_tags("vpc-flow-log", p))
    if made.get("Unsuccessful"):
        raise RuntimeError(f"flow log not made: {made['Unsuccessful']}")
    return made["FlowLogIds"][0], {"Id": made["FlowLogIds"][0]}


CREATE = {
    "AWS::EC2::VPC": _vpc,
    "AWS::EC2::InternetGateway": _internet_gateway,
    "AWS::EC2::VPCGatewayAttachment": _gateway_attachment,
    "AWS::EC2::Subnet": _subnet,
    "AWS::EC2::RouteTable": _route_table,
    "AWS::EC2::Route": _route,
    "AWS::EC2::SubnetRouteTableAssociation": _association,
    "AWS::EC2::EIP": _eip,
    "AWS::EC2::NatGateway": _nat_gateway,
    "AWS::EC2::FlowLog": _flow_log,
    "AWS::EKS::Cluster": _eks_cluster,
    "AWS::EKS::Nodegroup": _nodegroup,
}


def create(kind, logical_id, props):
    physical_id, attrs = CREATE[kind](props, logical_id)
    return {"id": physical_id, "attrs": attrs}


def delete(kind, physical_id, props, attrs):
    ec2 = client("ec2")
    if kind == "AWS::EC2::VPC":
        ec2.delete_vpc(VpcId=physical_id)
    elif kind == "AWS::EC2::InternetGateway":
        ec2.delete_internet_gateway(InternetGatewayId=physical_id)
    elif kind == "AWS::EC2::VPCGatewayAttachment":
        ec2.detach_internet_gateway(InternetGatewayId=props["InternetGatewayId"],
                                    VpcId=props["VpcId"])
    elif kind == "AWS::EC2::Subnet":
        ec2.delete_subnet(SubnetId=physical_id)
    elif kind == "AWS::EC2::RouteTable":
        ec2.delete_route_table(RouteTableId=physical_id)
    elif kind == "AWS::EC2::Route":
        ec2.delete_route(RouteTableId=props["RouteTableId"],
                         DestinationCidrBlock=props["DestinationCidrBlock"])
    elif kind == "AWS::EC2::SubnetRouteTableAssociation":
        ec2.disassociate_route_table(AssociationId=physical_id)
    elif kind == "AWS::EC2::EIP":
        ec2.release_address(AllocationId=attrs["AllocationId"])
    elif kind == "AWS::EC2::NatGateway":
        ec2.delete_nat_gateway(NatGatewayId=physical_id)
    elif kind == "AWS::EC2::FlowLog":
        ec2.delete_flow_logs(FlowLogIds=[physical_id])
    elif kind == "AWS::EKS::Cluster":
        client("eks").delete_cluster(name=physical_id)
    elif kind == "AWS::EKS::Nodegroup":
        client("eks").delete_nodegroup(clusterName=attrs["ClusterName"],
                                       nodegroupName=attrs["NodegroupName"])
    else:
        raise KeyError(kind)
    return True
