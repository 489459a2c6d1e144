//! Failures as the API server reports them: every error becomes a
//! `meta/v1 Status` body with the HTTP code and `reason` a real server uses,
//! so `kube::Client` turns it into `kube::Error::Api`.

use serde_json::{Value, json};

/// One field owned by another manager, reported in an apply conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldConflict {
    pub manager: String,
    /// The field as `.spec.holderIdentity`.
    pub field: String,
}

/// What went wrong with a request, with the `reason` and code of a real
/// API server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, group: String, name: String },
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, group: String, name: String },
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your \
         changes to the latest version and try again"
    )]
    Conflict { resource: String, group: String, name: String },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    Precondition { resource: String, group: String, name: String, message: String },
    #[error("Apply failed with {} conflict{}: {}", .conflicts.len(), if .conflicts.len() == 1 { "" } else { "s" },
        .conflicts.iter().map(|c| format!("conflict with \"{}\": {}", c.manager, c.field)).collect::<Vec<_>>().join("; "))]
    ApplyConflict { resource: String, group: String, name: String, conflicts: Vec<FieldConflict> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{kind} \"{name}\" is invalid: {message}")]
    Invalid { kind: String, group: String, name: String, message: String },
    /// A JSON patch that does not apply (a failed `test`, a missing path):
    /// 422, as the real server's `jsonPatcher` answers.
    #[error("the server rejected our request due to an error in our request: {0}")]
    PatchFailed(String),
    #[error("the body of the request was in an unknown format - accepted media types include: {accepted}")]
    UnsupportedMediaType { accepted: &'static str },
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("too old resource version: {requested} ({oldest})")]
    Gone { requested: u64, oldest: u64 },
    /// A failure injected with `ApiServer::fail_next`.
    #[error("injected failure ({code})")]
    Injected { code: u16 },
}

impl ApiError {
    pub(crate) fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::Precondition { .. }
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::BadRequest(_) => 400,
            ApiError::Invalid { .. } | ApiError::PatchFailed(_) => 422,
            ApiError::UnsupportedMediaType { .. } => 415,
            ApiError::MethodNotAllowed => 405,
            ApiError::Gone { .. } => 410,
            ApiError::Injected { code } => *code,
        }
    }

    pub(crate) fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::Precondition { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Invalid { .. } | ApiError::PatchFailed(_) => "Invalid",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::Gone { .. } => "Expired",
            ApiError::Injected { code } => reason_for_code(*code),
        }
    }

    /// The `details` of the Status, when the error names an object.
    fn details(&self) -> Option<Value> {
        match self {
            ApiError::NotFound { resource, group, name }
            | ApiError::AlreadyExists { resource, group, name }
            | ApiError::Conflict { resource, group, name }
            | ApiError::Precondition { resource, group, name, .. } => {
                Some(json!({"name": name, "group": group, "kind": resource}))
            }
            ApiError::ApplyConflict { resource, group, name, conflicts } => {
                let causes: Vec<Value> = conflicts
                    .iter()
                    .map(|c| {
                        json!({
                            "reason": "FieldManagerConflict",
                            "message": format!("conflict with \"{}\"", c.manager),
                            "field": c.field,
                        })
                    })
                    .collect();
                Some(json!({"name": name, "group": group, "kind": resource, "causes": causes}))
            }
            ApiError::Invalid { kind, group, name, message } => Some(json!({
                "name": name, "group": group, "kind": kind,
                "causes": [{"reason": "FieldValueInvalid", "message": message}],
            })),
            ApiError::PatchFailed(message) => {
                Some(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": message}]}))
            }
            _ => None,
        }
    }

    /// The `meta/v1 Status` body.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let (Some(details), Some(obj)) = (self.details(), status.as_object_mut()) {
            obj.insert("details".into(), details);
        }
        status
    }
}

/// The `reason` a real server pairs with an HTTP code.
fn reason_for_code(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    }
}
