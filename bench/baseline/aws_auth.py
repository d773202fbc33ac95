"""EksAccess (aws-auth) as people write it today: crhelper + boto3 + the kubernetes client.

The benchmarks' baseline for functions/eks-access in CONFIG_MAP mode: DescribeCluster, the EKS
token the usual way (a botocore pre-signed STS GetCallerIdentity URL signed with x-k8s-aws-id),
then a read-modify-write of aws-auth's mapRoles with PyYAML, the resourceVersion guarding the
write and a retry on 409. Runs under awslambdaric (`python -m awslambdaric aws_auth.handler`).
"""

import base64
import tempfile

import boto3
import yaml
from botocore.signers import RequestSigner
from crhelper import CfnResource
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

helper = CfnResource(json_logging=True, log_level="INFO", boto_level="CRITICAL", sleep_on_delete=0)

eks = boto3.client("eks")
sts = boto3.client("sts")


def eks_token(session, cluster_name):
    region = session.region_name
    client = session.client("sts")
    signer = RequestSigner(client.meta.service_model.service_id, region, "sts", "v4",
                           session.get_credentials(), session.events)
    url = signer.generate_presigned_url(
        {"method": "GET",
         "url": f"https://sts.{region}.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15",
         "body": {}, "headers": {"x-k8s-aws-id": cluster_name}, "context": {}},
        region_name=region, expires_in=60, operation_name="")
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def core_api(cluster_name, kubernetes_role_arn=None):
    cluster = eks.describe_cluster(name=cluster_name)["cluster"]
    session = boto3.session.Session()
    if kubernetes_role_arn:
        creds = sts.assume_role(RoleArn=kubernetes_role_arn,
                                RoleSessionName="hopsworks-eks-access")["Credentials"]
        session = boto3.session.Session(aws_access_key_id=creds["AccessKeyId"],
                                        aws_secret_access_key=creds["SecretAccessKey"],
                                        aws_session_token=creds["SessionToken"])
    ca = tempfile.NamedTemporaryFile(delete=False, suffix=".crt")
    ca.write(base64.b64decode(cluster["certificateAuthority"]["data"]))
    ca.close()
    conf = k8s.Configuration()
    conf.host = cluster["endpoint"]
    conf.ssl_ca_cert = ca.name
    conf.api_key = {"authorization": "Bearer " + eks_token(session, cluster_name)}
    return k8s.CoreV1Api(k8s.ApiClient(conf))


def without_path(role_arn):
    prefix, name = role_arn.split(":role/", 1)
    return f"{prefix}:role/{name.split('/')[-1]}"


def edit_map_roles(api, change):
    """GET aws-auth, change mapRoles, PUT it with the resourceVersion read; again on 409."""
    for _ in range(8):
        cm = api.read_namespaced_config_map("aws-auth", "kube-system")
        roles = yaml.safe_load((cm.data or {}).get("mapRoles") or "[]") or []
        changed = change(roles)
        if changed is None:
            return  # nothing to do
        cm.data = dict(cm.data or {}, mapRoles=yaml.safe_dump(changed, default_flow_style=False))
        try:
            api.replace_namespaced_config_map("aws-auth", "kube-system", cm)
            return
        except ApiException as e:
            if e.status != 409:
                raise
    raise RuntimeError("aws-auth kept changing under us")


def props_of(event):
    props = event["ResourceProperties"]
    groups = props.get("Groups", "system:masters")
    return (props["ClusterName"], without_path(props["RoleArn"]),
            props.get("Username", "hopsworks"),
            groups if isinstance(groups, list) else groups.split(","),
            props.get("KubernetesRoleArn"))


@helper.create
def create(event, _context):
    cluster, arn, username, groups, kube_role = props_of(event)

    def add(roles):
        if any(r.get("rolearn") == arn for r in roles):
            return None
        return roles + [{"rolearn": arn, "username": username, "groups": groups}]

    edit_map_roles(core_api(cluster, kube_role), add)
    helper.Data.update({"AccessMethod": "aws-auth", "RoleArn": arn, "Username": username})
    return f"{cluster}/{arn}"


@helper.delete
def delete(event, _context):
    cluster, arn, _, _, kube_role = props_of(event)

    def remove(roles):
        kept = [r for r in roles if r.get("rolearn") != arn]
        return kept if len(kept) != len(roles) else None

    edit_map_roles(core_api(cluster, kube_role), remove)


@helper.update
def update(event, context):
    return create(event, context)


def handler(event, context):
    helper(event, context)
