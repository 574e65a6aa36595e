//! Which Azure cloud the operator talks to: the ARM endpoint, the Entra ID authority host and
//! the ARM token audience. The audience is not always the endpoint (Azure China:
//! `https://management.core.chinacloudapi.cn/`; US Government:
//! `https://management.core.usgovcloudapi.net/`), per Microsoft's national-cloud endpoint
//! tables. `Custom` serves Azure Stack Hub and the local ARM simulator.

use std::path::PathBuf;
use std::sync::Arc;

use azure_core::http::Transport;

/// `--azure-cloud`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum CloudName {
    /// Azure public cloud.
    #[default]
    AzurePublic,
    /// Azure operated by 21Vianet (China).
    AzureChina,
    /// Azure US Government.
    AzureUSGovernment,
    /// Custom endpoints: `--azure-arm-endpoint`, `--azure-authority-host`, `--azure-audience`.
    Custom,
}

/// Azure flags of `citystack run`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct AzureArgs {
    /// Azure cloud.
    #[arg(long, value_enum, default_value = "azure-public")]
    pub azure_cloud: CloudName,
    /// ARM endpoint (required with --azure-cloud custom; overrides the cloud's).
    #[arg(long)]
    pub azure_arm_endpoint: Option<String>,
    /// Entra ID authority host (required with --azure-cloud custom; overrides the cloud's).
    #[arg(long)]
    pub azure_authority_host: Option<String>,
    /// ARM token audience (default: the cloud's; for custom, the ARM endpoint).
    #[arg(long)]
    pub azure_audience: Option<String>,
    /// PEM file of extra CAs to trust for ARM and Entra ID (Azure Stack Hub, the simulator).
    #[arg(long)]
    pub azure_ca_bundle: Option<PathBuf>,
    /// The operator's own Azure identity, used where a namespace brings no credential Secret
    /// (only in trusted namespaces). Chosen by flag, never by probing.
    #[arg(long, value_enum, default_value = "none")]
    pub azure_identity: IdentityKind,
    /// Subscription used when neither the resource, its stack, nor its credential names one.
    #[arg(long)]
    pub azure_subscription_id: Option<String>,
    /// Seconds between reads of a provisioned resource in Azure (one GET and, for kinds with
    /// keys, one list-keys call each), lengthened by up to 20 % so resources spread out (never
    /// shortened): the default costs at most 2 ARM reads per resource-hour. A change to the
    /// object (spec or an annotation such as `citystack.io/refresh`) reads it at once.
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub azure_resync: u64,
    /// Seconds a long-running ARM operation is followed before it is dropped and the
    /// resource read afresh (ARM operations normally end or expire well within an hour).
    #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=86400))]
    pub azure_operation_deadline: u64,
    /// Label selector of namespaces the operator trusts with its own identity and with
    /// Adopt/Observe of existing resources (empty: none).
    #[arg(long, default_value = "")]
    pub trusted_namespaces: String,
    /// Percent of ARM's request buckets per subscription and principal the operator uses
    /// (reads 250 + 25/s, writes 200 + 10/s, deletes 200 + 10/s; see `azure::budget`).
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub azure_budget_percent: u8,
}

/// `--azure-identity`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum IdentityKind {
    /// Azure AD Workload Identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE).
    Workload,
    /// Managed identity (IMDS / App Service).
    Managed,
    /// AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET from the environment.
    ClientSecret,
    /// No operator identity: every namespace brings its own credential Secret.
    #[default]
    None,
}

/// Resolved endpoints of a cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cloud {
    /// ARM endpoint, without a trailing slash.
    pub arm_endpoint: String,
    /// Entra ID authority host, without a trailing slash.
    pub authority_host: String,
    /// Token scope for ARM: `<audience>/.default`.
    pub scope: String,
}

impl Cloud {
    /// The endpoints `args` select.
    ///
    /// Errors: a message naming the missing flag for `custom`.
    pub fn from_args(args: &AzureArgs) -> Result<Self, String> {
        let (arm, authority, audience) = match args.azure_cloud {
            CloudName::AzurePublic => {
                ("https://management.azure.com", "https://login.microsoftonline.com", "https://management.azure.com/")
            }
            CloudName::AzureChina => (
                "https://management.chinacloudapi.cn",
                "https://login.chinacloudapi.cn",
                "https://management.core.chinacloudapi.cn/",
            ),
            CloudName::AzureUSGovernment => (
                "https://management.usgovcloudapi.net",
                "https://login.microsoftonline.us",
                "https://management.core.usgovcloudapi.net/",
            ),
            CloudName::Custom => ("", "", ""),
        };
        let arm = args.azure_arm_endpoint.clone().unwrap_or_else(|| arm.to_owned());
        let authority = args.azure_authority_host.clone().unwrap_or_else(|| authority.to_owned());
        if arm.is_empty() {
            return Err("--azure-cloud custom needs --azure-arm-endpoint".into());
        }
        if authority.is_empty() {
            return Err("--azure-cloud custom needs --azure-authority-host".into());
        }
        let audience = args
            .azure_audience
            .clone()
            .unwrap_or_else(|| if audience.is_empty() { arm.clone() } else { audience.to_owned() });
        Ok(Self {
            arm_endpoint: arm.trim_end_matches('/').to_owned(),
            authority_host: authority.trim_end_matches('/').to_owned(),
            scope: format!("{}/.default", audience.trim_end_matches('/')),
        })
    }
}

/// The HTTP transport for ARM and Entra ID: reqwest over rustls, trusting the system roots
/// plus the CAs of `--azure-ca-bundle`.
///
/// Errors: the bundle cannot be read or parsed, or the client cannot be built.
pub fn transport(ca_bundle: Option<&PathBuf>) -> Result<Transport, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_bundle {
        let pem = std::fs::read(path).map_err(|e| format!("--azure-ca-bundle {}: {e}", path.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("--azure-ca-bundle {}: {e}", path.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    let client = builder.build().map_err(|e| format!("HTTP client: {e}"))?;
    Ok(Transport::new(Arc::new(client)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_clouds_use_their_own_audience() {
        let china = Cloud::from_args(&AzureArgs { azure_cloud: CloudName::AzureChina, ..Default::default() });
        let china = china.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(china.scope, "https://management.core.chinacloudapi.cn/.default");
        assert_eq!(china.arm_endpoint, "https://management.chinacloudapi.cn");
        let public = Cloud::from_args(&AzureArgs::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(public.scope, "https://management.azure.com/.default");
    }

    #[test]
    fn custom_cloud_needs_its_endpoints() {
        let missing = Cloud::from_args(&AzureArgs { azure_cloud: CloudName::Custom, ..Default::default() });
        assert!(missing.err().unwrap_or_default().contains("--azure-arm-endpoint"));
        let sim = Cloud::from_args(&AzureArgs {
            azure_cloud: CloudName::Custom,
            azure_arm_endpoint: Some("https://127.0.0.1:8443/".into()),
            azure_authority_host: Some("https://127.0.0.1:8443".into()),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sim.arm_endpoint, "https://127.0.0.1:8443");
        assert_eq!(sim.scope, "https://127.0.0.1:8443/.default");
    }
}
