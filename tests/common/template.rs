//! `template.yaml` for tests: loaded through cfn-lint's YAML loader (`template_json.py`, run by
//! the venv Python), and each function's environment resolved the way CloudFormation would
//! for given parameter values. It checks nothing itself and never talks to AWS.
//!
//! Use from a test binary: `mod common;` then `use common::template;`.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv Python that has cfn-lint (the same venv as moto; `MOTO_PYTHON` overrides it).
fn python() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_PYTHON") {
        return PathBuf::from(path);
    }
    let venv = root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with cfn-lint at {}: run `bash scripts/test` once to create the venv \
         (or set MOTO_PYTHON to a Python that has cfn-lint)",
        venv.display()
    );
    venv
}

/// `template.yaml` as CloudFormation reads it (short-form tags in their long form).
pub fn template() -> &'static Value {
    static TEMPLATE: OnceLock<Value> = OnceLock::new();
    TEMPLATE.get_or_init(|| load(&[]))
}

/// `template.yaml` after the SAM transform: the resources `sam deploy` actually creates.
pub fn transformed_template() -> &'static Value {
    static TRANSFORMED: OnceLock<Value> = OnceLock::new();
    TRANSFORMED.get_or_init(|| load(&["--transformed"]))
}

fn load(flags: &[&str]) -> Value {
    let python = python();
    let output = Command::new(&python)
        .arg(root().join("tests/common/template_json.py"))
        .args(flags)
        .arg(root().join("template.yaml"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "template_json.py {flags:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("template_json.py prints JSON")
}

pub fn resources_of_type<'t>(template: &'t Value, kind: &str) -> Vec<(&'t str, &'t Value)> {
    template["Resources"]
        .as_object()
        .expect("template has Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(name, r)| (name.as_str(), r))
        .collect()
}

/// The Lambda binary a function runs (`Metadata.BuildProperties.Binary`).
pub fn binary_of(function: &Value) -> Option<&str> {
    function["Metadata"]["BuildProperties"]["Binary"].as_str()
}

/// Logical ids of the functions that run `binary`.
pub fn functions_running(binary: &str) -> Vec<&'static str> {
    resources_of_type(template(), "AWS::Serverless::Function")
        .into_iter()
        .filter(|(_, f)| binary_of(f) == Some(binary))
        .map(|(name, _)| name)
        .collect()
}

/// Parameter values and pseudo parameters for resolving the template, as a deploy would.
pub struct Stack {
    pub parameters: BTreeMap<String, String>,
    pub region: String,
    pub account_id: String,
}

impl Stack {
    /// The template's defaults, overridden by `parameters`.
    pub fn new(parameters: &[(&str, &str)]) -> Self {
        let mut values: BTreeMap<String, String> = template()["Parameters"]
            .as_object()
            .expect("template has Parameters")
            .iter()
            .filter_map(|(name, p)| {
                let default = match &p["Default"] {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((name.clone(), default))
            })
            .collect();
        for (name, value) in parameters {
            assert!(
                template()["Parameters"].get(*name).is_some(),
                "{name} is not a parameter of template.yaml"
            );
            values.insert(name.to_string(), value.to_string());
        }
        Self {
            parameters: values,
            region: "us-east-1".to_string(),
            account_id: "123456789012".to_string(),
        }
    }

    /// The environment CloudFormation gives function `logical`: `Globals` overlaid by the
    /// function's own `Environment.Variables`, every intrinsic resolved.
    pub fn function_env(&self, logical: &str) -> Vec<(String, String)> {
        let function = &template()["Resources"][logical];
        assert_eq!(
            function["Type"], "AWS::Serverless::Function",
            "{logical} is a function of template.yaml"
        );
        let mut env = BTreeMap::new();
        for vars in [
            &template()["Globals"]["Function"]["Environment"]["Variables"],
            &function["Properties"]["Environment"]["Variables"],
        ] {
            for (name, value) in vars.as_object().into_iter().flatten() {
                env.insert(name.clone(), self.resolve(value));
            }
        }
        env.into_iter().collect()
    }

    /// A value with `Ref`, `Fn::Sub` (parameters, pseudo parameters), `Fn::If` on a template
    /// condition, and the `Ref`s of resources whose reference is their name (KMS alias,
    /// table) resolved. Anything else panics: a test must not run with a value it guessed.
    pub fn resolve(&self, value: &Value) -> String {
        match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Object(map) if map.len() == 1 => {
                let (function, arg) = map.iter().next().expect("one entry");
                match (function.as_str(), arg) {
                    ("Ref", Value::String(name)) => self.reference(name),
                    ("Fn::Sub", Value::String(text)) => self.substitute(text),
                    ("Fn::If", Value::Array(args)) if args.len() == 3 => {
                        let condition = args[0].as_str().expect("Fn::If names a condition");
                        let chosen = if self.condition(condition) {
                            &args[1]
                        } else {
                            &args[2]
                        };
                        self.resolve(chosen)
                    }
                    _ => panic!("cannot resolve {value} for a test"),
                }
            }
            other => panic!("cannot resolve {other} for a test"),
        }
    }

    /// A template condition (`Conditions.<name>`) as CloudFormation evaluates it for this
    /// stack's parameters: `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`.
    pub fn condition(&self, name: &str) -> bool {
        let condition = &template()["Conditions"][name];
        assert!(!condition.is_null(), "no condition {name} in template.yaml");
        self.evaluate(condition)
    }

    fn evaluate(&self, condition: &Value) -> bool {
        let Some((function, arg)) = condition.as_object().and_then(|m| m.iter().next()) else {
            panic!("cannot evaluate condition {condition} for a test");
        };
        let args = || arg.as_array().map(Vec::as_slice).unwrap_or_default();
        match function.as_str() {
            "Fn::Equals" => self.resolve(&args()[0]) == self.resolve(&args()[1]),
            "Fn::Not" => !self.evaluate(&args()[0]),
            "Fn::And" => args().iter().all(|c| self.evaluate(c)),
            "Fn::Or" => args().iter().any(|c| self.evaluate(c)),
            "Condition" => self.condition(arg.as_str().expect("Condition names a condition")),
            _ => panic!("cannot evaluate condition {condition} for a test"),
        }
    }

    fn reference(&self, name: &str) -> String {
        match name {
            "AWS::Region" => return self.region.clone(),
            "AWS::AccountId" => return self.account_id.clone(),
            "AWS::Partition" => return "aws".to_string(),
            "AWS::URLSuffix" => return "amazonaws.com".to_string(),
            _ => {}
        }
        if let Some(value) = self.parameters.get(name) {
            return value.clone();
        }
        let resource = &template()["Resources"][name];
        let property = match resource["Type"].as_str() {
            Some("AWS::KMS::Alias") => "AliasName",
            Some("AWS::DynamoDB::Table") => "TableName",
            other => panic!("Ref {name} ({other:?}) has no value a test can know"),
        };
        self.resolve(&resource["Properties"][property])
    }

    fn substitute(&self, text: &str) -> String {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..]
                .find('}')
                .unwrap_or_else(|| panic!("unclosed ${{ in {text:?}"))
                + start;
            out.push_str(&self.reference(&rest[start + 2..end]));
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        out
    }
}
