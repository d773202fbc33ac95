//! The template's `Conditions` and `Rules`, evaluated on the stack's parameters.

use super::Stack;
use serde_json::{Map, Value};

impl Stack<'_> {
    /// The template's `Rules`: each rule whose `RuleCondition` holds must have every assertion
    /// true, or the operation fails with the assertion's description before anything changes.
    pub(super) fn check_rules(&self) -> Result<(), String> {
        for (name, rule) in self.template["Rules"].as_object().into_iter().flatten() {
            let applies = match rule.get("RuleCondition") {
                Some(condition) => self.resolve(condition)?.as_bool().unwrap_or(false),
                None => true,
            };
            if !applies {
                continue;
            }
            for assertion in rule["Assertions"].as_array().into_iter().flatten() {
                if self.resolve(&assertion["Assert"])?.as_bool() != Some(true) {
                    return Err(format!(
                        "rule {name}: {}",
                        assertion["AssertDescription"]
                            .as_str()
                            .unwrap_or("an assertion failed")
                    ));
                }
            }
        }
        Ok(())
    }

    /// The template's `Conditions`, all evaluated anew (after the parameters changed).
    pub(super) fn evaluate_conditions(&mut self) -> Result<(), String> {
        self.conditions.clear();
        let conditions = self.template["Conditions"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for name in conditions.keys() {
            let value = self.condition(name, &conditions)?;
            self.conditions.insert(name.clone(), value);
        }
        Ok(())
    }

    fn condition(&self, name: &str, all: &Map<String, Value>) -> Result<bool, String> {
        if let Some(v) = self.conditions.get(name) {
            return Ok(*v);
        }
        let expr = all
            .get(name)
            .ok_or_else(|| format!("no condition {name}"))?;
        // Conditions may refer to each other: resolve with a view that evaluates on demand.
        let value = self.resolve_with(expr, Some(all))?;
        value
            .as_bool()
            .ok_or_else(|| format!("condition {name} is not a boolean: {value}"))
    }

    pub(super) fn active(&self, resource: &Value) -> bool {
        resource["Condition"]
            .as_str()
            .is_none_or(|c| self.conditions.get(c).copied().unwrap_or(false))
    }

    /// A condition by name: evaluated already, or (while `all` are being evaluated) now.
    pub(super) fn condition_value(
        &self,
        name: &str,
        all: Option<&Map<String, Value>>,
    ) -> Result<bool, String> {
        match (self.conditions.get(name), all) {
            (Some(v), _) => Ok(*v),
            (None, Some(all)) => self.condition(name, all),
            (None, None) => Err(format!("no condition {name}")),
        }
    }
}
