//! The intrinsic functions the template uses (Ref, GetAtt, Sub, Join, Select, Split, If, Equals,
//! Not, And, Or, FindInMap, Condition, GetAZs, Cidr) and the pseudo parameters; any other fails
//! loudly.

use super::{STACK_NAME, Stack};
use crate::cloudformation::STACK_ID;
use serde_json::{Map, Value, json};

const NO_VALUE: &str = "\u{0}AWS::NoValue";

/// `Fn::Cidr [block, count, bits]`: `count` consecutive subnets of `bits` host bits each, from
/// the start of the IPv4 `block`.
fn cidr(block: &str, count: &str, bits: &str) -> Result<Vec<String>, String> {
    let bad =
        || format!("Fn::Cidr [{block}, {count}, {bits}]: not an IPv4 block, a count and bits");
    let (address, prefix) = block.split_once('/').ok_or_else(bad)?;
    let address: std::net::Ipv4Addr = address.parse().map_err(|_| bad())?;
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    let count: u32 = count.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    if prefix > 32
        || bits > 32 - prefix
        || count == 0
        || u64::from(count) << bits > 1u64 << (32 - prefix)
    {
        return Err(format!(
            "Fn::Cidr: {count} subnets of {bits} bits do not fit in {block}"
        ));
    }
    let base = u32::from(address) & u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    Ok((0..count)
        .map(|i| {
            format!(
                "{}/{}",
                std::net::Ipv4Addr::from(base + (i << bits)),
                32 - bits
            )
        })
        .collect())
}

/// What `Ref` gives for a parameter of type `kind`: CloudFormation gives a `CommaDelimitedList`
/// as the list of its space-trimmed members ("" as `[""]`), whatever string was typed.
fn parameter_value(kind: &Value, value: &Value) -> Value {
    match value {
        Value::String(s) if kind == "CommaDelimitedList" => {
            json!(s.split(',').map(str::trim).collect::<Vec<_>>())
        }
        _ => value.clone(),
    }
}

impl Stack<'_> {
    /// `value` with every intrinsic function in it resolved; `AWS::NoValue` drops its key.
    pub(super) fn resolve(&self, value: &Value) -> Result<Value, String> {
        self.resolve_with(value, None)
    }

    fn pseudo(&self, name: &str) -> Option<Value> {
        let s = &self.aws.seeded;
        Some(json!(match name {
            "AWS::Region" => s.region.clone(),
            "AWS::AccountId" => s.account_id.clone(),
            "AWS::Partition" => "aws".to_owned(),
            "AWS::StackName" => STACK_NAME.to_owned(),
            "AWS::StackId" => STACK_ID.to_owned(),
            "AWS::URLSuffix" => "amazonaws.com".to_owned(),
            "AWS::NoValue" => NO_VALUE.to_owned(),
            _ => return None,
        }))
    }

    fn reference(&self, name: &str) -> Result<Value, String> {
        if let Some(v) = self.pseudo(name) {
            return Ok(v);
        }
        if let Some(v) = self.parameters.get(name) {
            return Ok(parameter_value(
                &self.template["Parameters"][name]["Type"],
                v,
            ));
        }
        self.deployed
            .get(name)
            .map(|d| json!(d.physical_id))
            .ok_or_else(|| format!("Ref {name}: no such parameter or created resource"))
    }

    fn attribute(&self, name: &str, attr: &str) -> Result<Value, String> {
        self.deployed
            .get(name)
            .and_then(|d| d.attrs.get(attr).cloned())
            .ok_or_else(|| format!("Fn::GetAtt {name}.{attr}: no such attribute"))
    }

    pub(super) fn resolve_with(
        &self,
        value: &Value,
        conditions: Option<&Map<String, Value>>,
    ) -> Result<Value, String> {
        let r = |v: &Value| self.resolve_with(v, conditions);
        let text = |v: &Value| -> Result<String, String> {
            let v = r(v)?;
            v.as_str()
                .map(str::to_owned)
                .or_else(|| (!v.is_object() && !v.is_array()).then(|| v.to_string()))
                .ok_or_else(|| format!("expected a string, got {v}"))
        };
        match value {
            Value::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .map(r)
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter()
                    .filter(|v| v != NO_VALUE)
                    .collect(),
            )),
            Value::Object(map) if map.len() == 1 => {
                let Some((key, arg)) = map.iter().next() else {
                    unreachable!("a map of one entry")
                };
                match key.as_str() {
                    "Ref" => self.reference(arg.as_str().unwrap_or_default()),
                    "Fn::GetAtt" => {
                        let (res, attr) = match arg {
                            Value::Array(a) => (text(&a[0])?, text(&a[1])?),
                            Value::String(s) => s
                                .split_once('.')
                                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                                .unwrap_or_default(),
                            _ => return Err(format!("bad Fn::GetAtt {arg}")),
                        };
                        self.attribute(&res, &attr)
                    }
                    "Fn::Sub" => {
                        let (template, vars) = match arg {
                            Value::String(s) => (s.clone(), Map::new()),
                            Value::Array(a) => (
                                text(&a[0])?,
                                a.get(1)
                                    .and_then(Value::as_object)
                                    .cloned()
                                    .unwrap_or_default(),
                            ),
                            _ => return Err(format!("bad Fn::Sub {arg}")),
                        };
                        self.substitute(&template, &vars, conditions)
                            .map(Value::String)
                    }
                    "Fn::Join" => {
                        let delimiter = text(&arg[0])?;
                        let items = r(&arg[1])?;
                        let parts: Vec<String> = items
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                            .collect();
                        Ok(json!(parts.join(&delimiter)))
                    }
                    "Fn::Select" => {
                        let index: usize = text(&arg[0])?
                            .parse()
                            .map_err(|_| format!("bad index in {arg}"))?;
                        let list = r(&arg[1])?;
                        list.get(index)
                            .cloned()
                            .ok_or_else(|| format!("Fn::Select {index} out of {list}"))
                    }
                    "Fn::Split" => {
                        let delimiter = text(&arg[0])?;
                        let source = text(&arg[1])?;
                        Ok(json!(source.split(delimiter.as_str()).collect::<Vec<_>>()))
                    }
                    "Fn::If" => {
                        let name = text(&arg[0])?;
                        let chosen = self.condition_value(&name, conditions)?;
                        r(&arg[if chosen { 1 } else { 2 }])
                    }
                    "Fn::Equals" => Ok(json!(r(&arg[0])? == r(&arg[1])?)),
                    "Fn::Not" => Ok(json!(!r(&arg[0])?.as_bool().unwrap_or(false))),
                    "Fn::And" | "Fn::Or" => {
                        let values: Vec<bool> = arg
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|v| r(v).map(|b| b.as_bool().unwrap_or(false)))
                            .collect::<Result<_, _>>()?;
                        Ok(json!(if key == "Fn::And" {
                            values.iter().all(|b| *b)
                        } else {
                            values.iter().any(|b| *b)
                        }))
                    }
                    "Condition" => self
                        .condition_value(arg.as_str().unwrap_or_default(), conditions)
                        .map(Value::Bool),
                    "Fn::FindInMap" => {
                        let (m, a, b) = (text(&arg[0])?, text(&arg[1])?, text(&arg[2])?);
                        self.template["Mappings"][&m][&a]
                            .get(&b)
                            .cloned()
                            .ok_or_else(|| format!("Fn::FindInMap {m}.{a}.{b}: not found"))
                    }
                    // The Availability Zones moto serves for the bench's region.
                    "Fn::GetAZs" => Ok(json!(
                        ["a", "b", "c"].map(|z| format!("{}{z}", self.aws.seeded.region))
                    )),
                    "Fn::Cidr" => {
                        let block = text(&arg[0])?;
                        let count = text(&arg[1])?;
                        let bits = text(&arg[2])?;
                        cidr(&block, &count, &bits).map(|list| json!(list))
                    }
                    k if k.starts_with("Fn::") => {
                        Err(format!("the bench's engine does not know {k}"))
                    }
                    _ => self.resolve_map(map, conditions),
                }
            }
            Value::Object(map) => self.resolve_map(map, conditions),
            other => Ok(other.clone()),
        }
    }

    fn resolve_map(
        &self,
        map: &Map<String, Value>,
        conditions: Option<&Map<String, Value>>,
    ) -> Result<Value, String> {
        let mut out = Map::new();
        for (k, v) in map {
            let v = self.resolve_with(v, conditions)?;
            if v != NO_VALUE {
                out.insert(k.clone(), v);
            }
        }
        Ok(Value::Object(out))
    }

    fn substitute(
        &self,
        template: &str,
        vars: &Map<String, Value>,
        conditions: Option<&Map<String, Value>>,
    ) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {template}"))?;
            let name = &after[..end];
            let value = if let Some(literal) = name.strip_prefix('!') {
                json!(format!("${{{literal}}}"))
            } else if let Some(v) = vars.get(name) {
                self.resolve_with(v, conditions)?
            } else if let Some((res, attr)) = name.split_once('.') {
                self.attribute(res, attr)?
            } else {
                self.reference(name)?
            };
            out.push_str(
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned)
                    .as_str(),
            );
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{cidr, parameter_value};
    use serde_json::json;

    #[test]
    fn a_comma_delimited_list_is_referenced_as_its_trimmed_members() {
        let list = json!("CommaDelimitedList");
        assert_eq!(parameter_value(&list, &json!("")), json!([""]));
        assert_eq!(
            parameter_value(&list, &json!("Kafka, Ssh")),
            json!(["Kafka", "Ssh"])
        );
        assert_eq!(
            parameter_value(&json!("String"), &json!("a, b")),
            json!("a, b")
        );
    }

    #[test]
    fn cidr_splits_a_block_as_cloudformation_does() {
        assert_eq!(
            cidr("10.0.0.0/16", "4", "12").unwrap(),
            [
                "10.0.0.0/20",
                "10.0.16.0/20",
                "10.0.32.0/20",
                "10.0.48.0/20"
            ]
        );
        // The block's host bits are ignored, as CloudFormation ignores them.
        assert_eq!(
            cidr("10.1.2.3/24", "2", "4").unwrap(),
            ["10.1.2.0/28", "10.1.2.16/28"]
        );
        assert!(
            cidr("10.0.0.0/18", "8", "12").is_err(),
            "8 /20s do not fit in a /18"
        );
        assert!(cidr("10.0.0.0", "1", "8").is_err());
    }
}
