//! What the stack controller's child caches keep beyond [`crate::reconciler::strip`]: the
//! spec (the drift check compares it), and of the status only what rollout and readiness
//! read. A cached object is held for as long as it exists, so every byte here is paid once
//! per child for the life of the process.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;

/// Keeps a Deployment's status counters and condition type/status/reason (what
/// [`super::status::rollout`] reads); drops condition messages and times.
pub fn deployment(deployment: &mut Deployment) {
    let conditions = deployment.status.as_mut().and_then(|s| s.conditions.as_mut());
    for condition in conditions.into_iter().flatten() {
        condition.message = None;
        condition.last_update_time = None;
        condition.last_transition_time = None;
    }
}

/// Drops a Service's status (load-balancer ingress, conditions): nothing reads it.
pub fn service(service: &mut Service) {
    service.status = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::status::{Rollout, rollout};

    #[test]
    fn a_lean_deployment_rolls_out_the_same() {
        let full: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "portal-web", "generation": 2},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1,
                "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                    "message": "ReplicaSet \"portal-web-5d\" has timed out progressing.",
                    "lastUpdateTime": "2026-12-06T04:00:00Z", "lastTransitionTime": "2026-12-06T04:00:00Z"}]}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut lean = full.clone();
        deployment(&mut lean);
        assert!(matches!(rollout(&full), Rollout::Failed(_)));
        assert_eq!(rollout(&lean), rollout(&full));
        let condition = lean.status.and_then(|s| s.conditions).unwrap_or_default().pop();
        assert_eq!(condition.and_then(|c| c.message), None);
    }
}
