//! ARNs and AWS names, checked before any AWS call so that a typo gets a precise Reason. Here, in
//! the framework every resource links, rather than in `eks-cluster`: HopsworksCluster checks an EKS
//! cluster name too and does not link the EKS SDK. Each resource keeps its own error messages.

/// The parts of an ARN: `arn:partition:service:region:account:resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn<'a> {
    pub partition: &'a str,
    pub service: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

impl<'a> Arn<'a> {
    pub fn parse(text: &'a str) -> Option<Self> {
        let mut parts = text.splitn(6, ':');
        if parts.next()? != "arn" {
            return None;
        }
        let arn = Arn {
            partition: parts.next()?,
            service: parts.next()?,
            region: parts.next()?,
            account: parts.next()?,
            resource: parts.next()?,
        };
        let valid = arn.partition.starts_with("aws")
            && !arn.service.is_empty()
            && !arn.resource.is_empty()
            && (arn.account.is_empty() || is_account_id(arn.account));
        valid.then_some(arn)
    }

    /// For `type/path/name` resources: the type and the last segment (the name).
    pub fn typed_name(&self) -> Option<(&'a str, &'a str)> {
        let (kind, rest) = self.resource.split_once('/')?;
        let name = rest.rsplit('/').next()?;
        (!name.is_empty()).then_some((kind, name))
    }
}

pub fn is_account_id(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit())
}

/// IAM user, role and instance-profile names: 1–128 of letters, digits and `+=,.@_-`.
pub fn is_iam_name(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// EKS cluster names: 1–100 letters, digits, hyphens and underscores, starting with a letter or digit.
pub fn is_eks_cluster_name(text: &str) -> bool {
    (1..=100).contains(&text.len())
        && text.as_bytes()[0].is_ascii_alphanumeric()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An IAM role ARN, `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME` (the path may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleArn<'a> {
    pub partition: &'a str,
    pub account: &'a str,
    pub name: &'a str,
}

impl<'a> RoleArn<'a> {
    pub fn parse(text: &'a str) -> Option<Self> {
        let arn = Arn::parse(text)?;
        let ("role", name) = arn.typed_name()? else {
            return None;
        };
        let valid = arn.service == "iam"
            && arn.region.is_empty()
            && is_account_id(arn.account)
            && name.len() <= 64
            && is_iam_name(name);
        valid.then_some(Self {
            partition: arn.partition,
            account: arn.account,
            name,
        })
    }

    /// The ARN as the EKS authenticator matches it: the IAM path removed
    /// (`arn:aws:iam::111122223333:role/team/x` → `arn:aws:iam::111122223333:role/x`).
    pub fn without_path(&self) -> String {
        format!(
            "arn:{}:iam::{}:role/{}",
            self.partition, self.account, self.name
        )
    }
}

/// [`RoleArn::without_path`] of `role_arn`, if it is a role ARN.
pub fn role_arn_without_path(role_arn: &str) -> Option<String> {
    RoleArn::parse(role_arn).map(|role| role.without_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_instance_profile_arn_with_path() {
        let arn = Arn::parse("arn:aws:iam::123456789012:instance-profile/team/hops").unwrap();
        assert_eq!(arn.account, "123456789012");
        assert_eq!(arn.typed_name(), Some(("instance-profile", "hops")));
    }

    #[test]
    fn rejects_malformed_arns() {
        for bad in [
            "",
            "hops",
            "arn:aws:iam::12345:role/x",
            "arn:aws:iam::123456789012:",
            "arn:gcp:iam::123456789012:role/x",
            "aws:iam::123456789012:role/x",
        ] {
            assert_eq!(Arn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn strips_the_iam_path_from_role_arns() {
        assert_eq!(
            role_arn_without_path("arn:aws:iam::123456789012:role/a/b/hopsworks").as_deref(),
            Some("arn:aws:iam::123456789012:role/hopsworks")
        );
        assert_eq!(
            role_arn_without_path("arn:aws-cn:iam::123456789012:role/r").as_deref(),
            Some("arn:aws-cn:iam::123456789012:role/r")
        );
        assert_eq!(
            role_arn_without_path("arn:aws:iam::123456789012:user/u"),
            None
        );
    }

    #[test]
    fn role_arns_must_be_iam_roles_with_an_account_and_a_valid_name() {
        for bad in [
            "arn:aws:sts::123456789012:role/r",
            "arn:aws:iam:us-east-1:123456789012:role/r",
            "arn:aws:iam:::role/r",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a/",
            "arn:aws:iam::123456789012:instance-profile/p",
            &format!("arn:aws:iam::123456789012:role/{}", "r".repeat(65)),
            "arn:aws:iam::123456789012:role/bad*name",
        ] {
            assert_eq!(RoleArn::parse(bad), None, "{bad}");
        }
        let role = RoleArn::parse("arn:aws-us-gov:iam::123456789012:role/p/q/r").unwrap();
        assert_eq!(
            (role.partition, role.account, role.name),
            ("aws-us-gov", "123456789012", "r")
        );
    }

    #[test]
    fn checks_names() {
        assert!(is_eks_cluster_name("demo-eks_1"));
        assert!(!is_eks_cluster_name("-demo"));
        assert!(!is_eks_cluster_name("demo eks"));
        assert!(!is_eks_cluster_name(&"a".repeat(101)));
        assert!(is_iam_name("hopsworks+profile=1,2.3@x_y-z"));
        assert!(!is_iam_name("with/slash"));
        assert!(!is_iam_name(""));
    }
}
