"""Package the stack for a deployment from S3 (`make package`): Lambda zips, a packaged template,
the AWS Marketplace launch policy, the upload commands and a CloudFormation quick-create URL.

Usage (make package runs it, after `make release` built the bootstraps):
  .venv/lint/bin/python scripts/package.py --bucket BUCKET [--prefix P] [--region R]
      [--bucket-per-region [--regions "R1 R2 ..."]] [--param Name=Value ...]
      [--arch auto|arm64|x86_64] [--bin-dir target/lambda] [--out dist]

It uploads nothing. It writes into --out (dist/):
  <binary>-<sha256>.zip   one per AWS::Serverless::Function: `bootstrap` (mode 0755) at the root,
                          deterministic (fixed times), named by its content
  README-<sha256>.md      the AWS::ServerlessRepo::Application ReadmeUrl, as `sam package` uploads it
  template.json           the template with each CodeUri on S3, the build Metadata removed and
                          Architectures set to what the bootstraps were built for (read from their
                          ELF headers, so it cannot disagree with the binaries)
  launch-policy.json      what a buyer needs for CloudFormation to create, update and delete every
                          resource of the template after the SAM transform (the Marketplace launch
                          policy); an expanded resource type missing from LAUNCH_ACTIONS fails
  manifest.json           the above with sizes, hashes, URLs and the capabilities the stack needs

--bucket-per-region: the functions' code comes from the bucket "<bucket>-<region>" of the region the
stack runs in (CodeUri Bucket is !Sub "<bucket>-${AWS::Region}"), so one template launches in every
region where such a bucket holds the zips; the template itself is read from --region's bucket.
"""

import argparse
import copy
import hashlib
import io
import json
import logging
import os
import re
import sys
import urllib.parse
import zipfile
from pathlib import Path

from cfnlint.decode import decode
from samtranslator.translator.transform import transform

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "templates" / "template.yaml"
STACK_NAME = "hopsworks-eks"
# What a buyer fills in on the quick-create page (the rest keeps its default). The API key secret
# is the Marketplace deployment parameter: Marketplace stores it and passes the secret's ARN.
USUAL_PARAMETERS = [
    "EksClusterName",
    "HopsworksInstanceProfile",
    "HopsworksPrincipal",
    "HopsworksApiKeySecretArn",
    "HopsworksClusterName",
    "HopsworksBucketName",
]
# ELF e_machine -> Lambda architecture.
ELF_ARCHITECTURES = {62: "x86_64", 183: "arm64"}
SAM_TRANSFORM = "AWS::Serverless-2016-10-31"
PARTITION = "aws"  # AWS Marketplace and the console quick-create link are in the aws partition

# What CloudFormation calls, with the buyer's credentials, to create, read, update and delete a
# resource of each type the expanded template has, and where. Resources are patterns: {stack} is the
# stack name (CloudFormation names roles, functions and log groups "<stack>-<logical id>-<suffix>"),
# and role/* is any role: the instance-profile role and the Hopsworks.ai principal are the buyer's
# own, named at launch. The actions are the resource schemas' handler permissions (cfn-lint ships
# the schemas); check_schema_coverage fails when a schema lists one that is neither here nor in
# NOT_NEEDED, and a resource type missing here fails the packaging.
LAUNCH_ACTIONS = {
    "AWS::IAM::Role": [
        (
            [
                "iam:CreateRole",
                "iam:DeleteRole",
                "iam:GetRole",
                "iam:UpdateRole",
                "iam:UpdateRoleDescription",
                "iam:UpdateAssumeRolePolicy",
                "iam:TagRole",
                "iam:UntagRole",
                "iam:PutRolePolicy",
                "iam:GetRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:ListRolePolicies",
                "iam:AttachRolePolicy",
                "iam:DetachRolePolicy",
                "iam:ListAttachedRolePolicies",
                "iam:PutRolePermissionsBoundary",
                "iam:DeleteRolePermissionsBoundary",
            ],
            ["arn:{partition}:iam::*:role/{stack}-*"],
        ),
    ],
    # InstanceProfileRolePolicy goes on the instance profile's role (any name).
    "AWS::IAM::RolePolicy": [
        (
            ["iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy"],
            ["arn:{partition}:iam::*:role/*"],
        ),
    ],
    # HopsworksAiEcrDeletePolicy goes on the Hopsworks.ai principal: a role or a user (any name).
    "AWS::IAM::Policy": [
        (
            [
                "iam:PutRolePolicy",
                "iam:GetRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:PutUserPolicy",
                "iam:GetUserPolicy",
                "iam:DeleteUserPolicy",
            ],
            ["arn:{partition}:iam::*:role/*", "arn:{partition}:iam::*:user/*"],
        ),
    ],
    "AWS::Logs::LogGroup": [
        (
            [
                "logs:CreateLogGroup",
                "logs:DeleteLogGroup",
                "logs:PutRetentionPolicy",
                "logs:DeleteRetentionPolicy",
                "logs:TagResource",
                "logs:UntagResource",
                "logs:ListTagsForResource",
                "logs:GetDataProtectionPolicy",
                "logs:DescribeIndexPolicies",
            ],
            ["arn:{partition}:logs:*:*:log-group:{stack}-*"],
        ),
        # List calls: authorised on all of the account's log groups or resource policies.
        (["logs:DescribeLogGroups"], ["arn:{partition}:logs:*:*:log-group:*"]),
        (["logs:DescribeResourcePolicies"], ["*"]),
    ],
    "AWS::Lambda::Function": [
        (
            [
                "lambda:CreateFunction",
                "lambda:DeleteFunction",
                "lambda:GetFunction",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:PublishVersion",
                "lambda:TagResource",
                "lambda:UntagResource",
                "lambda:GetFunctionCodeSigningConfig",
                "lambda:GetFunctionRecursionConfig",
                "lambda:PutFunctionRecursionConfig",
                "lambda:GetRuntimeManagementConfig",
                "lambda:PutRuntimeManagementConfig",
                "lambda:GetFunctionScalingConfig",
                "lambda:AssociateRuntimeAlias",
            ],
            ["arn:{partition}:lambda:*:*:function:{stack}-*"],
        ),
        # Each function's role is one of the stack's (Role: !GetAtt ...Role.Arn).
        (
            ["iam:PassRole"],
            ["arn:{partition}:iam::*:role/{stack}-*"],
            {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
        ),
        # The code: the same grant as ReadTheArtifacts in launch_policy.
        (["s3:GetObject", "s3:GetObjectVersion"], ["{artifacts}"]),
        # EksAccessSubnetIds/EksAccessSecurityGroupId: Lambda checks the VpcConfig it is given.
        (["ec2:DescribeSecurityGroups", "ec2:DescribeSubnets", "ec2:DescribeVpcs",
          "ec2:DescribeNetworkInterfaces"], ["*"]),
    ],
    # The new-cluster path (CreateEksCluster true). EC2 network resources get their ids when they
    # are made and the template launches in any region, so these actions cannot name them: they
    # are granted on "*".
    "AWS::EC2::VPC": [
        (
            [
                "ec2:CreateVpc", "ec2:DeleteVpc", "ec2:DescribeVpcs", "ec2:ModifyVpcAttribute",
                "ec2:DescribeVpcAttribute", "ec2:ModifyVpcTenancy", "ec2:DescribeNetworkAcls",
                "ec2:DescribeSecurityGroups", "ec2:CreateVpcEncryptionControl",
                "ec2:DescribeVpcEncryptionControls", "ec2:CreateTags", "ec2:DeleteTags",
            ],
            ["*"],
        ),
    ],
    "AWS::EC2::InternetGateway": [
        (
            ["ec2:CreateInternetGateway", "ec2:DeleteInternetGateway",
             "ec2:DescribeInternetGateways", "ec2:CreateTags", "ec2:DeleteTags"],
            ["*"],
        ),
    ],
    "AWS::EC2::VPCGatewayAttachment": [
        (
            ["ec2:AttachInternetGateway", "ec2:DetachInternetGateway",
             "ec2:DescribeInternetGateways"],
            ["*"],
        ),
    ],
    "AWS::EC2::Subnet": [
        (
            ["ec2:CreateSubnet", "ec2:DeleteSubnet", "ec2:DescribeSubnets",
             "ec2:ModifySubnetAttribute", "ec2:DescribeNetworkAcls", "ec2:CreateTags",
             "ec2:DeleteTags"],
            ["*"],
        ),
    ],
    "AWS::EC2::RouteTable": [
        (
            ["ec2:CreateRouteTable", "ec2:DeleteRouteTable", "ec2:DescribeRouteTables",
             "ec2:CreateTags", "ec2:DeleteTags"],
            ["*"],
        ),
    ],
    "AWS::EC2::Route": [
        (
            ["ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ReplaceRoute", "ec2:DescribeRouteTables",
             "ec2:DescribeNetworkInterfaces"],
            ["*"],
        ),
    ],
    "AWS::EC2::SubnetRouteTableAssociation": [
        (
            ["ec2:AssociateRouteTable", "ec2:DisassociateRouteTable",
             "ec2:ReplaceRouteTableAssociation", "ec2:DescribeRouteTables",
             "ec2:DescribeSubnets"],
            ["*"],
        ),
    ],
    "AWS::EC2::EIP": [
        (
            ["ec2:AllocateAddress", "ec2:ReleaseAddress", "ec2:DescribeAddresses",
             "ec2:CreateTags", "ec2:DeleteTags"],
            ["*"],
        ),
    ],
    "AWS::EC2::NatGateway": [
        (
            ["ec2:CreateNatGateway", "ec2:DeleteNatGateway", "ec2:DescribeNatGateways",
             "ec2:CreateTags", "ec2:DeleteTags"],
            ["*"],
        ),
    ],
    # NewClusterFlowLogs: the VPC's flow logs to the stack's log group, delivered by the stack's
    # role (named <stack>-NewFlowLogRole-…).
    "AWS::EC2::FlowLog": [
        (
            ["ec2:CreateFlowLogs", "ec2:DeleteFlowLogs", "ec2:DescribeFlowLogs",
             "ec2:DescribeTags", "ec2:CreateTags", "ec2:DeleteTags", "autoscaling:DescribeTags",
             "logs:CreateLogDelivery", "logs:DeleteLogDelivery"],
            ["*"],
        ),
        (["iam:PassRole"], ["arn:{partition}:iam::*:role/{stack}-*"]),
    ],
    # The cluster's name is a parameter: any cluster of the account; its roles are the stack's.
    "AWS::EKS::Cluster": [
        (
            ["eks:CreateCluster", "eks:DeleteCluster", "eks:DescribeCluster",
             "eks:UpdateClusterConfig", "eks:UpdateClusterVersion", "eks:DescribeUpdate",
             "eks:TagResource", "eks:UntagResource", "eks:CreateAccessEntry",
             "eks:ActivateCertificateAuthority"],
            ["arn:{partition}:eks:*:*:cluster/*"],
        ),
        (["ec2:DescribeSubnets", "ec2:DescribeVpcs"], ["*"]),
        (["iam:GetRole", "iam:ListAttachedRolePolicies"], ["arn:{partition}:iam::*:role/{stack}-*"]),
        (
            ["iam:PassRole"],
            ["arn:{partition}:iam::*:role/{stack}-*"],
            {"StringEquals": {"iam:PassedToService": "eks.amazonaws.com"}},
        ),
        # EKS's service-linked roles, made the first time an account uses EKS.
        (
            ["iam:CreateServiceLinkedRole"],
            ["arn:{partition}:iam::*:role/aws-service-role/eks.amazonaws.com/*",
             "arn:{partition}:iam::*:role/aws-service-role/eks-nodegroup.amazonaws.com/*"],
        ),
        # The handler manages instance profiles for EKS Auto Mode node roles.
        (
            ["iam:CreateInstanceProfile", "iam:DeleteInstanceProfile", "iam:GetInstanceProfile",
             "iam:AddRoleToInstanceProfile", "iam:RemoveRoleFromInstanceProfile",
             "iam:TagInstanceProfile"],
            ["arn:{partition}:iam::*:instance-profile/*"],
        ),
    ],
    "AWS::EKS::Nodegroup": [
        (
            ["eks:CreateNodegroup", "eks:DeleteNodegroup", "eks:DescribeNodegroup",
             "eks:UpdateNodegroupConfig", "eks:UpdateNodegroupVersion", "eks:DescribeUpdate",
             "eks:ListUpdates", "eks:TagResource", "eks:UntagResource"],
            ["arn:{partition}:eks:*:*:cluster/*", "arn:{partition}:eks:*:*:nodegroup/*/*/*"],
        ),
        (
            ["ec2:DescribeSubnets", "ec2:DescribeVpcs", "ec2:DescribeRouteTables",
             "ec2:DescribeSecurityGroups", "ec2:DescribeKeyPairs", "ec2:DescribeLaunchTemplates",
             "ec2:DescribeLaunchTemplateVersions", "ec2:RunInstances", "ec2:CreateTags",
             "ec2:DeleteTags"],
            ["*"],
        ),
        (["iam:GetRole", "iam:ListAttachedRolePolicies"], ["arn:{partition}:iam::*:role/{stack}-*"]),
        (
            ["iam:PassRole"],
            ["arn:{partition}:iam::*:role/{stack}-*"],
            {"StringEquals": {"iam:PassedToService": "eks.amazonaws.com"}},
        ),
        (
            ["iam:CreateServiceLinkedRole"],
            ["arn:{partition}:iam::*:role/aws-service-role/eks-nodegroup.amazonaws.com/*"],
        ),
    ],
    # Orders resources only; CloudFormation needs no permission for it.
    "AWS::CloudFormation::WaitConditionHandle": [],
    # CloudFormation invokes a custom resource's ServiceToken with the caller's credentials.
    "Custom::": [
        (["lambda:InvokeFunction"], ["arn:{partition}:lambda:*:*:function:{stack}-*"]),
    ],
}

# Handler permissions a resource schema lists that this template does not need, each under the
# property that would need it (None: not needed whatever the properties). check_schema_coverage
# fails if a resource of the type sets that property, so a new property cannot go unnoticed.
NOT_NEEDED = {
    "AWS::EC2::FlowLog": [
        # Delivery to S3 (LogDestination with LogDestinationType s3) only; ours goes to a log
        # group through DeliverLogsPermissionArn, so no service-linked role either.
        ("LogDestination", ["s3:GetBucketPolicy", "s3:PutBucketPolicy", "iam:CreateServiceLinkedRole"]),
    ],
    "AWS::EC2::VPCGatewayAttachment": [
        ("VpnGatewayId", ["ec2:AttachVpnGateway", "ec2:DetachVpnGateway",
                          "ec2:DescribeVpnGateways"]),
    ],
    "AWS::EC2::Subnet": [
        ("Ipv6CidrBlock", ["ec2:AssociateSubnetCidrBlock", "ec2:DisassociateSubnetCidrBlock"]),
    ],
    "AWS::EC2::EIP": [
        ("TransferAddress", ["ec2:AcceptAddressTransfer"]),
        ("InstanceId", ["ec2:AssociateAddress", "ec2:DisassociateAddress"]),
    ],
    "AWS::EC2::NatGateway": [
        ("SecondaryPrivateIpAddresses", ["ec2:AssignPrivateNatGatewayAddress",
                                         "ec2:UnassignPrivateNatGatewayAddress"]),
        ("SecondaryAllocationIds", ["ec2:AssociateNatGatewayAddress",
                                    "ec2:DisassociateNatGatewayAddress"]),
    ],
    "AWS::EKS::Cluster": [
        ("EncryptionConfig", ["kms:CreateGrant", "kms:DescribeKey"]),
    ],
    "AWS::IAM::Policy": [
        ("Groups", ["iam:PutGroupPolicy", "iam:GetGroupPolicy", "iam:DeleteGroupPolicy"]),
    ],
    "AWS::Lambda::Function": [
        ("FileSystemConfigs", ["elasticfilesystem:DescribeMountTargets", "s3files:ListMountTargets"]),
        ("KmsKeyArn", ["kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
                       "kms:GenerateDataKey"]),
        ("Layers", ["lambda:GetLayerVersion"]),
        ("CodeSigningConfigArn", ["lambda:GetCodeSigningConfig", "lambda:PutFunctionCodeSigningConfig",
                                  "lambda:DeleteFunctionCodeSigningConfig"]),
        ("ReservedConcurrentExecutions", ["lambda:PutFunctionConcurrency",
                                          "lambda:DeleteFunctionConcurrency"]),
        ("FunctionScalingConfig", ["lambda:PutFunctionScalingConfig"]),
        ("CapacityProviderConfig", ["lambda:PassCapacityProvider"]),
    ],
    "AWS::Logs::LogGroup": [
        ("DataProtectionPolicy", ["logs:PutDataProtectionPolicy", "logs:DeleteDataProtectionPolicy",
                                  "logs:CreateLogDelivery", "s3:REST.PUT.OBJECT",
                                  "firehose:TagDeliveryStream"]),
        ("ResourcePolicyDocument", ["logs:PutResourcePolicy", "logs:DeleteResourcePolicy"]),
        ("FieldIndexPolicies", ["logs:PutIndexPolicy", "logs:DeleteIndexPolicy"]),
        ("KmsKeyId", ["logs:AssociateKmsKey", "logs:DisassociateKmsKey"]),
        ("DeletionProtectionEnabled", ["logs:PutLogGroupDeletionProtection"]),
        ("BearerTokenAuthenticationEnabled", ["logs:PutBearerTokenAuthentication"]),
    ],
}
# The handlers whose permissions a launch needs (not "list": CloudFormation does not list).
HANDLERS = ("create", "read", "update", "delete")


class PackageError(Exception):
    """Something the caller must fix; the message says what."""


class NoManagedPolicies:
    """The template names no managed policies by name, so none need looking up in IAM."""

    def load(self):
        return {}


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def elf_architecture(path):
    """The Lambda architecture of an ELF executable, from its header."""
    header = path.read_bytes()[:20]
    if len(header) < 20 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
        raise PackageError(f"{path} is not a 64-bit little-endian ELF executable")
    machine = int.from_bytes(header[18:20], "little")
    if machine not in ELF_ARCHITECTURES:
        raise PackageError(f"{path} is built for ELF machine {machine}, which Lambda does not run")
    return ELF_ARCHITECTURES[machine]


def lambda_zip(bootstrap):
    """A zip as Lambda wants it: `bootstrap` at the root, executable; the same bytes every time."""
    info = zipfile.ZipInfo("bootstrap", date_time=(1980, 1, 1, 0, 0, 0))
    info.create_system = 3  # unix, so that the mode below is read
    info.external_attr = 0o100755 << 16  # a regular file, rwxr-xr-x
    info.compress_type = zipfile.ZIP_DEFLATED
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(info, bootstrap.read_bytes(), compresslevel=9)
    return out.getvalue()


def check_bucket(name):
    # Virtual-hosted https URLs (the template URL) need a name without dots.
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name):
        raise PackageError(
            f"bucket {name!r}: give an S3 bucket name of 3 to 63 lowercase letters, digits and "
            "hyphens (no dots: CloudFormation reads the template over https)"
        )


def check_prefix(prefix):
    if prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        raise PackageError(f"prefix {prefix!r}: no leading, trailing or double slash")
    if not re.fullmatch(r"[A-Za-z0-9!_.*'()/-]*", prefix):
        raise PackageError(f"prefix {prefix!r}: use letters, digits and !_.*'()/- only")


def load_template(path):
    template, errors = decode(str(path))
    if errors:
        raise PackageError(f"{path} does not parse: {errors}")
    # cfn-lint's node types -> plain dicts, lists and strings
    return json.loads(json.dumps(template, default=str))


class Location:
    """Where the artifacts go: one bucket, or one per region named <bucket>-<region>."""

    def __init__(self, bucket, prefix, region, per_region):
        check_bucket(bucket)
        if per_region:
            check_bucket(f"{bucket}-{region}")
        check_prefix(prefix)
        self.bucket, self.prefix, self.region, self.per_region = bucket, prefix, region, per_region

    def key(self, name):
        return f"{self.prefix}/{name}" if self.prefix else name

    def bucket_in(self, region):
        return f"{self.bucket}-{region}" if self.per_region else self.bucket

    def code_uri(self, name):
        if self.per_region:
            return {"Bucket": {"Fn::Sub": f"{self.bucket}-${{AWS::Region}}"}, "Key": self.key(name)}
        return f"s3://{self.bucket}/{self.key(name)}"

    def https_url(self, name):
        bucket = self.bucket_in(self.region)
        key = urllib.parse.quote(self.key(name))
        return f"https://{bucket}.s3.{self.region}.amazonaws.com/{key}"

    def artifact_arns(self):
        bucket = f"{self.bucket}-*" if self.per_region else self.bucket
        return [f"arn:{PARTITION}:s3:::{bucket}/{self.key('*')}"]


def build_zips(template, bin_dir, out):
    """Zip each function's bootstrap into out; returns {binary: zip info} and the architecture."""
    zips, architectures = {}, set()
    for name, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        binary = (resource.get("Metadata") or {}).get("BuildProperties", {}).get("Binary")
        if not binary:
            raise PackageError(f"{name}: no Metadata.BuildProperties.Binary names its binary")
        bootstrap = bin_dir / binary / "bootstrap"
        if not bootstrap.is_file():
            raise PackageError(f"{name}: {bootstrap} is missing: run make release")
        architectures.add(elf_architecture(bootstrap))
        data = lambda_zip(bootstrap)
        zip_name = f"{binary}-{sha256(data)[:16]}.zip"
        (out / zip_name).write_bytes(data)
        zips[binary] = {
            "zip": zip_name,
            "zip_bytes": len(data),
            "bootstrap_bytes": bootstrap.stat().st_size,
            "sha256": sha256(data),
        }
    if not zips:
        raise PackageError("the template has no AWS::Serverless::Function")
    if len(architectures) != 1:
        raise PackageError(f"the bootstraps are built for different architectures: {architectures}")
    return zips, architectures.pop()


def packaged_template(template, zips, architecture, location, readme_name):
    """The template pointing at the uploaded artifacts, with the architecture built."""
    packaged = copy.deepcopy(template)
    function_globals = packaged.setdefault("Globals", {}).setdefault("Function", {})
    function_globals["Architectures"] = [architecture]
    for resource in packaged["Resources"].values():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        metadata = resource["Metadata"]
        binary = metadata.pop("BuildProperties")["Binary"]
        metadata.pop("BuildMethod", None)
        if not metadata:
            del resource["Metadata"]
        resource["Properties"]["CodeUri"] = location.code_uri(zips[binary]["zip"])
        if "Architectures" in resource["Properties"]:
            resource["Properties"]["Architectures"] = [architecture]
    application = packaged.get("Metadata", {}).get("AWS::ServerlessRepo::Application")
    if application and readme_name:
        bucket = location.bucket_in(location.region)
        application["ReadmeUrl"] = f"s3://{bucket}/{location.key(readme_name)}"
    return packaged


def expand(template, region):
    """The SAM transform, as CloudFormation runs it (aws-sam-translator, offline)."""
    os.environ["AWS_DEFAULT_REGION"] = region
    # The translator records metrics for a publisher that is not there, and warns about it.
    logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)
    return transform(copy.deepcopy(template), {}, NoManagedPolicies())


def type_key(resource_type):
    """The LAUNCH_ACTIONS key of a resource type (every custom resource shares one)."""
    if resource_type.startswith("Custom::") or resource_type == "AWS::CloudFormation::CustomResource":
        return "Custom::"
    return resource_type


def launch_actions(resource_type):
    key = type_key(resource_type)
    if key not in LAUNCH_ACTIONS:
        raise PackageError(
            f"the expanded template has a {resource_type} resource, which LAUNCH_ACTIONS in "
            f"{Path(__file__).name} does not cover: add the actions CloudFormation needs to "
            "create, update and delete it (its resource schema's handler permissions)"
        )
    return LAUNCH_ACTIONS[key]


def schema_permissions(resource_type, region):
    """The permissions CloudFormation's handlers for the type need, from its resource schema."""
    from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

    schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema(region, resource_type).schema
    handlers = schema.get("handlers", {})
    return {p for h in HANDLERS for p in handlers.get(h, {}).get("permissions", [])}


def check_schema_coverage(expanded, region):
    """Every handler permission of every resource type is granted or, for a property no resource
    of the type sets, set aside in NOT_NEEDED."""
    problems = []
    by_type = {}
    for name, resource in expanded["Resources"].items():
        by_type.setdefault(resource["Type"], []).append((name, resource))
    for resource_type, resources in sorted(by_type.items()):
        if type_key(resource_type) == "Custom::":
            continue  # no schema: CloudFormation invokes the ServiceToken
        granted = {a for grant in launch_actions(resource_type) for a in grant[0]}
        set_aside = set()
        for prop, actions in NOT_NEEDED.get(resource_type, []):
            for name, resource in resources:
                if prop in resource.get("Properties", {}):
                    problems.append(
                        f"{name} ({resource_type}) sets {prop}, so the launch policy needs "
                        f"{', '.join(actions)}: move them from NOT_NEEDED to LAUNCH_ACTIONS"
                    )
            set_aside.update(actions)
        for action in sorted(schema_permissions(resource_type, region) - granted - set_aside):
            problems.append(
                f"the {resource_type} schema's handlers need {action}, which neither "
                "LAUNCH_ACTIONS nor NOT_NEEDED lists"
            )
    if problems:
        raise PackageError("launch policy: " + "; ".join(problems))


def launch_policy(expanded, location, stack_name, region):
    """The IAM policy a buyer needs to launch (create, update, delete) the stack."""
    check_schema_coverage(expanded, region)
    fill = {"partition": PARTITION, "stack": stack_name}

    def resources(patterns):
        out = []
        for pattern in patterns:
            out += location.artifact_arns() if pattern == "{artifacts}" else [pattern.format(**fill)]
        return tuple(out)

    # (Sid, actions, resource patterns, condition); the per-type grants join these by scope.
    fixed = [
        ("ManageTheStack", ["cloudformation:*"], ["arn:{partition}:cloudformation:*:*:stack/{stack}/*"], None),
        (
            "ExpandTheSamTransform",
            ["cloudformation:CreateChangeSet"],
            ["arn:{partition}:cloudformation:*:aws:transform/Serverless-2016-10-31"],
            None,
        ),
        # The console reads the template before there is a stack; these take no resource.
        (
            "ReadTheTemplate",
            ["cloudformation:GetTemplateSummary", "cloudformation:ValidateTemplate",
             "cloudformation:ListStacks", "cloudformation:DescribeStacks"],
            ["*"],
            None,
        ),
        # CloudFormation reads the template, and Lambda the zips, with the caller's rights.
        ("ReadTheArtifacts", ["s3:GetObject", "s3:GetObjectVersion"], ["{artifacts}"], None),
    ]
    statements = {}  # (resources, condition) -> [Sid parts, set of actions]
    for sid, actions, patterns, condition in fixed:
        statements[(resources(patterns), json.dumps(condition))] = [[sid], set(actions)]
    types = sorted({r["Type"] for r in expanded["Resources"].values()})
    for resource_type in types:
        for grant in launch_actions(resource_type):
            condition = grant[2] if len(grant) > 2 else None
            scope = (resources(grant[1]), json.dumps(condition))
            sid, actions = statements.setdefault(scope, [[], set()])
            key = type_key(resource_type)
            part = "CustomResources" if key == "Custom::" else re.sub(r"\W|_", "", key[5:])
            if not sid or (sid[0].startswith("For") and part not in sid):
                sid.append(part if sid else f"For{part}")
            actions.update(grant[0])
    policy, sids = [], set()
    for (scope, condition), (sid, actions) in statements.items():
        sid = "And".join(sid)
        while sid in sids:  # the same types at another scope
            sid += "Too"
        sids.add(sid)
        statement = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": list(scope)}
        if json.loads(condition):
            statement["Condition"] = json.loads(condition)
        policy.append(statement)
    return {"Version": "2012-10-17", "Statement": policy}, types


def capabilities(expanded):
    """What the buyer acknowledges: IAM resources, named ones, and the SAM transform."""
    named = {
        "AWS::IAM::Role": "RoleName",
        "AWS::IAM::User": "UserName",
        "AWS::IAM::Group": "GroupName",
        "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
        "AWS::IAM::InstanceProfile": "InstanceProfileName",
    }
    found = set()
    for resource in expanded["Resources"].values():
        kind = resource["Type"]
        if kind.startswith("AWS::IAM::"):
            found.add("CAPABILITY_IAM")
            if named.get(kind) in resource.get("Properties", {}):
                found.add("CAPABILITY_NAMED_IAM")
    return sorted(found) + ["CAPABILITY_AUTO_EXPAND"]


def parse_params(pairs, template):
    """Name=Value pairs for the quick-create page, each checked against the template's rules."""
    parameters = template.get("Parameters", {})
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise PackageError(f"--param {pair!r}: give Name=Value")
        if name not in parameters:
            raise PackageError(f"--param {name}: the template has no such parameter")
        spec = parameters[name]
        allowed = [str(v) for v in spec.get("AllowedValues", [])]
        pattern = spec.get("AllowedPattern")
        if (allowed and value not in allowed) or (pattern and not re.fullmatch(pattern, value)):
            raise PackageError(f"--param {name}={value!r}: {spec.get('ConstraintDescription')}")
        values[name] = value
    return values


def quick_create_url(template_url, region, stack_name, template, given):
    """The console's quick-create page for the template, with the usual parameters filled in."""
    query = [("templateURL", template_url), ("stackName", stack_name)]
    parameters = template.get("Parameters", {})
    for name in USUAL_PARAMETERS + sorted(set(given) - set(USUAL_PARAMETERS)):
        if name in parameters:
            value = given.get(name, str(parameters[name].get("Default", "")))
            query.append((f"param_{name}", value))
    fragment = "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in query)
    return (
        f"https://console.aws.amazon.com/cloudformation/home?region={region}"
        f"#/stacks/create/review?{fragment}"
    )


def upload_commands(location, out, names, regions):
    out = os.path.relpath(out)
    commands = []
    for region in regions if location.per_region else [location.region]:
        bucket = location.bucket_in(region)
        for name in names:
            commands.append(
                f"aws s3 cp {out}/{name} s3://{bucket}/{location.key(name)} --region {region}"
            )
    return commands


def package(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("*.zip")) + list(out.glob("README-*.md")):
        stale.unlink()
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,127}", args.stack_name):
        raise PackageError(f"stack name {args.stack_name!r}: a letter, then up to 127 letters, digits and hyphens")
    template = load_template(args.template)
    prefix = args.prefix
    if prefix is None:  # a prefix per version, so a launched version's template stays as it was
        application = template.get("Metadata", {}).get("AWS::ServerlessRepo::Application", {})
        prefix = f"hopsworks-eks-stack/{application.get('SemanticVersion', 'dev')}"
    location = Location(args.bucket, prefix, args.region, args.bucket_per_region)
    regions = args.regions.split() if args.regions else [args.region]
    for region in regions:
        check_bucket(location.bucket_in(region))
    given = parse_params(args.param, template)

    zips, architecture = build_zips(template, Path(args.bin_dir), out)
    if args.arch not in ("auto", architecture):
        raise PackageError(f"ARCH={args.arch}, but the bootstraps in {args.bin_dir} are {architecture}")
    readme_name = None
    application = template.get("Metadata", {}).get("AWS::ServerlessRepo::Application", {})
    if application.get("ReadmeUrl"):
        readme = (Path(args.template).parent / application["ReadmeUrl"]).resolve()
        readme_name = f"README-{sha256(readme.read_bytes())[:16]}.md"
        (out / readme_name).write_bytes(readme.read_bytes())

    packaged = packaged_template(template, zips, architecture, location, readme_name)
    text = json.dumps(packaged, indent=1) + "\n"
    if len(text.encode()) >= 1_000_000:
        raise PackageError(f"the packaged template is {len(text.encode())} bytes; the limit is 1 MB")
    (out / "template.json").write_text(text)

    expanded = expand(packaged, args.region)
    policy, types = launch_policy(expanded, location, args.stack_name, args.region)
    # A managed policy holds at most 6,144 characters, whitespace not counted.
    size = len(re.sub(r"\s", "", json.dumps(policy)))
    if size > 6144:
        raise PackageError(f"the launch policy has {size} characters; a managed policy holds 6,144")
    (out / "launch-policy.json").write_text(json.dumps(policy, indent=1) + "\n")

    template_url = location.https_url("template.json")
    url = quick_create_url(template_url, args.region, args.stack_name, packaged, given)
    names = [z["zip"] for z in zips.values()] + ([readme_name] if readme_name else [])
    names.append("template.json")
    manifest = {
        "architecture": architecture,
        "functions": zips,
        "template": "template.json",
        "template_url": template_url,
        "quick_create_url": url,
        "launch_policy": "launch-policy.json",
        "resource_types": types,
        "capabilities": capabilities(expanded),
        "upload": upload_commands(location, out, names, regions),
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def report(manifest, out):
    print(f"package: {len(manifest['functions'])} functions built for {manifest['architecture']}, in {out}/:")
    for binary, z in sorted(manifest["functions"].items()):
        print(f"  {z['zip']:45} {z['zip_bytes']:>10,} bytes (bootstrap {z['bootstrap_bytes']:,})")
    print(f"  template.json, launch-policy.json ({len(manifest['resource_types'])} resource types), manifest.json")
    print("\nUpload (nothing was uploaded):")
    for command in manifest["upload"]:
        print(f"  {command}")
    print(f"\nCapabilities to acknowledge: {' '.join(manifest['capabilities'])}")
    print(f"Template URL: {manifest['template_url']}")
    print(f"Quick-create URL:\n{manifest['quick_create_url']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", required=True, help="S3 bucket (or bucket name prefix, with --bucket-per-region)")
    parser.add_argument("--prefix", help="key prefix in the bucket (hopsworks-eks-stack/<SemanticVersion>)")
    parser.add_argument("--arch", default="auto", choices=["auto", "arm64", "x86_64"],
                        help="the architecture the bootstraps must be built for")
    parser.add_argument("--region", default="us-east-1", help="region of the quick-create link (and its bucket)")
    parser.add_argument("--bucket-per-region", action="store_true", help="code from <bucket>-<region>")
    parser.add_argument("--regions", default="", help="regions to print upload commands for (--bucket-per-region)")
    parser.add_argument("--param", action="append", default=[], help="Name=Value for the quick-create page")
    parser.add_argument("--stack-name", default=STACK_NAME,
                        help="the stack name of the quick-create link; the launch policy is scoped to it")
    parser.add_argument("--bin-dir", default=str(ROOT / os.environ.get("CARGO_TARGET_DIR", "target") / "lambda"))
    parser.add_argument("--template", default=str(TEMPLATE))
    parser.add_argument("--out", default=str(ROOT / "dist"))
    args = parser.parse_args(argv)
    try:
        manifest = package(args)
    except PackageError as e:
        sys.exit(f"package: {e}")
    report(manifest, args.out)


if __name__ == "__main__":
    main()
