//! The controller's error type. Every error has a [`Category`]: a bounded name that becomes
//! the condition reason, the Event reason and the `category` metric label.

use std::fmt;

use crate::azure::arm::ArmError;
use crate::azure::credential::CredentialError;

/// The bounded set of error categories (used verbatim as condition reasons and metric labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// The spec is invalid in a way admission could not catch; waits for a spec change.
    InvalidSpec,
    /// `dependsOn` forms a cycle; waits for a spec change.
    DependencyCycle,
    /// A stack's blueprint parameters do not fit the revision's schema; waits for a change.
    InvalidParameters,
    /// A blueprint revision's parameter schema or template does not check out (an expression
    /// fails, or renders what a SolutionStack spec does not allow); waits for a change.
    InvalidBlueprint,
    /// A referenced object (a bound Secret, a Secret key) does not exist; retried on change.
    MissingReference,
    /// A request to the Kubernetes API failed (5xx, 429, timeout, transport); retried with
    /// backoff.
    KubeApi,
    /// The API server refused a child for good (400, 403 by policy or RBAC, 409, 422): the same
    /// request fails again, so it waits for a spec or child change (retried only at resync).
    KubeRejected,
    /// A child's name is taken by an object this stack does not control (another stack's, a
    /// Helm release's, a hand-made one): never written; waits for a change.
    Conflict,
    /// An object could not be encoded or decoded.
    Serialization,
    /// Azure refused the credential (401/403, bad secret, expired token).
    AzureAuth,
    /// Azure (or the operator's own per-subscription budget) throttled the request.
    AzureThrottled,
    /// A long-running ARM operation ended Failed or Canceled; waits for a spec change.
    AzureOperationFailed,
    /// The Azure resource exists but belongs to someone else; waits for a spec change.
    AzureConflict,
    /// ARM refused the request itself (4xx other than 404, 408, 409, 429): sending it again
    /// unchanged fails again, so it waits for a spec change.
    AzureRejected,
    /// Any other ARM error (5xx, transport, a body that is not JSON or too large).
    AzureApi,
}

impl Category {
    /// The category's name, in the PascalCase that condition reasons require.
    pub const fn as_str(self) -> &'static str {
        match self {
            Category::InvalidSpec => "InvalidSpec",
            Category::DependencyCycle => "DependencyCycle",
            Category::InvalidParameters => "InvalidParameters",
            Category::InvalidBlueprint => "InvalidBlueprint",
            Category::MissingReference => "MissingReference",
            Category::KubeApi => "KubeApi",
            Category::KubeRejected => "KubeRejected",
            Category::Conflict => "Conflict",
            Category::Serialization => "Serialization",
            Category::AzureAuth => "AzureAuth",
            Category::AzureThrottled => "AzureThrottled",
            Category::AzureOperationFailed => "AzureOperationFailed",
            Category::AzureConflict => "AzureConflict",
            Category::AzureRejected => "AzureRejected",
            Category::AzureApi => "AzureApi",
        }
    }

    /// Whether retrying without a spec change can help (else the object waits for a change).
    pub const fn is_transient(self) -> bool {
        !matches!(
            self,
            Category::InvalidSpec
                | Category::DependencyCycle
                | Category::InvalidParameters
                | Category::InvalidBlueprint
                | Category::KubeRejected
                | Category::Conflict
                | Category::AzureOperationFailed
                | Category::AzureConflict
                | Category::AzureRejected
        )
    }

    /// Whether a person must act (kstatus Stalled): every permanent category, and a credential
    /// Azure refuses (retried with backoff anyway, so a fixed Secret is picked up).
    pub const fn stalls(self) -> bool {
        !self.is_transient() || matches!(self, Category::AzureAuth)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of the SolutionStack controller. Messages name objects and fields, never Secret
/// values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rule the API server's admission cannot express (messages name the field).
    #[error("{0}")]
    InvalidSpec(String),
    /// The components named form a `dependsOn` cycle, e.g. `a -> b -> a`.
    #[error("spec.components[].dependsOn forms a cycle: {0}")]
    DependencyCycle(String),
    /// A Kubernetes API request failed. Shown as the API server's own message (which names
    /// the object and field), never the client's Debug dump.
    #[error("{action}: {}", kube_message(source))]
    Kube {
        /// What was attempted, e.g. `apply Deployment web-api`.
        action: String,
        /// The client error (carries the API status message, never object data).
        #[source]
        source: kube::Error,
    },
    /// This instance is not (or no longer) the leader: it must not write. Not a failure;
    /// the reconcile ends and the new leader takes over.
    #[error("not the leader")]
    NotLeader,
    /// An ARM request failed (the message is ARM's code and bounded message, never a
    /// credential value).
    #[error("{action}: {source}")]
    Arm {
        /// What was attempted, e.g. `PUT /subscriptions/.../storageAccounts/x`.
        action: String,
        /// The ARM error.
        #[source]
        source: ArmError,
    },
    /// No usable Azure credential (messages name the Secret and key, never a value).
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// A refusal the controller decided on (another owner's resource, a missing resource, an
    /// operation that ended Failed), with its category.
    #[error("{message}")]
    Refused {
        /// Category (condition and Event reason).
        category: Category,
        /// What, where, what to do.
        message: String,
    },
    /// An object could not be serialised or deserialised (JSON or YAML).
    #[error("encoding {what}: {message}")]
    Serialization {
        /// The object, e.g. `Deployment web-api`.
        what: String,
        /// The encoder's message.
        message: String,
    },
}

impl Error {
    /// This error's category.
    pub fn category(&self) -> Category {
        match self {
            Error::InvalidSpec(_) => Category::InvalidSpec,
            Error::DependencyCycle(_) => Category::DependencyCycle,
            Error::Kube { source: kube::Error::Api(status), .. } if is_permanent(status.code) => Category::KubeRejected,
            Error::Kube { .. } | Error::NotLeader => Category::KubeApi,
            Error::Serialization { .. } => Category::Serialization,
            Error::Arm { source, .. } => match source {
                ArmError::Throttled { .. } | ArmError::Budget { .. } => Category::AzureThrottled,
                ArmError::Auth(_) => Category::AzureAuth,
                e if e.is_permanent() => Category::AzureRejected,
                _ => Category::AzureApi,
            },
            Error::Credential(CredentialError::Kube { .. }) => Category::KubeApi,
            Error::Credential(CredentialError::Invalid { .. }) => Category::AzureAuth,
            Error::Credential(_) => Category::MissingReference,
            Error::Refused { category, .. } => *category,
        }
    }

    /// The least time to wait before retrying, when the error says (ARM's `Retry-After`).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Error::Arm { source: ArmError::Throttled { retry_after } | ArmError::Budget { retry_after }, .. } => {
                Some(*retry_after)
            }
            _ => None,
        }
    }

    /// An ARM error with what was being done.
    pub fn arm(action: impl Into<String>, source: ArmError) -> Self {
        Error::Arm { action: action.into(), source }
    }

    /// A refusal of `category` with `message`.
    pub fn refused(category: Category, message: impl Into<String>) -> Self {
        Error::Refused { category, message: message.into() }
    }

    /// An encoding error of `what` (e.g. `Deployment web-api`).
    pub fn encoding(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Error::Serialization { what: what.into(), message: error.to_string() }
    }

    /// Wraps a kube client error with what was being done.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube { action: action.into(), source }
    }
}

/// Whether an API server answer `code` is final: a 4xx other than 404 (the namespace or
/// object may appear), 408 (timeout) and 429 (throttled). Kubernetes API conventions, "HTTP
/// Status codes": 400 BadRequest, 403 Forbidden, 409 Conflict and 422 Invalid do not succeed
/// on retry without a change.
pub const fn is_permanent(code: u16) -> bool {
    matches!(code, 400..=499) && !matches!(code, 404 | 408 | 429)
}

/// A client error as a person reads it: the API server's message with its code and reason
/// (e.g. `Deployment.apps "web" is invalid: spec...: Duplicate value: "DB_HOST" (422
/// Invalid)`), bounded; other errors by their own text.
pub fn kube_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => {
            let reason = if status.reason.is_empty() { String::new() } else { format!(" {}", status.reason) };
            bounded(&format!("{} ({}{reason})", status.message, status.code), 768)
        }
        other => bounded(&other.to_string(), 768),
    }
}

/// A watch failure as a person reads it (the API server's message, never a client dump).
pub fn watch_message(error: &kube::runtime::watcher::Error) -> String {
    use kube::runtime::watcher::Error as Watch;
    match error {
        Watch::InitialListFailed(e) => format!("listing failed: {}", kube_message(e)),
        Watch::WatchStartFailed(e) => format!("starting the watch failed: {}", kube_message(e)),
        Watch::WatchFailed(e) => format!("the watch failed: {}", kube_message(e)),
        Watch::WatchError(status) => {
            bounded(&format!("the API server ended the watch: {} ({})", status.message, status.code), 768)
        }
        Watch::NoResourceVersion => error.to_string(),
    }
}

/// The result type of the controller.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Cuts a message to at most `max` bytes on a character boundary, marking the cut. Condition
/// messages and Event notes are bounded (Events API: note at most 1 KiB).
pub fn bounded(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_budget_and_arms_throttle_read_apart_and_both_name_their_wait() {
        let budget = Error::arm("PUT x", ArmError::Budget { retry_after: std::time::Duration::from_millis(400) });
        assert_eq!(budget.category(), Category::AzureThrottled);
        assert_eq!(budget.retry_after(), Some(std::time::Duration::from_millis(400)));
        assert!(budget.to_string().contains("budget") && budget.to_string().contains("retrying in 0.4s"), "{budget}");
        let arm = Error::arm("PUT x", ArmError::Throttled { retry_after: std::time::Duration::from_secs(7) });
        assert_eq!(arm.category(), Category::AzureThrottled);
        assert!(arm.to_string().contains("Azure throttled") && !arm.to_string().contains("budget"), "{arm}");
    }

    #[test]
    fn api_refusals_read_as_the_servers_message_and_stall() {
        let status = kube::core::Status::failure(
            "Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].env[1].name: Duplicate value: \"DB_HOST\"",
            "Invalid",
        )
        .with_code(422);
        let error = Error::kube("apply Deployment web", kube::Error::Api(Box::new(status)));
        let text = error.to_string();
        assert!(text.starts_with("apply Deployment web: Deployment.apps \"web\" is invalid"), "{text}");
        assert!(text.ends_with("(422 Invalid)"), "{text}");
        assert!(!text.contains("Status {") && !text.contains("ApiError"), "{text}");
        assert_eq!(error.category(), Category::KubeRejected);
        assert!(error.category().stalls());
        for (code, category) in [
            (400, Category::KubeRejected),
            (403, Category::KubeRejected),
            (409, Category::KubeRejected),
            (404, Category::KubeApi),
            (408, Category::KubeApi),
            (429, Category::KubeApi),
            (500, Category::KubeApi),
            (503, Category::KubeApi),
        ] {
            let status = kube::core::Status::failure("x", "y").with_code(code);
            assert_eq!(Error::kube("a", kube::Error::Api(Box::new(status))).category(), category, "{code}");
        }
    }

    #[test]
    fn bounded_cuts_on_char_boundary() {
        assert_eq!(bounded("short", 10), "short");
        let cut = bounded("ééééé", 6);
        assert!(cut.len() <= 6, "{cut}");
        assert!(cut.ends_with("..."));
    }
}
