//! The resource's properties, validated before anything is called.

use custom_resource::{Properties, PropertyError};
use std::net::Ipv4Addr;

/// Where the traffic may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Cidr(String),
    SecurityGroup(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    pub group_id: String,
    pub ports: Vec<u16>,
    pub source: Source,
    pub description: String,
    /// `Tags`: put on the rules it creates (with the owner tag), as `KEY=VALUE` items.
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error(transparent)]
    Property(#[from] PropertyError),
    #[error(
        "give exactly one of SourceCidr and SourceSecurityGroupId (the VPC's CIDR from \
         ClusterDiscovery.VpcCidr is what the guide means)"
    )]
    OneSource,
    #[error(
        "SourceCidr {0} opens ports 80/443 of the EKS cluster to the whole internet; this stack \
         does not do that: use the VPC's CIDR (ClusterDiscovery.VpcCidr) or the Hopsworks \
         security group"
    )]
    Public(String),
}

fn invalid(property: &'static str, given: &str, expected: &'static str) -> InputError {
    PropertyError::invalid(property, expected, format!("{given:?}")).into()
}

fn is_group_id(id: &str) -> bool {
    id.strip_prefix("sg-").is_some_and(|hex| {
        (8..=17).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

impl Input {
    pub fn parse(p: &Properties) -> Result<Self, InputError> {
        let group_id = p.required_str(
            "GroupId",
            "the EKS cluster security group (ClusterDiscovery.ClusterSecurityGroupId)",
        )?;
        if !is_group_id(group_id) {
            return Err(invalid(
                "GroupId",
                group_id,
                "a security group id: sg- and 8 to 17 hex digits",
            ));
        }
        let mut ports = Vec::new();
        let given = p.list("Ports")?;
        for port in if given.is_empty() {
            vec!["80".to_owned(), "443".to_owned()]
        } else {
            given
        } {
            match port.parse::<u16>() {
                Ok(n) if n > 0 && !ports.contains(&n) => ports.push(n),
                Ok(n) if n > 0 => {}
                _ => return Err(invalid("Ports", &port, "TCP ports from 1 to 65535")),
            }
        }
        if ports.len() > 10 {
            return Err(invalid("Ports", &format!("{ports:?}"), "at most 10 ports"));
        }
        let source = match (
            p.optional_str("SourceCidr")?,
            p.optional_str("SourceSecurityGroupId")?,
        ) {
            (Some(cidr), None) => Source::Cidr(check_cidr(cidr)?),
            (None, Some(group)) if is_group_id(group) => Source::SecurityGroup(group.to_owned()),
            (None, Some(group)) => {
                return Err(invalid(
                    "SourceSecurityGroupId",
                    group,
                    "a security group id: sg- and 8 to 17 hex digits",
                ));
            }
            _ => return Err(InputError::OneSource),
        };
        let description = p
            .optional_str("Description")?
            .unwrap_or("Hopsworks (hopsworks-eks-stack)")
            .to_owned();
        let description_ok = description.len() <= 255
            && description
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(c));
        if !description_ok {
            return Err(invalid(
                "Description",
                &description,
                "up to 255 of letters, digits, spaces and ._-:/()#,@[]+=&;{}!$*",
            ));
        }
        // 50 tags per rule, the owner tag among them.
        let tags = p.tags("Tags")?;
        if tags.len() > 49 {
            return Err(invalid(
                "Tags",
                &format!("{} tags", tags.len()),
                "at most 49 tags",
            ));
        }
        Ok(Self {
            group_id: group_id.to_owned(),
            ports,
            source,
            description,
            tags,
        })
    }
}

/// A valid IPv4 CIDR, never the whole internet.
fn check_cidr(cidr: &str) -> Result<String, InputError> {
    let bad = || invalid("SourceCidr", cidr, "an IPv4 CIDR such as 10.42.0.0/16");
    let (address, bits) = cidr.split_once('/').ok_or_else(bad)?;
    let _: Ipv4Addr = address.parse().map_err(|_| bad())?;
    let bits: u8 = bits.parse().map_err(|_| bad())?;
    if bits > 32 {
        return Err(bad());
    }
    if bits == 0 {
        return Err(InputError::Public(cidr.to_owned()));
    }
    Ok(cidr.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(v: Value) -> Result<Input, InputError> {
        let Value::Object(map) = v else {
            unreachable!()
        };
        Input::parse(&Properties::new(map))
    }

    #[test]
    fn defaults_are_the_guides_ports() {
        let input = parse(json!({"GroupId": "sg-0123456789abcdef0", "SourceCidr": "10.42.0.0/16"}))
            .unwrap();
        assert_eq!(input.ports, [80, 443]);
        assert_eq!(input.source, Source::Cidr("10.42.0.0/16".into()));
    }

    #[test]
    fn tags_are_read_for_the_rules_and_the_owner_tag_is_refused() {
        let input = parse(
            json!({"GroupId": "sg-0123456789abcdef0", "SourceCidr": "10.42.0.0/16",
                                 "Tags": "team=data,cost-center=4711"}),
        )
        .unwrap();
        assert_eq!(
            input.tags,
            [
                ("team".to_owned(), "data".to_owned()),
                ("cost-center".to_owned(), "4711".to_owned())
            ]
        );
        let err = parse(
            json!({"GroupId": "sg-0123456789abcdef0", "SourceCidr": "10.42.0.0/16",
                               "Tags": "hopsworks.ai/eks-stack=someone-else"}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("Tags"), "{err}");
    }

    #[test]
    fn refuses_the_internet_and_bad_values() {
        let err = parse(json!({"GroupId": "sg-0123456789abcdef0", "SourceCidr": "0.0.0.0/0"}))
            .unwrap_err();
        assert!(matches!(err, InputError::Public(_)), "{err}");
        let err = parse(json!({"GroupId": "sg-01234567", "SourceCidr": "10.0.0.0/8", "SourceSecurityGroupId": "sg-01234567"})).unwrap_err();
        assert!(matches!(err, InputError::OneSource), "{err}");
        let err =
            parse(json!({"GroupId": "sg-01234567", "SourceCidr": "10.0.0.0/33"})).unwrap_err();
        assert!(err.to_string().contains("SourceCidr"), "{err}");
        let err =
            parse(json!({"GroupId": "vpc-01234567", "SourceCidr": "10.0.0.0/8"})).unwrap_err();
        assert!(err.to_string().contains("GroupId"), "{err}");
        let err = parse(
            json!({"GroupId": "sg-01234567", "SourceCidr": "10.0.0.0/8", "Ports": ["80", "http"]}),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("property Ports must be TCP ports"),
            "{err}"
        );
    }
}
