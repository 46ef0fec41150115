//! API errors rendered as `meta/v1 Status` bodies, with the reasons and messages the real API server uses.

use crate::kinds::Kind;
use serde_json::{json, Value};

/// An error answer: HTTP code plus the Status body, and an optional Retry-After header value.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A Status with the given code, reason and message and optional details.
    pub fn new(code: u16, reason: &str, message: impl Into<String>, details: Option<Value>) -> Self {
        let mut body = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message.into(),
            "reason": reason,
            "code": code,
        });
        if let Some(d) = details {
            body["details"] = d;
        }
        ApiError { code, body, retry_after: None }
    }

    fn details(kind: &Kind, name: &str) -> Value {
        let mut d = json!({"name": name, "kind": kind.plural});
        if !kind.group.is_empty() {
            d["group"] = json!(kind.group);
        }
        d
    }

    /// `404 NotFound` for a named object.
    pub fn not_found(kind: &Kind, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", kind.group_resource()),
            Some(Self::details(kind, name)),
        )
    }

    /// `404 NotFound` for a path that names no served resource.
    pub fn no_route() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource", Some(json!({})))
    }

    /// `409 AlreadyExists` on create.
    pub fn already_exists(kind: &Kind, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", kind.group_resource()),
            Some(Self::details(kind, name)),
        )
    }

    /// `409 Conflict` for a stale resourceVersion or failed precondition.
    pub fn conflict(kind: &Kind, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", kind.group_resource()),
            Some(Self::details(kind, name)),
        )
    }

    /// `409 Conflict` for a server-side apply whose fields are owned by other managers.
    pub fn apply_conflict(kind: &Kind, name: &str, conflicts: &[(String, String)]) -> Self {
        let n = conflicts.len();
        let summary = if n == 1 {
            let (m, f) = &conflicts[0];
            format!("Apply failed with 1 conflict: conflict with \"{m}\": {f}")
        } else {
            let lines: Vec<String> = conflicts.iter().map(|(m, f)| format!("- conflict with \"{m}\": {f}")).collect();
            format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
        };
        let mut details = Self::details(kind, name);
        details["causes"] = conflicts
            .iter()
            .map(|(m, f)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": f}))
            .collect();
        Self::new(409, "Conflict", summary, Some(details))
    }

    /// `422 Invalid` with one cause per (field, message).
    pub fn invalid(kind: &Kind, name: &str, errors: &[(String, String)]) -> Self {
        let text: Vec<String> = errors.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let message = if text.len() == 1 {
            format!("{} \"{name}\" is invalid: {}", kind.group_kind(), text[0])
        } else {
            format!("{} \"{name}\" is invalid: [{}]", kind.group_kind(), text.join(", "))
        };
        let mut details = json!({"name": name, "kind": kind.kind});
        if !kind.group.is_empty() {
            details["group"] = json!(kind.group);
        }
        details["causes"] =
            errors.iter().map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f})).collect();
        Self::new(422, "Invalid", message, Some(details))
    }

    /// `400 BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message, None)
    }

    /// `403 Forbidden` with details.
    pub fn forbidden(kind: &Kind, name: &str, message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message, Some(Self::details(kind, name)))
    }

    /// `405 MethodNotAllowed`.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message, Some(json!({})))
    }

    /// `415 UnsupportedMediaType`.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {content_type:?}"), None)
    }

    /// An injected failure with the reason the real server gives for that code.
    pub fn injected(code: u16, message: Option<String>, retry_after: Option<u64>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        let message = message.unwrap_or_else(|| format!("injected fault: {reason} ({code})"));
        let details = retry_after.map(|s| json!({"retryAfterSeconds": s}));
        let mut e = Self::new(code, reason, message, details);
        e.retry_after = retry_after;
        e
    }
}
