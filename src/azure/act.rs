//! Act: carry out the plan's decision through ARM (and only ARM), then, once converged,
//! ensure the child resources, list the keys and write the binding Secret.

use std::time::Duration;

use kube::ResourceExt;
use serde_json::Value;
use tracing::info;

use crate::api::{AzureKind, AzureResource, Mode};
use crate::azure::arm::ArmResponse;
use crate::azure::controller::Context;
use crate::azure::export::{self, Extras};
use crate::azure::kinds::{self, Keys};
use crate::azure::plan::{Decision, Method};
use crate::azure::resolve::Target;
use crate::azure::response::Provisioning;
use crate::azure::secret;
use crate::azure::status::Outcome;
use crate::error::{Category, Error, Result};
use crate::naming;

/// How soon a resource is read again after a write ARM finished at once.
const REREAD: Duration = Duration::from_secs(1);
/// How soon an accepted write without `Retry-After` is looked at again.
const AFTER_WRITE: Duration = Duration::from_secs(2);

/// Carries out `decision` for `object`.
///
/// Errors: ARM and Kubernetes failures; [`Error::Refused`] for a refusal; `NotLeader` before
/// any write when this instance lost the lease.
pub async fn act(
    ctx: &Context,
    object: &AzureResource,
    target: &Target,
    decision: Decision,
    password: Option<&str>,
) -> Result<Outcome> {
    let recorded = object.status.clone().unwrap_or_default();
    match decision {
        Decision::FollowOperation { after } => Ok(Outcome::Progressing {
            state: recorded.provisioning_state,
            operation: recorded.operation,
            applied_hash: recorded.applied_hash,
            after,
            message: "following the ARM operation".into(),
        }),
        Decision::Wait { state, after } => Ok(Outcome::Progressing {
            message: format!("provisioningState {state}"),
            state: Some(state),
            operation: None,
            applied_hash: recorded.applied_hash,
            after,
        }),
        Decision::Refuse { category, message } => Err(Error::refused(category, message)),
        Decision::Create { body, hash } => write(ctx, target, Method::Put, &body, hash, "created").await,
        Decision::Update { method, body, hash, paths } => {
            info!(id = %target.id, differing = ?paths, "drift");
            write(ctx, target, method, &body, hash, "updated").await
        }
        Decision::ExportOnly { resource, hash } => {
            let applied_hash = if object.spec.mode == Mode::Observe { recorded.applied_hash } else { hash };
            export(ctx, object, target, &resource, password, applied_hash).await
        }
    }
}

async fn write(
    ctx: &Context,
    target: &Target,
    method: Method,
    body: &Value,
    hash: String,
    what: &str,
) -> Result<Outcome> {
    ctx.writer.may_write()?;
    let (sub, id, version) = (&target.subscription, &target.id, &target.api_version);
    let response: ArmResponse = match method {
        Method::Put => target.arm.put(sub, id, version, body).await,
        Method::Patch => target.arm.patch(sub, id, version, body).await,
    }
    .map_err(|e| Error::arm(format!("{method:?} {id}").to_uppercase(), e))?;
    info!(%id, status = response.status, "{method:?} sent: {what}");
    let (state, state_text) = Provisioning::of_resource(&response.body);
    let untrusted = response.untrusted_operation.as_ref().map(|origin| {
        format!("; ARM named an operation URL on {origin}, outside the configured endpoint: not followed, the resource is polled instead")
    });
    let running = state == Provisioning::InProgress || response.status == 202;
    Ok(Outcome::Progressing {
        message: format!(
            "{what}: provisioningState {}{}",
            state_text.as_deref().unwrap_or("pending"),
            untrusted.unwrap_or_default()
        ),
        state: state_text,
        operation: response.operation.filter(|_| running),
        applied_hash: Some(hash),
        after: if running { response.retry_after.unwrap_or(AFTER_WRITE) } else { REREAD },
    })
}

async fn export(
    ctx: &Context,
    object: &AzureResource,
    target: &Target,
    resource: &Value,
    password: Option<&str>,
    applied_hash: Option<String>,
) -> Result<Outcome> {
    let spec = &object.spec;
    let (sub, version) = (&target.subscription, &target.api_version);
    // Children (containers, queues, databases, hubs): one GET each, PUT when missing.
    if spec.mode != Mode::Observe {
        for (child_id, body) in kinds::children(spec.kind, spec, &target.id) {
            let found =
                target.arm.get(sub, &child_id, version).await.map_err(|e| Error::arm(format!("GET {child_id}"), e))?;
            if found.is_none() {
                ctx.writer.may_write()?;
                target
                    .arm
                    .put(sub, &child_id, version, &body)
                    .await
                    .map_err(|e| Error::arm(format!("PUT {child_id}"), e))?;
                info!(id = %child_id, "PUT sent: child created");
            }
        }
    }
    // Keys: listed once per resync, which is how rotated keys are noticed.
    let list = |path: String, action: String| async move {
        target
            .arm
            .action(sub, &path, &action, version)
            .await
            .map(|r| r.body)
            .map_err(|e| Error::arm(format!("POST {path}/{action}"), e))
    };
    let keys = match (kinds::info(spec.kind).map(|k| k.keys), &spec.generic) {
        (Some(Keys::Action(action)), _) => Some(list(target.id.clone(), action.to_owned()).await?),
        (Some(Keys::NamespaceRule), _) => Some(
            list(format!("{}/authorizationRules/RootManageSharedAccessKey", target.id), "listKeys".to_owned()).await?,
        ),
        (Some(Keys::None | Keys::GeneratedPassword), _) => None,
        (None, Some(generic)) => match &generic.list_keys_action {
            Some(action) => Some(list(target.id.clone(), action.clone()).await?),
            None => None,
        },
        (None, None) => None,
    };
    let first_child = spec.databases.first().or(spec.hubs.first()).map(String::as_str);
    let exported = match &spec.generic {
        Some(generic) => export::generic(generic, resource, keys.as_ref()).map_err(|missing| {
            Error::refused(
                Category::InvalidSpec,
                format!("spec.generic.exports found nothing at: {}", missing.join(", ")),
            )
        })?,
        None => {
            export::curated(spec.kind, resource, keys.as_ref(), &Extras { name: &target.name, first_child, password })
        }
    };
    let note = (spec.kind == AzureKind::PostgreSQLFlexibleServer && password.is_none()).then(|| {
        "the binding has no password key: citystack never sets a password it did not create; name the administrator password with spec.passwordSecretRef".to_owned()
    });
    ctx.writer.may_write()?;
    secret::write(&ctx.writer.client, object, &exported.data).await?;
    Ok(Outcome::Provisioned {
        state: Provisioning::of_resource(resource).1,
        applied_hash,
        outputs: exported.outputs,
        binding: naming::binding_secret_name(&object.name_any()),
        note,
    })
}
