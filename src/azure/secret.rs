//! The AzureResource's binding Secret (servicebinding.io: `type`, `provider` and the kind's
//! keys), and the PostgreSQL administrator password: generated once for a provisioned server
//! and kept in that Secret, or read from `spec.passwordSecretRef` for an adopted or observed
//! one. Values never reach a message.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use rand::Rng;
use serde_json::json;

use crate::api::{AzureResource, Mode};
use crate::azure::kinds;
use crate::error::{Category, Error, Result};
use crate::naming::{self, FIELD_MANAGER};
use crate::ownership::{self, Control};

/// Largest password read from a user's Secret (bytes).
const MAX_PASSWORD: usize = 256;

/// The administrator password to send and export: generated for a provisioned server (kept
/// in the binding Secret, written before the PUT that uses it, so a crash in between loses
/// nothing); the user's for an adopted or observed one (`None` without `passwordSecretRef`).
///
/// Errors: reading or writing a Secret fails; the named Secret or key is missing, or its
/// value is not UTF-8 or longer than 256 bytes.
pub async fn admin_password(client: &Client, object: &AzureResource) -> Result<Option<String>> {
    let namespace = object.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    if object.spec.mode != Mode::Provision {
        let Some(reference) = &object.spec.password_secret_ref else { return Ok(None) };
        let secret = api
            .get_opt(&reference.name)
            .await
            .map_err(|e| Error::kube(format!("get Secret {}", reference.name), e))?
            .ok_or_else(|| {
                Error::refused(
                    Category::MissingReference,
                    format!("spec.passwordSecretRef: Secret {} not found", reference.name),
                )
            })?;
        let value = secret.data.and_then(|d| d.get(&reference.key).cloned()).ok_or_else(|| {
            Error::refused(
                Category::MissingReference,
                format!("spec.passwordSecretRef: Secret {} has no key {}", reference.name, reference.key),
            )
        })?;
        return match String::from_utf8(value.0) {
            Ok(text) if text.len() <= MAX_PASSWORD => Ok(Some(text)),
            _ => Err(Error::refused(
                Category::InvalidSpec,
                format!(
                    "spec.passwordSecretRef: key {} of Secret {} must be UTF-8 text of at most {MAX_PASSWORD} bytes",
                    reference.key, reference.name
                ),
            )),
        };
    }
    let name = naming::binding_secret_name(&object.name_any());
    let existing = ours(object, api.get_opt(&name).await.map_err(|e| Error::kube(format!("get Secret {name}"), e))?)?;
    if let Some(password) = existing
        .and_then(|s| s.data)
        .and_then(|d| d.get("password").cloned())
        .and_then(|v| String::from_utf8(v.0).ok())
        .filter(|p| !p.is_empty())
    {
        return Ok(Some(password));
    }
    let password: String = {
        let mut rng = rand::rng();
        const CHARS: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let body: String = (0..28).map(|_| CHARS[rng.random_range(0..CHARS.len())] as char).collect();
        format!("{body}-9a")
    };
    write(client, object, &BTreeMap::from([("password".to_owned(), password.clone())])).await?;
    Ok(Some(password))
}

/// The binding Secret as read, if this AzureResource controls it. A namesake someone else
/// controls is neither read (it may hold their password) nor written.
///
/// Errors: `Conflict` naming the Secret and its owner.
fn ours(object: &AzureResource, secret: Option<Secret>) -> Result<Option<Secret>> {
    match ownership::control(secret.as_ref().map(|s| &s.metadata), &object.uid().unwrap_or_default()) {
        Control::Foreign(owner) => Err(ownership::conflict(
            &format!("Secret {}", naming::binding_secret_name(&object.name_any())),
            &owner,
            "delete or rename that Secret, or give this AzureResource another name",
        )),
        Control::Absent | Control::Ours => Ok(secret),
    }
}

/// Applies the binding Secret (controller-owned by the AzureResource) when its data differs.
///
/// Errors: `Conflict` when another owner holds the Secret's name; reading or applying the
/// Secret fails.
pub async fn write(client: &Client, object: &AzureResource, data: &BTreeMap<String, String>) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let name = naming::binding_secret_name(&object.name_any());
    let wanted: BTreeMap<String, ByteString> =
        data.iter().map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes()))).collect();
    let current = ours(object, api.get_opt(&name).await.map_err(|e| Error::kube(format!("get Secret {name}"), e))?)?;
    if current.as_ref().and_then(|s| s.data.as_ref()) == Some(&wanted) {
        return Ok(());
    }
    let binding_type = kinds::info(object.spec.kind).map(|k| k.binding_type).unwrap_or("azure");
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": {naming::label::MANAGED_BY: naming::MANAGED_BY, naming::AZURE_RESOURCE_LABEL: object.name_any()},
            "ownerReferences": object.controller_owner_ref(&()).map(|o| vec![o]).unwrap_or_default(),
        },
        // The Secret type is immutable: derive it from the kind, not from the data written.
        "type": format!("servicebinding.io/{binding_type}"),
        "data": wanted,
    });
    api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret))
        .await
        .map_err(|e| Error::kube(format!("apply Secret {name}"), e))?;
    Ok(())
}
