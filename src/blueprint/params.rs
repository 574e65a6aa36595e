//! A revision's parameters: the values an instance gives, checked against the revision's
//! schema (an OpenAPI v3 subset, turned into JSON Schema and checked by the `jsonschema`
//! crate) with defaults applied. Pure.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::api::blueprint::{ItemSchema, Parameter, ParameterType};

/// Longest string parameter when the schema sets no `maxLength`, in characters.
pub const MAX_STRING: i32 = 1024;
/// Most elements of an array parameter when the schema sets no `maxItems`.
pub const MAX_ITEMS: i32 = 64;

/// A parameter that does not check out: `path` names it as the instance wrote it
/// (`spec.blueprint.parameters.replicas`, `spec.blueprint.parameters.zones[1]`), `message`
/// says why without repeating the value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// Where, e.g. `spec.blueprint.parameters.zones[1]`.
    pub path: String,
    /// Why, e.g. `value is greater than the maximum of 10`.
    pub message: String,
}

impl std::fmt::Display for ParamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The values of `schema`'s parameters for an instance that gives `given`: each given value
/// checked, defaults filled in for the ones not given (a published schema gives every
/// parameter that is not required a default, `check_schema`, so all are present).
///
/// Errors: every parameter that is unknown, missing while required, or not what its schema
/// allows, in name order, with `prefix` (e.g. `spec.blueprint.parameters`) before its name.
pub fn resolve(
    schema: &BTreeMap<String, Parameter>,
    given: &BTreeMap<String, Value>,
    prefix: &str,
) -> Result<Map<String, Value>, Vec<ParamError>> {
    let mut errors = Vec::new();
    for name in given.keys().filter(|name| !schema.contains_key(*name)) {
        let known = schema.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
        let known = if known.is_empty() { "none".to_owned() } else { known };
        errors.push(ParamError {
            path: format!("{prefix}.{name}"),
            message: format!("unknown parameter (this revision has: {known})"),
        });
    }
    let mut values = Map::new();
    for (name, parameter) in schema {
        let path = format!("{prefix}.{name}");
        let value = match (given.get(name), &parameter.default) {
            (Some(value), _) => value,
            (None, Some(default)) => default,
            (None, None) if parameter.required => {
                errors.push(ParamError { path, message: "required parameter not given".into() });
                continue;
            }
            (None, None) => continue,
        };
        match check(parameter, value, &path) {
            Ok(()) => {
                values.insert(name.clone(), value.clone());
            }
            Err(mut found) => errors.append(&mut found),
        }
    }
    if errors.is_empty() { Ok(values) } else { Err(errors) }
}

/// Checks the schema itself, as a revision is published: every pattern compiles, and every
/// default and enum value is what its own schema allows. Errors name the field under
/// `prefix` (e.g. `spec.revisions[1.2.0].parameters`).
pub fn check_schema(schema: &BTreeMap<String, Parameter>, prefix: &str) -> Result<(), Vec<ParamError>> {
    let mut errors = Vec::new();
    for (name, parameter) in schema {
        let path = format!("{prefix}.{name}");
        if let Err(error) = jsonschema::validator_for(&json_schema(parameter)) {
            errors.push(ParamError { path: path.clone(), message: format!("schema: {}", error.masked()) });
            continue;
        }
        match &parameter.default {
            Some(default) => {
                if let Err(mut found) = check(parameter, default, &format!("{path}.default")) {
                    errors.append(&mut found);
                }
            }
            // Every parameter has a value in `params`, so templates need no `has()` guards.
            None if !parameter.required => errors.push(ParamError {
                path: path.clone(),
                message: "neither required nor given a default: give it a default or mark it required".into(),
            }),
            None => {}
        }
        for (i, value) in parameter.enum_.iter().enumerate() {
            let mut alone = parameter.clone();
            alone.enum_.clear();
            if let Err(mut found) = check(&alone, value, &format!("{path}.enum[{i}]")) {
                errors.append(&mut found);
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// A value of each parameter's type, for checking a template's expressions before any
/// instance exists: the default, else the first enum value, else the smallest value the
/// schema allows. Not checked against patterns: it stands for the type, not for a real value.
pub fn samples(schema: &BTreeMap<String, Parameter>) -> Map<String, Value> {
    schema
        .iter()
        .map(|(name, p)| {
            let value = p.default.clone().or_else(|| p.enum_.first().cloned()).unwrap_or_else(|| match p.type_ {
                ParameterType::Array => Value::Array(p.items.as_ref().map(item_sample).into_iter().collect()),
                scalar => scalar_sample(scalar, p.minimum, p.min_length),
            });
            (name.clone(), value)
        })
        .collect()
}

fn item_sample(item: &ItemSchema) -> Value {
    item.enum_.first().cloned().unwrap_or_else(|| scalar_sample(item.type_, item.minimum, None))
}

fn scalar_sample(type_: ParameterType, minimum: Option<f64>, min_length: Option<i32>) -> Value {
    match type_ {
        ParameterType::String => {
            Value::String("a".repeat(min_length.unwrap_or(1).clamp(1, MAX_STRING).unsigned_abs() as usize))
        }
        // Saturating casts: a huge minimum gives the largest integer, never a panic.
        ParameterType::Integer => json!(minimum.map_or(1, |m| m.ceil() as i64)),
        ParameterType::Number => json!(minimum.unwrap_or(1.0)),
        ParameterType::Boolean => Value::Bool(false),
        ParameterType::Array => Value::Array(Vec::new()),
    }
}

fn check(parameter: &Parameter, value: &Value, path: &str) -> Result<(), Vec<ParamError>> {
    let validator = jsonschema::validator_for(&json_schema(parameter))
        .map_err(|e| vec![ParamError { path: path.to_owned(), message: format!("schema: {}", e.masked()) }])?;
    let errors: Vec<ParamError> = validator
        .iter_errors(value)
        .map(|error| ParamError {
            path: format!("{path}{}", pointer_to_path(error.instance_path().as_str())),
            message: error.masked().to_string(),
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// `/3` → `[3]`: the element of an array parameter, as `kubectl explain` paths write it.
fn pointer_to_path(pointer: &str) -> String {
    pointer.split('/').filter(|s| !s.is_empty()).map(|s| format!("[{s}]")).collect()
}

/// The JSON Schema (draft 2020-12) of one parameter, with the bounds it gets by default.
fn json_schema(parameter: &Parameter) -> Value {
    let mut schema = scalar_schema(parameter.type_, &parameter.enum_, parameter.minimum, parameter.maximum);
    if parameter.type_ == ParameterType::String {
        schema["maxLength"] = json!(parameter.max_length.unwrap_or(MAX_STRING).min(MAX_STRING));
        if let Some(min) = parameter.min_length {
            schema["minLength"] = json!(min);
        }
        if let Some(pattern) = &parameter.pattern {
            schema["pattern"] = json!(pattern);
        }
    }
    if parameter.type_ == ParameterType::Array {
        schema["maxItems"] = json!(parameter.max_items.unwrap_or(MAX_ITEMS).min(MAX_ITEMS));
        if let Some(item) = &parameter.items {
            let mut items = scalar_schema(item.type_, &item.enum_, item.minimum, item.maximum);
            if item.type_ == ParameterType::String {
                items["maxLength"] = json!(item.max_length.unwrap_or(MAX_STRING).min(MAX_STRING));
                if let Some(pattern) = &item.pattern {
                    items["pattern"] = json!(pattern);
                }
            }
            schema["items"] = items;
        }
    }
    schema
}

fn scalar_schema(type_: ParameterType, enum_: &[Value], minimum: Option<f64>, maximum: Option<f64>) -> Value {
    let name = match type_ {
        ParameterType::String => "string",
        ParameterType::Integer => "integer",
        ParameterType::Number => "number",
        ParameterType::Boolean => "boolean",
        ParameterType::Array => "array",
    };
    let mut schema = json!({ "type": name });
    if !enum_.is_empty() {
        schema["enum"] = Value::Array(enum_.to_vec());
    }
    if matches!(type_, ParameterType::Integer | ParameterType::Number) {
        if let Some(min) = minimum {
            schema["minimum"] = json!(min);
        }
        if let Some(max) = maximum {
            schema["maximum"] = json!(max);
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> BTreeMap<String, Parameter> {
        serde_json::from_value(json!({
            "city": {"type": "string", "required": true, "pattern": "^[a-z][-a-z]*$", "maxLength": 20},
            "replicas": {"type": "integer", "default": 2, "minimum": 1, "maximum": 10},
            "tier": {"type": "string", "enum": ["basic", "premium"], "default": "basic"},
            "zones": {"type": "array", "items": {"type": "string", "enum": ["a", "b", "c"]}, "maxItems": 3, "default": ["a"]},
            "analytics": {"type": "boolean", "default": false}
        }))
        .unwrap_or_default()
    }

    fn given(value: Value) -> BTreeMap<String, Value> {
        serde_json::from_value(value).unwrap_or_default()
    }

    fn paths(result: Result<Map<String, Value>, Vec<ParamError>>) -> Vec<String> {
        result.err().unwrap_or_default().into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn defaults_fill_what_is_not_given() {
        let values = resolve(&schema(), &given(json!({"city": "hanoi"})), "p").unwrap_or_default();
        assert_eq!(
            Value::Object(values),
            json!({"analytics": false, "city": "hanoi", "replicas": 2, "tier": "basic", "zones": ["a"]})
        );
    }

    #[test]
    fn each_bad_parameter_is_named_by_its_path() {
        let p = "spec.blueprint.parameters";
        let result = resolve(
            &schema(),
            &given(json!({"replicas": "two", "tier": "gold", "zones": ["a", "x"], "colour": "red"})),
            p,
        );
        assert_eq!(
            paths(result),
            [
                "spec.blueprint.parameters.colour",
                "spec.blueprint.parameters.city",
                "spec.blueprint.parameters.replicas",
                "spec.blueprint.parameters.tier",
                "spec.blueprint.parameters.zones[1]"
            ]
        );
        assert_eq!(
            paths(resolve(&schema(), &given(json!({"city": "hanoi", "replicas": 11})), p)),
            [format!("{p}.replicas")]
        );
        assert_eq!(paths(resolve(&schema(), &given(json!({"city": "Ha Noi"})), p)), [format!("{p}.city")]);
        assert_eq!(paths(resolve(&schema(), &given(json!({"city": "a".repeat(21)})), p)), [format!("{p}.city")]);
        assert_eq!(
            paths(resolve(&schema(), &given(json!({"city": "hue", "zones": ["a", "b", "c", "a"]})), p)),
            [format!("{p}.zones")]
        );
    }

    #[test]
    fn messages_do_not_repeat_the_value() {
        let errors = resolve(&schema(), &given(json!({"city": "s3cr3t value"})), "p").err().unwrap_or_default();
        assert_eq!(errors.len(), 1);
        assert!(!errors.iter().any(|e| e.message.contains("s3cr3t")), "{errors:?}");
    }

    #[test]
    fn a_schema_whose_default_breaks_its_own_rules_is_refused() {
        let bad: BTreeMap<String, Parameter> = serde_json::from_value(json!({
            "replicas": {"type": "integer", "default": 0, "minimum": 1},
            "tier": {"type": "string", "enum": ["basic", 3], "required": true},
            "name": {"type": "string", "pattern": "(unclosed", "required": true},
            "optional": {"type": "string"}
        }))
        .unwrap_or_default();
        let errors = check_schema(&bad, "r").err().unwrap_or_default();
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["r.name", "r.optional", "r.replicas.default", "r.tier.enum[1]"]);
        assert!(check_schema(&schema(), "r").is_ok());
    }

    #[test]
    fn samples_stand_for_each_type() {
        assert_eq!(
            Value::Object(samples(&schema())),
            json!({"analytics": false, "city": "a", "replicas": 2, "tier": "basic", "zones": ["a"]})
        );
    }
}
