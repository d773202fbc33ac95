//! What a pre-flight check found, in words that say how to fix it. The user set these values as
//! the stack's parameters, so the Reasons name the parameters (`HopsworksBucketName`), not the
//! resource's properties.

use custom_resource::PropertyError;
use custom_resource::aws::AwsError;

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(transparent)]
    Property(#[from] PropertyError),

    #[error(
        "HopsworksBucketName {given:?} is not an S3 bucket name: use 3 to 63 lowercase letters, \
         digits, dots and hyphens, starting and ending with a letter or digit (the name, not \
         s3:// or an ARN)"
    )]
    InvalidBucketName { given: String },

    #[error(
        "S3 bucket {bucket} (HopsworksBucketName) does not exist: create it in {region} (aws s3 \
         mb s3://{bucket} --region {region}), or give an existing bucket of {region}"
    )]
    NoSuchBucket { bucket: String, region: String },

    #[error(
        "S3 bucket {bucket} (HopsworksBucketName) is in region {actual}, but this stack and the \
         Hopsworks cluster are in {region}, and Hopsworks needs its bucket in its own region: \
         give a bucket of {region} (aws s3 mb s3://NAME --region {region})"
    )]
    BucketElsewhere {
        bucket: String,
        actual: String,
        region: String,
    },

    /// What S3 said follows in the Reason (it tells a bucket policy from the function's role).
    #[error(
        "S3 bucket {bucket} (HopsworksBucketName) cannot be read by this account: it belongs to \
         another AWS account, or a policy denies s3:GetBucketLocation on it; give a bucket of \
         this account in {region}"
    )]
    BucketDenied {
        bucket: String,
        region: String,
        #[source]
        source: AwsError,
    },

    #[error(
        "EC2 key pair {name:?} (HopsworksSshKeyName) was not found in region {region}: create or \
         import it there (EC2 console, Key pairs), or leave HopsworksSshKeyName empty for no SSH \
         access"
    )]
    NoSuchKeyPair { name: String, region: String },

    #[error(
        "HopsworksSubnetId {given:?} is not a subnet id: give subnet- and 8 to 17 hex digits, or \
         leave it empty"
    )]
    InvalidSubnetId { given: String },

    #[error(
        "HopsworksSubnetId {subnet} is set, but CreateEksCluster is true and EKS cluster \
         {cluster} does not exist yet, so no subnet of its new VPC can be named: leave \
         HopsworksSubnetId empty (the Hopsworks VMs then go in the new VPC's first public \
         subnet)"
    )]
    SubnetForNewCluster { subnet: String, cluster: String },

    #[error(
        "subnet {subnet} (HopsworksSubnetId) was not found in region {region}: give a public \
         subnet of VPC {vpc} of EKS cluster {cluster} ({public}), or leave HopsworksSubnetId \
         empty"
    )]
    NoSuchSubnet {
        subnet: String,
        region: String,
        vpc: String,
        cluster: String,
        public: Hint,
    },

    #[error(
        "subnet {subnet} (HopsworksSubnetId) is in VPC {actual}, not in VPC {vpc} of EKS cluster \
         {cluster}: give a public subnet of {vpc} ({public}), or leave HopsworksSubnetId empty"
    )]
    SubnetElsewhere {
        subnet: String,
        actual: String,
        vpc: String,
        cluster: String,
        public: Hint,
    },

    #[error(
        "subnet {subnet} (HopsworksSubnetId) is private: its route table sends no 0.0.0.0/0 or \
         ::/0 traffic to an internet gateway, and the Hopsworks VMs get public IP addresses and \
         a Let's Encrypt certificate, which need one; give a public subnet of VPC {vpc} \
         ({public}), add such a route to its route table, or leave HopsworksSubnetId empty"
    )]
    PrivateSubnet {
        subnet: String,
        vpc: String,
        public: Hint,
    },

    #[error(transparent)]
    Cluster(#[from] eks_cluster::ClusterError),

    /// A call failed for another reason (permissions, throttling after retries, an outage); the
    /// Reason goes on with what AWS said.
    #[error("{call} failed")]
    Aws {
        call: &'static str,
        #[source]
        source: AwsError,
    },

    /// An AWS call answered without what it always holds.
    #[error("{call} failed: {problem}")]
    Answer { call: &'static str, problem: String },
}

/// The public subnets of the EKS cluster, as a hint of what to give instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint(pub Vec<String>);

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [] => f.write_str(
                "the cluster has none: add a subnet whose route table sends 0.0.0.0/0 to an \
                 internet gateway",
            ),
            [one] => write!(f, "the cluster's public subnet is {one}"),
            many => write!(f, "the cluster's public subnets: {}", many.join(", ")),
        }
    }
}
