//! Per-cluster certificate authorities (what the container API returns as
//! `masterAuth.clusterCaCertificate`) and the serving certificates they sign.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

/// A cluster CA: its certificate and key, PEM.
#[derive(Clone, Debug)]
pub struct ClusterCa {
    /// CA certificate.
    pub cert_pem: String,
    /// CA private key (stays inside the simulator).
    pub key_pem: String,
    /// The cluster it belongs to (its subject is derived from it).
    pub cluster: String,
}

fn ca_params(cluster: &str) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("{cluster} cluster CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

impl ClusterCa {
    /// A new CA named after the cluster.
    pub fn generate(cluster: &str) -> Result<ClusterCa, String> {
        let params = ca_params(cluster)?;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(ClusterCa { cert_pem: cert.pem(), key_pem: key.serialize_pem(), cluster: cluster.to_string() })
    }

    /// A serving certificate for the API server at these IP addresses and names.
    pub fn issue_server(&self, ips: &[std::net::IpAddr], names: &[String]) -> Result<(String, String), String> {
        let ca_key = KeyPair::from_pem(&self.key_pem).map_err(|e| e.to_string())?;
        let issuer = Issuer::new(ca_params(&self.cluster)?, ca_key);
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
