//! Google credentials, one home for both providers that talk to Google (Cloud APIs, and GKE
//! clusters with `connect = "gke"`): an access token given in the environment, or Application
//! Default Credentials — a service-account key file when `GOOGLE_APPLICATION_CREDENTIALS` names
//! one, else gcloud's user credentials or the metadata server — resolved once per run and shared
//! by every call. Not a provider: it serves them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OnceCell;

/// The OAuth scope meshform asks for.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Where access tokens come from.
pub enum Credentials {
    /// A token given in the environment (`MESHFORM_GCP_ACCESS_TOKEN` / `CLOUDSDK_AUTH_ACCESS_TOKEN`).
    Static(String),
    /// Application Default Credentials, resolved on first use.
    Adc {
        /// A service-account key file (`GOOGLE_APPLICATION_CREDENTIALS`).
        key: Option<PathBuf>,
        /// The resolved token provider.
        provider: OnceCell<Arc<dyn gcp_auth::TokenProvider>>,
    },
}

/// Why no token could be had: no credentials at all, or credentials that gave none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthError {
    /// Nothing to authenticate with (no key file, no gcloud login, no metadata server).
    NoCredentials(String),
    /// Credentials were found but the token request failed.
    Token(String),
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthError::NoCredentials(e) => write!(
                f,
                "no Google credentials found ({e}). Give meshform one of: an access token in MESHFORM_GCP_ACCESS_TOKEN (e.g. `export MESHFORM_GCP_ACCESS_TOKEN=$(gcloud auth print-access-token)`); a service-account key file named by GOOGLE_APPLICATION_CREDENTIALS; Application Default Credentials from `gcloud auth application-default login`; or run where the metadata server answers (Compute Engine, GKE, Cloud Build, Cloud Run)"
            ),
            AuthError::Token(e) => write!(f, "cannot get a Google access token: {e}"),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        match self {
            Credentials::Static(_) => f.write_str("Credentials::Static(..)"),
            Credentials::Adc { key, .. } => f.debug_struct("Credentials::Adc").field("key", key).finish(),
        }
    }
}

impl Credentials {
    /// A static token when given, else Application Default Credentials (with `key` when given).
    pub fn new(token: Option<String>, key: Option<PathBuf>) -> Credentials {
        match token {
            Some(t) => Credentials::Static(t),
            None => Credentials::Adc { key, provider: OnceCell::new() },
        }
    }

    /// An access token for [`CLOUD_PLATFORM`].
    pub async fn token(&self) -> Result<String, AuthError> {
        match self {
            Credentials::Static(t) => Ok(t.clone()),
            Credentials::Adc { key, provider } => {
                let p = provider
                    .get_or_try_init(|| async {
                        match key {
                            Some(path) => gcp_auth::CustomServiceAccount::from_file(path)
                                .map(|k| Arc::new(k) as Arc<dyn gcp_auth::TokenProvider>),
                            None => gcp_auth::provider().await,
                        }
                    })
                    .await
                    .map_err(|e| AuthError::NoCredentials(e.to_string()))?;
                let t = p.token(&[CLOUD_PLATFORM]).await.map_err(|e| AuthError::Token(e.to_string()))?;
                Ok(t.as_str().to_string())
            }
        }
    }
}
