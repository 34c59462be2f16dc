//! `mesh_ca`: Istio plugin CA certificates, following Istio's tools/certs layout. One root (RSA
//! 4096, 3650 days, O=Istio, CN=Root CA), either the user's (`root_cert_file`, `root_key_file`)
//! or generated; a generated root key lives only in the Secret `istio-root-ca` in `root_cluster`,
//! never in state, plans or output. Per cluster an intermediate (RSA 4096, 730 days, O=Istio,
//! CN=Intermediate CA, L=<cluster>, CA with pathlen 0, SAN DNS:istiod.istio-system.svc) written
//! as the `cacerts` Secret (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`) in
//! the cluster's `istio-system`. Adding a cluster issues one new intermediate from the same root.
//!
//! Rotation, declared: `intermediate_version` changed reissues every intermediate from the same
//! root (the trust bundle is untouched, so nothing stops trusting anything). A generated root
//! rotates by versions: `root_version` is the root that signs the intermediates (version 1 kept
//! in `istio-root-ca`, version N in `istio-root-ca-vN`), `trusted_root_versions` the roots every
//! cluster's `root-cert.pem` holds (the signer first). A change is accepted only when no window
//! opens in which a workload holding the old bundle meets a certificate it cannot verify, or the
//! reverse: the new signer must already be trusted before, and the old signer still trusted after.
//! So a root rotates in three applies: trust the new root beside the old (`trusted_root_versions
//! = [1, 2]`), sign with it (`root_version = 2`), then drop the old (`[2]`) once workloads have
//! restarted; the keys of roots no longer trusted are deleted.

use async_trait::async_trait;
use base64::Engine as _;
use meshform_engine::provider::{
    AttrSchema, AttrType, ErrorKind, Planned, Presence, ProviderError, ProviderResult, TypeKind, TypeSchema,
};
use meshform_engine::value::{Map, Value, sha256_hex};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use serde_json::json;

use super::{KubeType, s};
use crate::conn::Kube;
use crate::objects::{self, ObjRef};

/// The type.
pub struct MeshCa;

const NS: &str = "istio-system";
const ROOT_SECRET: &str = "istio-root-ca";

/// The Secret holding the generated root of `version`.
fn root_secret(version: i64) -> String {
    if version <= 1 { ROOT_SECRET.to_string() } else { format!("{ROOT_SECRET}-v{version}") }
}

fn int(m: &Map, k: &str) -> Option<i64> {
    match m.get(k) {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

/// The root that signs (1 unless declared).
fn root_version(m: &Map) -> i64 {
    int(m, "root_version").unwrap_or(1)
}

fn intermediate_version(m: &Map) -> i64 {
    int(m, "intermediate_version").unwrap_or(1)
}

/// The roots every bundle holds: the signer first, then the others as declared.
fn trusted(m: &Map) -> Vec<i64> {
    let signer = root_version(m);
    let mut out = vec![signer];
    for v in m.get("trusted_root_versions").and_then(Value::as_list).into_iter().flatten() {
        if let Value::Int(i) = v
            && !out.contains(i)
        {
            out.push(*i);
        }
    }
    out
}

/// Whether going from `prior` to `planned` keeps every workload able to verify every other's
/// certificate: the new signer already trusted by the old bundles, the old signer still trusted
/// by the new ones. The reason when not.
fn rotation_gap(prior: &Map, planned: &Map) -> Option<String> {
    let (old, new) = (root_version(prior), root_version(planned));
    let (was, will) = (trusted(prior), trusted(planned));
    if !was.contains(&new) {
        return Some(format!(
            "root_version {new} is not yet trusted: workloads holding today's bundle (roots {was:?}) would reject certificates it signs; first apply with trusted_root_versions = {:?} and root_version = {old}, restart workloads, then switch",
            [was.clone(), vec![new]].concat()
        ));
    }
    if !will.contains(&old) {
        return Some(format!(
            "root {old} still signs today's intermediates, so dropping it from trusted_root_versions now would make workloads reject certificates they hold; first switch root_version to {new} keeping {old} trusted, restart workloads, then drop it"
        ));
    }
    None
}

fn secret(name: &str) -> ObjRef {
    ObjRef { api_version: "v1".into(), kind: "Secret".into(), namespace: Some(NS.into()), name: name.into() }
}

fn invalid(m: &str) -> ProviderError {
    ProviderError::new(ErrorKind::Invalid, m.to_string())
}

fn err(e: impl std::fmt::Display) -> ProviderError {
    ProviderError::new(ErrorKind::Other, format!("certificate generation failed: {e}"))
}

fn rsa_4096() -> ProviderResult<KeyPair> {
    use rsa::pkcs8::EncodePrivateKey;
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 4096).map_err(err)?;
    let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).map_err(err)?;
    KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).map_err(err)
}

/// From now (no backdating, as Istio's tools/certs sign) for `days` days, to the second.
fn validity(params: &mut CertificateParams, days: u64) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + std::time::Duration::from_secs(now);
    params.not_after = epoch + std::time::Duration::from_secs(now + days * 86_400);
}

/// Istio's tools/certs key usage for both CA levels (critical): digitalSignature,
/// nonRepudiation, keyEncipherment, keyCertSign.
fn ca_key_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ]
}

fn root_params() -> ProviderResult<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::OrganizationName, "Istio");
    p.distinguished_name.push(DnType::CommonName, "Root CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = ca_key_usages();
    validity(&mut p, 3650);
    Ok(p)
}

/// The root: certificate and key PEM.
struct Root {
    cert: String,
    key: String,
}

impl MeshCa {
    /// The root of `version`: the user's files (version 1 only), else the generated one kept in
    /// its Secret, generated when missing.
    async fn root(&self, k: &Kube, m: &Map, version: i64) -> ProviderResult<Root> {
        if let (Some(c), Some(kf)) = (s(m, "root_cert_file"), s(m, "root_key_file")) {
            let read = |f: &str| {
                meshform_engine::files::read_text(&k.dir.join(f))
                    .map_err(|e| ProviderError::new(ErrorKind::Invalid, format!("cannot read {f}: {e}")))
            };
            return Ok(Root { cert: read(&c)?, key: read(&kf)? });
        }
        let cluster = root_cluster(m)?;
        let name = root_secret(version);
        if let Some(sec) = objects::get(k, &cluster, &secret(&name)).await? {
            let get = |key: &str| {
                sec["data"][key]
                    .as_str()
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            };
            if let (Some(cert), Some(key)) = (get("root-cert.pem"), get("root-key.pem")) {
                return Ok(Root { cert, key });
            }
        }
        let key = tokio::task::spawn_blocking(rsa_4096).await.map_err(err)??;
        let cert = root_params()?.self_signed(&key).map_err(err)?;
        let root = Root { cert: cert.pem(), key: key.serialize_pem() };
        let b64 = base64::engine::general_purpose::STANDARD;
        let doc = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS, "labels": {"app.kubernetes.io/managed-by": "meshform"}},
            "data": {"root-cert.pem": b64.encode(&root.cert), "root-key.pem": b64.encode(&root.key)}});
        objects::apply(k, &cluster, &doc, true, false).await?;
        Ok(root)
    }

    async fn issue(&self, k: &Kube, root: &Root, bundle: &str, cluster: &str) -> ProviderResult<String> {
        let root_key = KeyPair::from_pem_and_sign_algo(&root.key, &rcgen::PKCS_RSA_SHA256).map_err(err)?;
        let issuer = Issuer::new(root_params()?, root_key);
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::OrganizationName, "Istio");
        p.distinguished_name.push(DnType::CommonName, "Intermediate CA");
        p.distinguished_name.push(DnType::LocalityName, cluster);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = ca_key_usages();
        p.subject_alt_names = vec![SanType::DnsName("istiod.istio-system.svc".try_into().map_err(err)?)];
        validity(&mut p, 730);
        let key = tokio::task::spawn_blocking(rsa_4096).await.map_err(err)??;
        let cert = p.signed_by(&key, &issuer).map_err(err)?.pem();
        write_cacerts(k, cluster, &cert, &key.serialize_pem(), &root.cert, bundle).await
    }

    async fn converge(&self, k: &Kube, prior: Option<&Map>, planned: &Map) -> ProviderResult<Map> {
        let mut roots = Vec::new();
        for v in trusted(planned) {
            roots.push(self.root(k, planned, v).await?);
        }
        let bundle: String = roots.iter().map(|r| r.cert.as_str()).collect();
        let root = &roots[0];
        let rotate = prior.is_some_and(|p| intermediate_version(p) != intermediate_version(planned));
        let mut issued =
            prior.and_then(|p| p.get("intermediates")).and_then(Value::as_map).cloned().unwrap_or_default();
        let wanted = clusters(planned);
        for c in &wanted {
            // An intermediate that already chains to the signing root is kept (its bundle brought
            // up to date); otherwise, or when rotating, one is issued.
            let fp = match current(k, c, &root.cert).await? {
                Some(now) if !rotate => {
                    if now.bundle != bundle {
                        write_cacerts(k, c, &now.cert, &now.key, &root.cert, &bundle).await?;
                    }
                    now.fingerprint
                }
                _ => self.issue(k, root, &bundle, c).await?,
            };
            issued.insert(c.clone(), Value::String(fp));
        }
        for old in issued.keys().filter(|c| !wanted.contains(c)).cloned().collect::<Vec<_>>() {
            objects::delete(k, &old, &secret("cacerts")).await?;
            issued.remove(&old);
        }
        // The keys of generated roots no longer trusted go.
        if s(planned, "root_cert_file").is_none()
            && let Some(prior) = prior
        {
            let keep = trusted(planned);
            for v in trusted(prior).into_iter().filter(|v| !keep.contains(v)) {
                objects::delete(k, &root_cluster(prior)?, &secret(&root_secret(v))).await?;
            }
        }
        let mut m = planned.clone();
        m.insert("root_cert".into(), Value::String(root.cert.clone()));
        m.insert("trust_bundle".into(), Value::String(bundle));
        m.insert("intermediates".into(), Value::Map(issued));
        m.insert("id".into(), Value::str(format!("mesh-ca:{}", root_cluster(planned)?)));
        Ok(m)
    }
}

/// Writes a cluster's `cacerts`: its intermediate and key, the chain to the signing root, and
/// the trust bundle. The intermediate's fingerprint.
async fn write_cacerts(
    k: &Kube,
    cluster: &str,
    cert: &str,
    key: &str,
    root: &str,
    bundle: &str,
) -> ProviderResult<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let doc = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cacerts", "namespace": NS},
        "data": {"ca-cert.pem": b64.encode(cert), "ca-key.pem": b64.encode(key),
                 "root-cert.pem": b64.encode(bundle), "cert-chain.pem": b64.encode(format!("{cert}{root}"))}});
    objects::apply(k, cluster, &doc, true, false).await?;
    Ok(sha256_hex(cert.as_bytes())[..16].to_string())
}

fn clusters(m: &Map) -> Vec<String> {
    m.get("clusters")
        .and_then(Value::as_list)
        .map(|l| l.iter().filter_map(Value::to_interpolated).collect())
        .unwrap_or_default()
}

fn root_cluster(m: &Map) -> ProviderResult<String> {
    s(m, "root_cluster")
        .or_else(|| clusters(m).into_iter().next())
        .ok_or_else(|| ProviderError::new(ErrorKind::Invalid, "mesh_ca needs `clusters`"))
}

/// A cluster's `cacerts` as it is, when whole and chained to the signing root.
struct Current {
    cert: String,
    key: String,
    bundle: String,
    fingerprint: String,
}

/// A cluster's current intermediate, if its cacerts chains to the root `root` (PEM).
async fn current(k: &Kube, cluster: &str, root: &str) -> ProviderResult<Option<Current>> {
    let Some(sec) = objects::get(k, cluster, &secret("cacerts")).await? else { return Ok(None) };
    let get = |key: &str| {
        sec["data"][key]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    // Whole as issued: the chain is the intermediate then the root, and the key is the
    // certificate's; anything else (a key or chain swapped out of band) is issued again.
    match (get("ca-cert.pem"), get("ca-key.pem"), get("cert-chain.pem"), get("root-cert.pem")) {
        (Some(cert), Some(key), Some(chain), Some(bundle))
            if chain == format!("{cert}{root}") && bundle.starts_with(root) && key_matches(&cert, &key) =>
        {
            let fingerprint = sha256_hex(cert.as_bytes())[..16].to_string();
            Ok(Some(Current { cert, key, bundle, fingerprint }))
        }
        _ => Ok(None),
    }
}

/// Whether the PEM private key `key` is the one certified by the PEM certificate `cert` (its
/// public key is embedded, byte for byte, in the certificate's DER).
fn key_matches(cert: &str, key: &str) -> bool {
    let der = |pem: &str| {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).ok()
    };
    let (Some(cert_der), Ok(pair)) = (der(cert), KeyPair::from_pem_and_sign_algo(key, &rcgen::PKCS_RSA_SHA256)) else {
        return false;
    };
    let public = pair.der_bytes().to_vec();
    !public.is_empty() && cert_der.windows(public.len()).any(|w| w == public.as_slice())
}

#[async_trait]
impl KubeType for MeshCa {
    fn schema(&self) -> TypeSchema {
        let st = |n: &str, p: Presence| AttrSchema::new(n, AttrType::String, p);
        TypeSchema::new("mesh_ca", TypeKind::Managed, "Istio plugin CA certificates (cacerts) from one root.")
            .import_id("CLUSTER (the cluster holding the root)")
            .attr(
                AttrSchema::new("clusters", AttrType::List(Box::new(AttrType::String)), Presence::Required)
                    .names_cluster(),
            )
            .attr(
                st("root_cluster", Presence::OptionalComputed)
                    .names_cluster()
                    .force_new()
                    .describe("where a generated root key is kept"),
            )
            .attr(st("root_cert_file", Presence::Optional).force_new())
            .attr(st("root_key_file", Presence::Optional).force_new())
            .attr(
                AttrSchema::new("intermediate_version", AttrType::Number, Presence::OptionalComputed)
                    .describe("change it to reissue every intermediate from the same root (default 1)"),
            )
            .attr(
                AttrSchema::new("root_version", AttrType::Number, Presence::OptionalComputed)
                    .describe("the generated root that signs the intermediates (default 1)"),
            )
            .attr(
                AttrSchema::new(
                    "trusted_root_versions",
                    AttrType::List(Box::new(AttrType::Number)),
                    Presence::OptionalComputed,
                )
                .describe("the roots every cluster trusts (default: root_version); see the rotation steps"),
            )
            .attr(st("root_cert", Presence::Computed))
            .attr(st("trust_bundle", Presence::Computed))
            .attr(AttrSchema::new("intermediates", AttrType::Map(Box::new(AttrType::String)), Presence::Computed))
            .attr(st("id", Presence::Computed))
    }

    async fn plan(&self, _k: &Kube, prior: Option<&Map>, mut p: Planned) -> ProviderResult<Planned> {
        p.attrs.insert("root_cluster".into(), Value::String(root_cluster(&p.attrs)?));
        let signer = root_version(&p.attrs);
        let set = |k: &str| p.configured.contains(k);
        if ["trusted_root_versions", "root_version", "intermediate_version"]
            .iter()
            .any(|k| set(k) && matches!(p.attrs.get(*k), Some(Value::Unknown)))
        {
            return Ok(p);
        }
        let declared: Vec<i64> = match p.attrs.get("trusted_root_versions") {
            None | Some(Value::Null | Value::Unknown) => vec![signer],
            Some(Value::List(l)) => {
                l.iter().filter_map(|v| if let Value::Int(i) = v { Some(*i) } else { None }).collect()
            }
            Some(_) => return Err(invalid("`trusted_root_versions` is a list of root versions, such as [1, 2]")),
        };
        if signer < 1 || declared.iter().any(|v| *v < 1) || intermediate_version(&p.attrs) < 1 {
            return Err(invalid("versions count from 1"));
        }
        if !declared.contains(&signer) {
            return Err(invalid(&format!(
                "root_version {signer} signs the intermediates, so trusted_root_versions must include it (it holds {declared:?})"
            )));
        }
        if s(&p.attrs, "root_cert_file").is_some() && (signer != 1 || declared != [1]) {
            return Err(invalid(
                "root versions rotate a generated root; a root from root_cert_file rotates by replacing the files",
            ));
        }
        p.attrs.insert("root_version".into(), Value::Int(signer));
        p.attrs.insert("trusted_root_versions".into(), Value::List(declared.into_iter().map(Value::Int).collect()));
        p.attrs.insert("intermediate_version".into(), Value::Int(intermediate_version(&p.attrs)));
        if let Some(prior) = prior {
            if let Some(gap) = rotation_gap(prior, &p.attrs) {
                return Err(invalid(&gap));
            }
            // Clusters added or removed, or a rotation, change the set of intermediates.
            let issued = prior.get("intermediates").and_then(Value::as_map).cloned().unwrap_or_default();
            let wanted = clusters(&p.attrs);
            let rotated =
                root_version(prior) != signer || intermediate_version(prior) != intermediate_version(&p.attrs);
            if rotated || wanted.iter().any(|c| !issued.contains_key(c)) || issued.keys().any(|c| !wanted.contains(c)) {
                p.attrs.insert("intermediates".into(), Value::Unknown);
            }
            if root_version(prior) != signer {
                p.attrs.insert("root_cert".into(), Value::Unknown);
            }
            if trusted(prior) != trusted(&p.attrs) {
                p.attrs.insert("trust_bundle".into(), Value::Unknown);
            }
        }
        Ok(p)
    }

    async fn read(&self, k: &Kube, prior: &Map) -> ProviderResult<Option<Map>> {
        let cluster = root_cluster(prior)?;
        let root_cert = s(prior, "root_cert").unwrap_or_default();
        if s(prior, "root_cert_file").is_none()
            && objects::get(k, &cluster, &secret(&root_secret(root_version(prior)))).await?.is_none()
        {
            return Ok(None);
        }
        // A bundle out of date or tampered with counts as that cluster's intermediate gone.
        let bundle = s(prior, "trust_bundle").unwrap_or_else(|| root_cert.clone());
        let mut issued = Map::new();
        for c in clusters(prior) {
            if let Some(now) = current(k, &c, &root_cert).await?
                && now.bundle == bundle
            {
                issued.insert(c, Value::String(now.fingerprint));
            }
        }
        let mut m = prior.clone();
        m.insert("intermediates".into(), Value::Map(issued));
        // States written before rotation existed hold the defaults.
        m.entry("root_version".into()).or_insert(Value::Int(1));
        m.entry("intermediate_version".into()).or_insert(Value::Int(1));
        m.entry("trusted_root_versions".into()).or_insert_with(|| Value::List(vec![Value::Int(1)]));
        m.entry("trust_bundle".into()).or_insert(Value::String(bundle));
        Ok(Some(m))
    }

    async fn create(&self, k: &Kube, planned: &Map) -> ProviderResult<Map> {
        self.converge(k, None, planned).await
    }

    async fn update(&self, k: &Kube, prior: &Map, planned: &Map) -> ProviderResult<Map> {
        self.converge(k, Some(prior), planned).await
    }

    async fn delete(&self, k: &Kube, prior: &Map) -> ProviderResult<()> {
        for c in clusters(prior) {
            objects::delete(k, &c, &secret("cacerts")).await?;
        }
        if s(prior, "root_cert_file").is_none() {
            for v in trusted(prior) {
                objects::delete(k, &root_cluster(prior)?, &secret(&root_secret(v))).await?;
            }
        }
        Ok(())
    }

    async fn import(&self, k: &Kube, id: &str) -> ProviderResult<Map> {
        // The id is the root cluster; the next apply adopts every cacerts that chains to its root.
        let sec = objects::get(k, id, &secret(ROOT_SECRET)).await?.ok_or_else(|| {
            ProviderError::new(ErrorKind::NotFound, format!("no {NS}/{ROOT_SECRET} in cluster `{id}`"))
        })?;
        let cert = sec["data"]["root-cert.pem"]
            .as_str()
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        Ok(Map::from([
            ("root_cluster".into(), Value::str(id)),
            ("root_cert".into(), Value::String(cert.clone())),
            ("trust_bundle".into(), Value::String(cert)),
            ("root_version".into(), Value::Int(1)),
            ("trusted_root_versions".into(), Value::List(vec![Value::Int(1)])),
            ("intermediate_version".into(), Value::Int(1)),
            ("clusters".into(), Value::List(vec![])),
            ("intermediates".into(), Value::Map(Map::new())),
            ("id".into(), Value::str(format!("mesh-ca:{id}"))),
        ]))
    }
}
/// Findings of `drift` and `plan`: a certificate of a `cacerts` Secret of a `mesh_ca` in state
/// (the cluster's intermediate, the root, the chain) that expires within
/// `ca_expiry_warning_days` (30 by default), or has expired; each named with its cluster, file,
/// subject and date, and what to do.
pub async fn expiring(k: &Kube, objects: &[(String, Map)]) -> ProviderResult<Vec<meshform_engine::provider::Finding>> {
    let days = k.conns.settings.ca_expiry_warning_days;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let mut out = Vec::new();
    for (_, m) in objects.iter().filter(|(ty, _)| ty == "mesh_ca") {
        for cluster in clusters(m) {
            let Some(sec) = objects::read(k, &cluster, &secret("cacerts")).await? else { continue };
            let mut seen = std::collections::BTreeSet::new();
            for file in ["ca-cert.pem", "root-cert.pem", "cert-chain.pem"] {
                let Some(pem) =
                    sec["data"][file].as_str().and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                else {
                    continue;
                };
                for (subject, not_after) in expiries(&pem) {
                    if !seen.insert((subject.clone(), not_after)) {
                        continue;
                    }
                    let left = (not_after - now).div_euclid(86_400);
                    if not_after - now > days as i64 * 86_400 {
                        continue;
                    }
                    let when =
                        if not_after <= now { "has expired".to_string() } else { format!("expires in {left} days") };
                    out.push(meshform_engine::provider::Finding {
                        kind: "certificate_expiring".into(),
                        message: format!(
                            "cluster `{cluster}`: {NS}/cacerts {file} ({subject}) {when} (at {}; the warning window is {days} days): rotate the mesh_ca's certificates",
                            meshform_engine::clock::rfc3339(not_after)
                        ),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// The subject and expiry (Unix seconds) of each certificate in a PEM text.
fn expiries(pem: &[u8]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for p in x509_parser::pem::Pem::iter_from_buffer(pem).flatten() {
        if let Ok(cert) = p.parse_x509() {
            out.push((cert.subject().to_string(), cert.validity().not_after.timestamp()));
        }
    }
    out
}

#[cfg(test)]
mod rotation_tests {
    use super::*;

    fn state(signer: i64, trusted: &[i64]) -> Map {
        Map::from([
            ("root_version".into(), Value::Int(signer)),
            ("trusted_root_versions".into(), Value::List(trusted.iter().map(|v| Value::Int(*v)).collect())),
        ])
    }

    #[test]
    fn a_root_rotates_only_through_steps_that_keep_trust() {
        let steps = [state(1, &[1]), state(1, &[1, 2]), state(2, &[1, 2]), state(2, &[2])];
        for w in steps.windows(2) {
            assert_eq!(rotation_gap(&w[0], &w[1]), None, "{:?} -> {:?}", w[0], w[1]);
        }
        let jump = rotation_gap(&state(1, &[1]), &state(2, &[2])).unwrap();
        assert!(jump.contains("root_version 2 is not yet trusted") && jump.contains("[1, 2]"), "{jump}");
        let drop_signer = rotation_gap(&state(1, &[1, 2]), &state(2, &[2])).unwrap();
        assert!(drop_signer.contains("root 1 still signs"), "{drop_signer}");
        assert_eq!(trusted(&state(2, &[1, 2])), vec![2, 1], "the signer comes first in the bundle");
    }
}
