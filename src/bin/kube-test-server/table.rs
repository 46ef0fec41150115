//! Server-side printing: the `meta.k8s.io/v1 Table` that `kubectl get` asks for, with the columns the real
//! API server prints for the common kinds and Name/Age for the others.

use crate::kinds::Kind;
use crate::util;
use serde_json::{json, Value};

/// Whether the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| part.contains("as=Table") && part.contains("g=meta.k8s.io"))
}

fn age(obj: &Value) -> String {
    match obj["metadata"]["creationTimestamp"].as_str().and_then(util::parse_rfc3339) {
        Some(created) => util::human_age(util::unix_now().saturating_sub(created)),
        None => "<unknown>".into(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".into(),
        other => other.to_string(),
    }
}

fn count(v: &Value) -> i64 {
    v.as_object().map(|m| m.len() as i64).unwrap_or(0)
}

fn label_selector(v: &Value) -> String {
    let pairs: Vec<String> = v["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

fn ready_condition(obj: &Value) -> String {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Column names (with types) and the cells for one object, after the Name column and before Age.
fn columns(kind: &Kind) -> Vec<(&'static str, &'static str)> {
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Namespace") => vec![("Status", "string")],
        ("apps", "Deployment") => {
            vec![("Ready", "string"), ("Up-to-date", "integer"), ("Available", "integer")]
        }
        ("", "Service") => {
            vec![("Type", "string"), ("Cluster-IP", "string"), ("External-IP", "string"), ("Port(s)", "string")]
        }
        ("", "Secret") => vec![("Type", "string"), ("Data", "integer")],
        ("", "ConfigMap") => vec![("Data", "integer")],
        ("networking.k8s.io", "NetworkPolicy") => vec![("Pod-Selector", "string")],
        ("networking.k8s.io", "Ingress") => vec![("Class", "string"), ("Hosts", "string"), ("Address", "string")],
        ("cert-manager.io", "Certificate") => vec![("Ready", "string"), ("Secret", "string")],
        _ => vec![],
    }
}

fn cells(kind: &Kind, obj: &Value) -> Vec<Value> {
    let (spec, status) = (&obj["spec"], &obj["status"]);
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Namespace") => vec![json!(text(&status["phase"]))],
        ("apps", "Deployment") => {
            let ready = status["readyReplicas"].as_i64().unwrap_or(0);
            let want = spec["replicas"].as_i64().unwrap_or(1);
            vec![
                json!(format!("{ready}/{want}")),
                json!(status["updatedReplicas"].as_i64().unwrap_or(0)),
                json!(status["availableReplicas"].as_i64().unwrap_or(0)),
            ]
        }
        ("", "Service") => {
            let ips: Vec<String> = status["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str().or(i["hostname"].as_str()).map(str::to_string))
                .collect();
            let external = if !ips.is_empty() {
                ips.join(",")
            } else if spec["type"] == "LoadBalancer" {
                "<pending>".into()
            } else {
                "<none>".into()
            };
            let ports: Vec<String> = spec["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(np) => format!("{}:{np}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect();
            vec![
                json!(text(&spec["type"])),
                json!(text(&spec["clusterIP"])),
                json!(external),
                json!(if ports.is_empty() { "<none>".to_string() } else { ports.join(",") }),
            ]
        }
        ("", "Secret") => vec![json!(text(&obj["type"])), json!(count(&obj["data"]))],
        ("", "ConfigMap") => vec![json!(count(&obj["data"]) + count(&obj["binaryData"]))],
        ("networking.k8s.io", "NetworkPolicy") => vec![json!(label_selector(&spec["podSelector"]))],
        ("networking.k8s.io", "Ingress") => {
            let hosts: Vec<&str> =
                spec["rules"].as_array().into_iter().flatten().filter_map(|r| r["host"].as_str()).collect();
            let address: Vec<&str> = status["loadBalancer"]["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["ip"].as_str())
                .collect();
            vec![
                json!(text(&spec["ingressClassName"])),
                json!(if hosts.is_empty() { "*".to_string() } else { hosts.join(",") }),
                json!(address.join(",")),
            ]
        }
        ("cert-manager.io", "Certificate") => vec![json!(ready_condition(obj)), json!(text(&spec["secretName"]))],
        _ => vec![],
    }
}

/// Renders objects as a Table whose rows carry each object's metadata (`includeObject=Metadata`).
pub fn render(kind: &Kind, items: &[Value], resource_version: &str) -> Value {
    let mut defs = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    for (name, ty) in columns(kind) {
        defs.push(json!({"name": name, "type": ty, "format": "", "description": "", "priority": 0}));
    }
    defs.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut row = vec![obj["metadata"]["name"].clone()];
            row.extend(cells(kind, obj));
            row.push(json!(age(obj)));
            json!({
                "cells": row,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": defs,
        "rows": rows,
    })
}
