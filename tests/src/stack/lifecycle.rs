//! Create and Delete: every resource in dependency order (a failed Create rolled back), each by
//! its type's handler, with the events `sam deploy` prints.

use super::{Deployed, STACK_NAME, Stack, elapsed, event};
use serde_json::{Map, Value};
use std::time::Instant;

impl Stack<'_> {
    /// Create every resource; on a failure, roll back what was made and return the failure.
    pub async fn create(&mut self) -> Result<(), String> {
        let order = self.creation_order()?;
        for name in order {
            let resource = self.template["Resources"][&name].clone();
            let kind = resource["Type"].as_str().unwrap_or_default().to_owned();
            event("CREATE_IN_PROGRESS", &name, &kind, "");
            let started = Instant::now();
            match self.create_one(&name, &resource).await {
                Ok(()) => event("CREATE_COMPLETE", &name, &kind, &elapsed(started)),
                Err(reason) => {
                    event("CREATE_FAILED", &name, &kind, &reason);
                    println!("\nRolling back stack {STACK_NAME}\n");
                    self.delete().await?;
                    return Err(reason);
                }
            }
        }
        Ok(())
    }

    pub(super) async fn create_one(&mut self, name: &str, resource: &Value) -> Result<(), String> {
        self.attempted.push(name.to_owned());
        let kind = resource["Type"].as_str().unwrap_or_default().to_owned();
        let properties = self.resolve(&resource["Properties"])?;
        let deployed = match kind.as_str() {
            "AWS::IAM::Role" => self.create_role(name, &properties).await?,
            "AWS::IAM::RolePolicy" | "AWS::IAM::Policy" => self.put_policy(&properties).await?,
            "AWS::Logs::LogGroup" => self.create_log_group(name, &properties).await?,
            "AWS::Lambda::Function" => {
                self.check_vpc_config(name, &properties).await?;
                self.create_function(name, resource, &properties, None)?
            }
            // Signals are not played: the handle only orders resources (through its Metadata).
            "AWS::CloudFormation::WaitConditionHandle" => Deployed {
                kind: String::new(),
                physical_id: format!(
                    "https://cloudformation-waitcondition-{}.s3.amazonaws.com/{STACK_NAME}/{name}",
                    self.aws.seeded.region
                ),
                attrs: Map::new(),
                properties: Value::Null,
            },
            k if k.starts_with("AWS::EC2::") || k.starts_with("AWS::EKS::") => {
                self.native_create(name, k, &properties).await?
            }
            k if k.starts_with("Custom::") => {
                let answer = self.custom(name, "Create", &properties, None, None).await?;
                let deployed = Deployed {
                    kind: kind.clone(),
                    physical_id: answer.physical_id.clone(),
                    attrs: answer.data.clone(),
                    properties: properties.clone(),
                };
                if !answer.is_success() {
                    // As CloudFormation does, the rollback sends this resource a Delete too,
                    // with the id its FAILED answer gave.
                    self.deployed.insert(name.to_owned(), deployed);
                    self.order.push(name.to_owned());
                    return Err(answer.reason);
                }
                deployed
            }
            other => return Err(format!("the bench cannot create resources of type {other}")),
        };
        self.deployed.insert(
            name.to_owned(),
            Deployed {
                kind,
                properties,
                ..deployed
            },
        );
        self.order.push(name.to_owned());
        Ok(())
    }

    /// Delete in reverse creation order.
    pub async fn delete(&mut self) -> Result<(), String> {
        while let Some(name) = self.order.pop() {
            let Some(d) = self.deployed.remove(&name) else {
                continue;
            };
            self.delete_resource(&name, &d).await?;
        }
        Ok(())
    }

    pub(super) async fn delete_resource(&mut self, name: &str, d: &Deployed) -> Result<(), String> {
        event("DELETE_IN_PROGRESS", name, &d.kind, "");
        let started = Instant::now();
        let result = match d.kind.as_str() {
            "AWS::IAM::Role" => self.delete_role(&d.physical_id).await,
            "AWS::IAM::RolePolicy" | "AWS::IAM::Policy" => self.delete_policy(&d.properties).await,
            "AWS::Logs::LogGroup" => self.delete_log_group(&d.physical_id).await,
            "AWS::Lambda::Function" => {
                self.functions.remove(name);
                Ok(())
            }
            "AWS::CloudFormation::WaitConditionHandle" => Ok(()),
            k if k.starts_with("AWS::EC2::") || k.starts_with("AWS::EKS::") => {
                self.native_delete(k, d).await
            }
            _ => match self
                .custom(name, "Delete", &d.properties, Some(&d.physical_id), None)
                .await
            {
                Ok(answer) if answer.is_success() => Ok(()),
                Ok(answer) => Err(answer.reason),
                Err(e) => Err(e),
            },
        };
        match result {
            Ok(()) => {
                event("DELETE_COMPLETE", name, &d.kind, &elapsed(started));
                Ok(())
            }
            Err(reason) => {
                event("DELETE_FAILED", name, &d.kind, &reason);
                Err(reason)
            }
        }
    }
}
