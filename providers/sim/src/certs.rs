//! Certificate authorities and the serving certificates they sign: one per cluster (what the
//! container API returns as `masterAuth.clusterCaCertificate`), and the simulator's stand-in for
//! the public web PKI (`ClusterCa::public_root`), which signs what Google serves under names of
//! its own (the Connect Gateway, DNS-based control-plane endpoints): clients trust it only
//! through their system roots (`SSL_CERT_FILE`), never through a CA in a kubeconfig.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

/// A cluster CA: its certificate and key, PEM.
#[derive(Clone, Debug)]
pub struct ClusterCa {
    /// CA certificate.
    pub cert_pem: String,
    /// CA private key (stays inside the simulator).
    pub key_pem: String,
    /// Its subject's common name.
    pub common_name: String,
}

fn ca_params(common_name: &str) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

impl ClusterCa {
    /// A new CA named after the cluster.
    pub fn generate(cluster: &str) -> Result<ClusterCa, String> {
        Self::named(&format!("{cluster} cluster CA"))
    }

    /// The simulator's public root: a run's one CA for names Google serves with publicly trusted
    /// certificates.
    pub fn public_root() -> Result<ClusterCa, String> {
        Self::named("meshform simulator public root CA")
    }

    fn named(common_name: &str) -> Result<ClusterCa, String> {
        let params = ca_params(common_name)?;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(ClusterCa { cert_pem: cert.pem(), key_pem: key.serialize_pem(), common_name: common_name.to_string() })
    }

    /// A serving certificate for the API server at these IP addresses and names.
    pub fn issue_server(&self, ips: &[std::net::IpAddr], names: &[String]) -> Result<(String, String), String> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| e.to_string())?;
        let issuer = Issuer::new(ca_params(&self.common_name)?, ca_key);
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        for ip in ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}
