//! The real kubectl 1.32 (the Google Cloud SDK's dispatcher) and kube-rs against each cluster's
//! simulated API server, through the kubeconfig the simulator writes.
//!
//! Needs kubectl on PATH (a missing tool fails the test saying so; see .ci/run).

use std::process::Output;

use meshform_sim::{Sim, SimOptions, files};

struct Kube {
    sim: Sim,
    dir: tempfile::TempDir,
}

impl Kube {
    /// A simulator with `opts`, except that injected faults ask for no wait (`Retry-After: 0`).
    async fn start(opts: SimOptions) -> Kube {
        let sim = Sim::start(SimOptions { retry_after_secs: 0, ..opts }).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        files::write_all(&sim, dir.path()).unwrap();
        Kube { sim, dir }
    }

    fn context(&self, i: usize) -> String {
        let c = &self.sim.clusters[i];
        files::context_name(&self.sim.world.project, &c.location, &c.name)
    }

    async fn kubectl_with(&self, kubeconfig: &std::path::Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut c = tokio::process::Command::new(meshform_sim::tools::need("kubectl"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("KUBECONFIG", kubeconfig)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("kubectl runs");
        if let Some(input) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut si = child.stdin.take().unwrap();
            si.write_all(input.as_bytes()).await.unwrap();
        } else {
            drop(child.stdin.take());
        }
        child.wait_with_output().await.unwrap()
    }

    async fn kubectl(&self, ctx: &str, args: &[&str], stdin: Option<&str>) -> Output {
        let mut a = vec!["--context", ctx];
        a.extend_from_slice(args);
        self.kubectl_with(&self.dir.path().join("kubeconfig"), &a, stdin).await
    }

    async fn ok(&self, ctx: &str, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.kubectl(ctx, args, stdin).await;
        assert!(
            o.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

const SECRET: &str =
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: demo-secret\n  namespace: sample\nstringData:\n  user: admin\n";
const GATEWAY: &str = "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata:\n  name: cross-network-gateway\n  namespace: sample\nspec:\n  selector:\n    istio: eastwestgateway\n  servers:\n  - port:\n      number: PORT\n      name: tls\n      protocol: TLS\n    tls:\n      mode: AUTO_PASSTHROUGH\n    hosts:\n    - \"*.local\"\n";
const CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm1\n  namespace: sample\ndata:\n  a: \"VALUE\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_workflow_on_every_cluster() {
    let k = Kube::start(SimOptions::default()).await;
    for i in 0..k.sim.clusters.len() {
        let ctx = k.context(i);
        let ctx = ctx.as_str();
        let ns = k.ok(ctx, &["get", "ns"], None).await;
        for n in ["default", "istio-system", "kube-system"] {
            assert!(ns.contains(n), "{ns}");
        }
        k.ok(ctx, &["create", "ns", "sample"], None).await;
        let o = k
            .kubectl(ctx, &["label", "ns", "sample", "istio-injection-", "istio.io/rev=asm-173-3", "--overwrite"], None)
            .await;
        assert!(o.status.success(), "{}", text(&o));
        let labels = k.ok(ctx, &["get", "ns", "sample", "-o", "jsonpath={.metadata.labels}"], None).await;
        assert!(labels.contains("\"istio.io/rev\":\"asm-173-3\"") && !labels.contains("istio-injection"), "{labels}");
        let pods = k.ok(ctx, &["get", "pods", "-n", "istio-system", "-l", "app=istiod", "--show-labels"], None).await;
        assert_eq!(pods.lines().filter(|l| l.contains("app=istiod,istio.io/rev=asm-173-3")).count(), 2, "{pods}");

        let out = k.ok(ctx, &["apply", "--server-side", "-f", "-"], Some(SECRET)).await;
        assert!(out.contains("secret/demo-secret serverside-applied"), "{out}");
        let out = k.ok(ctx, &["apply", "--server-side", "-f", "-"], Some(&GATEWAY.replace("PORT", "15443"))).await;
        assert!(out.contains("gateway.networking.istio.io/cross-network-gateway serverside-applied"), "{out}");
        let same = k.kubectl(ctx, &["diff", "--server-side", "-f", "-"], Some(&GATEWAY.replace("PORT", "15443"))).await;
        assert_eq!(same.status.code(), Some(0), "no differences: {}", text(&same));
        let changed =
            k.kubectl(ctx, &["diff", "--server-side", "-f", "-"], Some(&GATEWAY.replace("PORT", "15444"))).await;
        assert_eq!(changed.status.code(), Some(1), "{}", text(&changed));
        assert!(text(&changed).contains("+      number: 15444"), "{}", text(&changed));

        let out = k.ok(ctx, &["apply", "-f", "-"], Some(&CONFIGMAP.replace("VALUE", "1"))).await;
        assert!(out.contains("configmap/cm1 created"), "{out}");
        let out = k.ok(ctx, &["apply", "-f", "-"], Some(&CONFIGMAP.replace("VALUE", "2"))).await;
        assert!(out.contains("configmap/cm1 configured"), "{out}");
        assert_eq!(k.ok(ctx, &["get", "cm", "cm1", "-n", "sample", "-o", "jsonpath={.data.a}"], None).await, "2");

        let other = SECRET.replace("admin", "root");
        let conflict =
            k.kubectl(ctx, &["apply", "--server-side", "--field-manager=other", "-f", "-"], Some(&other)).await;
        assert!(!conflict.status.success());
        assert!(
            text(&conflict).contains("Apply failed with 1 conflict: conflict with \"kubectl\"")
                && text(&conflict).contains("--force-conflicts"),
            "{}",
            text(&conflict)
        );
        k.ok(ctx, &["apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-"], Some(&other))
            .await;
        assert_eq!(
            k.ok(ctx, &["get", "secret", "demo-secret", "-n", "sample", "-o", "jsonpath={.data.user}"], None).await,
            "cm9vdA=="
        );

        let out = k.ok(ctx, &["delete", "ns", "sample"], None).await;
        assert!(out.contains("namespace \"sample\" deleted"), "{out}");
        let gone = k.kubectl(ctx, &["get", "ns", "sample"], None).await;
        assert!(text(&gone).contains("NotFound"), "{}", text(&gone));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_token_kubeconfig_private_endpoint_and_tls() {
    let k = Kube::start(SimOptions::default()).await;
    let ctx = k.context(0);
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: reader-token\n  namespace: istio-system\n  annotations:\n    kubernetes.io/service-account.name: istio-reader-service-account\ntype: kubernetes.io/service-account-token\n";
    k.ok(&ctx, &["apply", "--server-side", "-f", "-"], Some(secret)).await;
    let token = k
        .ok(&ctx, &["get", "secret", "reader-token", "-n", "istio-system", "-o", "jsonpath={.data.token}"], None)
        .await;
    use base64::Engine as _;
    let token = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(token.trim()).unwrap()).unwrap();
    let ns = k
        .ok(&ctx, &["get", "secret", "reader-token", "-n", "istio-system", "-o", "jsonpath={.data.namespace}"], None)
        .await;
    assert_eq!(base64::engine::general_purpose::STANDARD.decode(ns.trim()).unwrap(), b"istio-system");
    let server = &k.sim.kube[0];
    let private = k.sim.clusters[0].private_endpoint.clone().unwrap();
    let kc = k.dir.path().join("sa.kubeconfig");
    std::fs::write(&kc, server.kubeconfig_for_token(&private, &token)).unwrap();
    let o = k.kubectl_with(&kc, &["get", "services", "-n", "istio-system"], None).await;
    assert!(o.status.success() && text(&o).contains("istiod"), "{}", text(&o));
    // The reader's role reads; RBAC refuses it anything else.
    let o = k.kubectl_with(&kc, &["create", "namespace", "not-for-readers"], None).await;
    assert!(
        !o.status.success()
            && text(&o).contains("namespaces is forbidden: User \"system:serviceaccount:istio-system:istio-reader-service-account\" cannot create resource \"namespaces\" in API group \"\" at the cluster scope"),
        "{}",
        text(&o)
    );

    std::fs::write(&kc, server.kubeconfig_for_token(&private, "not-a-token")).unwrap();
    let o = k.kubectl_with(&kc, &["get", "ns"], None).await;
    assert!(!o.status.success() && text(&o).contains("Unauthorized"), "{}", text(&o));

    // A client trusting another cluster's CA refuses the connection.
    std::fs::write(&kc, k.sim.kube[1].kubeconfig_for_token(&private, &token)).unwrap();
    let o = k.kubectl_with(&kc, &["get", "ns"], None).await;
    assert!(!o.status.success() && text(&o).contains("certificate signed by unknown authority"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_crd_is_servable_at_once() {
    let k = Kube::start(SimOptions::default()).await;
    let ctx = k.context(0);
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names:\n    plural: widgets\n    singular: widget\n    kind: Widget\n    shortNames: [wd]\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n";
    k.ok(&ctx, &["apply", "--server-side", "-f", "-"], Some(crd)).await;
    let established = k
        .ok(
            &ctx,
            &[
                "get",
                "crd",
                "widgets.example.com",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
            ],
            None,
        )
        .await;
    assert_eq!(established, "True");
    let w = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: default\nspec:\n  size: 3\n";
    let out = k.ok(&ctx, &["apply", "--server-side", "-f", "-"], Some(w)).await;
    assert!(out.contains("widget.example.com/w1 serverside-applied"), "{out}");
    let got = k.ok(&ctx, &["get", "wd", "w1", "-n", "default", "-o", "jsonpath={.spec.size}"], None).await;
    assert_eq!(got, "3");
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_and_latency_reach_the_api_servers_too() {
    let k = Kube::start(SimOptions { fault_rate: 0.3, seed: 3, ..SimOptions::default() }).await;
    let ctx = k.context(0);
    for _ in 0..3 {
        k.ok(&ctx, &["get", "ns", "default"], None).await;
    }
    let log = k.sim.kube[0].log.lock().unwrap().clone();
    assert!(log.iter().any(|(_, _, s, ..)| *s == 429 || *s == 503), "{log:?}");
    // --latency delays every request of both APIs (a lower bound: never flaky on a slow machine).
    let slow =
        Kube::start(SimOptions { latency: std::time::Duration::from_millis(300), ..SimOptions::default() }).await;
    let ctx = slow.context(0);
    let started = std::time::Instant::now();
    slow.ok(&ctx, &["get", "ns", "default"], None).await;
    assert!(!slow.sim.kube[0].log.lock().unwrap().is_empty());
    assert!(started.elapsed() >= std::time::Duration::from_millis(300), "{:?}", started.elapsed());
    let (host, token) = (slow.sim.base_url().trim_start_matches("http://").to_string(), slow.sim.token.clone());
    let (reply, took) = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let started = std::time::Instant::now();
        let mut conn = std::net::TcpStream::connect(&host).unwrap();
        write!(
            conn,
            "GET /compute/v1/projects/meshform-demo/global/firewalls HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).unwrap();
        (reply, started.elapsed())
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(took >= std::time::Duration::from_millis(300), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_discovery_dynamic_objects_and_stale_writes() {
    use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
    use kube::config::{KubeConfigOptions, Kubeconfig};
    use kube::core::GroupVersionKind;

    let k = Kube::start(SimOptions::default()).await;
    let kc = Kubeconfig::read_from(k.dir.path().join("kubeconfig")).unwrap();
    let opts = KubeConfigOptions { context: Some(k.context(1)), ..Default::default() };
    let config = kube::Config::from_custom_kubeconfig(kc, &opts).await.unwrap();
    let client = kube::Client::try_from(config).unwrap();
    assert_eq!(client.apiserver_version().await.unwrap().minor, "32");

    let discovery = kube::Discovery::new(client.clone()).run_aggregated().await.unwrap();
    assert!(discovery.groups().any(|g| g.name() == "networking.istio.io"));
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1beta1", "Gateway");
    let (ar, _caps) = kube::discovery::pinned_kind(&client, &gvk).await.unwrap();
    assert_eq!(ar.plural, "gateways");

    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "istio-system", &ar);
    let gw: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
        "metadata": {"name": "gw1", "namespace": "istio-system"},
        "spec": {"selector": {"istio": "eastwestgateway"}}
    }))
    .unwrap();
    let applied = api.patch("gw1", &PatchParams::apply("meshform").force(), &Patch::Apply(&gw)).await.unwrap();
    assert_eq!(applied.metadata.generation, Some(1));
    let again = api.patch("gw1", &PatchParams::apply("meshform").force(), &Patch::Apply(&gw)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version, applied.metadata.resource_version,
        "a no-op apply keeps the resourceVersion"
    );
    let listed = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let mut stale = api.get("gw1").await.unwrap();
    stale.data["spec"]["selector"]["istio"] = serde_json::json!("changed");
    let fresh = api
        .patch("gw1", &PatchParams::default(), &Patch::Merge(serde_json::json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .unwrap();
    assert_ne!(fresh.metadata.resource_version, stale.metadata.resource_version);
    match api.replace("gw1", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409),
        other => panic!("expected a 409 conflict, got {other:?}"),
    }
    api.delete("gw1", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("gw1").await.unwrap().is_none());
}

const LEASE: &str = "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: meshform-state\n  namespace: default\nspec:\n  holderIdentity: meshform-run-1\n  leaseDurationSeconds: 60\n  acquireTime: \"2026-01-01T00:00:00.000000Z\"\n  renewTime: \"2026-01-01T00:00:00.000000Z\"\n";

#[tokio::test(flavor = "multi_thread")]
async fn leases_get_describe_and_refuse_stale_writes() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Api, DeleteParams, PostParams, Preconditions};
    use kube::config::{KubeConfigOptions, Kubeconfig};

    let k = Kube::start(SimOptions::default()).await;
    let ctx = k.context(0);
    k.ok(&ctx, &["apply", "-f", "-"], Some(LEASE)).await;
    let get = k.ok(&ctx, &["get", "lease", "meshform-state"], None).await;
    let header: Vec<&str> = get.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "HOLDER", "AGE"], "{get}");
    assert!(
        get.lines().nth(1).is_some_and(|l| l.starts_with("meshform-state") && l.contains("meshform-run-1")),
        "{get}"
    );
    let describe = k.ok(&ctx, &["describe", "lease", "meshform-state"], None).await;
    assert!(describe.contains("Holder Identity:") && describe.contains("meshform-run-1"), "{describe}");
    assert!(describe.contains("Kind:") && describe.contains("Lease"), "{describe}");

    let kc = Kubeconfig::read_from(k.dir.path().join("kubeconfig")).unwrap();
    let opts = KubeConfigOptions { context: Some(ctx.clone()), ..Default::default() };
    let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &opts).await.unwrap()).unwrap();
    let api: Api<Lease> = Api::namespaced(client, "default");
    let stale = api.get("meshform-state").await.unwrap();
    // A renewal: a compare-and-swap on the resourceVersion.
    let mut renewed = stale.clone();
    renewed.spec.as_mut().unwrap().holder_identity = Some("meshform-run-2".into());
    let renewed = api.replace("meshform-state", &PostParams::default(), &renewed).await.unwrap();
    assert_ne!(renewed.metadata.resource_version, stale.metadata.resource_version);
    match api.replace("meshform-state", &PostParams::default(), &stale).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        other => panic!("a stale update must conflict, got {other:?}"),
    }
    let stale_rv = stale.metadata.resource_version.clone();
    let dp = DeleteParams {
        preconditions: Some(Preconditions { resource_version: stale_rv.clone(), uid: None }),
        ..Default::default()
    };
    match api.delete("meshform-state", &dp).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(s.message.contains("Precondition failed: ResourceVersion in precondition"), "{}", s.message);
        }
        other => panic!("a stale delete must conflict, got {other:?}"),
    }
    assert!(k.ok(&ctx, &["get", "lease"], None).await.contains("meshform-run-2"));
    let dp = DeleteParams {
        preconditions: Some(Preconditions { resource_version: renewed.metadata.resource_version.clone(), uid: None }),
        ..Default::default()
    };
    api.delete("meshform-state", &dp).await.unwrap();
    assert!(api.get_opt("meshform-state").await.unwrap().is_none());
}

const HELLO: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: helloworld-v1\n  namespace: default\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: helloworld, version: v1}\n  template:\n    metadata:\n      labels: {app: helloworld, version: v1}\n    spec:\n      containers:\n      - name: helloworld\n        image: docker.io/istio/examples-helloworld-v1\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: helloworld\n  namespace: default\nspec:\n  selector: {app: helloworld}\n  ports:\n  - name: http\n    port: 5000\n";

/// The workload controllers as kubectl sees them: a Deployment's Pods (Ready, its replicas of
/// its current template), its rollout status, and the EndpointSlice of the Service selecting
/// them, following scale, template changes and deletion.
#[tokio::test(flavor = "multi_thread")]
async fn deployments_get_pods_status_and_endpoint_slices() {
    let k = Kube::start(SimOptions::default()).await;
    let ctx = k.context(0);
    let ctx = ctx.as_str();
    k.ok(ctx, &["apply", "--server-side", "-f", "-"], Some(HELLO)).await;
    let status = k.ok(ctx, &["rollout", "status", "deployment/helloworld-v1", "--timeout=5s"], None).await;
    assert!(status.contains("successfully rolled out"), "{status}");
    let pods = k.ok(ctx, &["get", "pods", "-l", "app=helloworld", "-o", "name"], None).await;
    assert_eq!(pods.lines().count(), 2, "{pods}");
    let (eps, port) = slices(&k, ctx).await;
    assert_eq!((eps.len(), port), (2, serde_json::json!(5000)));
    // (The simulator serves no `scale` subresource: a patch of `spec.replicas` does the same.)
    k.ok(ctx, &["patch", "deployment/helloworld-v1", "--type=merge", "-p", r#"{"spec":{"replicas":3}}"#], None).await;
    assert_eq!(slices(&k, ctx).await.0.len(), 3);
    // A new template replaces the Pods; their names carry the new template's hash.
    k.ok(ctx, &["set", "image", "deployment/helloworld-v1", "helloworld=docker.io/istio/examples-helloworld-v2"], None)
        .await;
    let (new, _) = slices(&k, ctx).await;
    assert_eq!(new.len(), 3);
    assert!(new.iter().all(|p| !eps.contains(p)), "{new:?} vs {eps:?}");
    k.ok(ctx, &["delete", "deployment", "helloworld-v1"], None).await;
    let pods = k.ok(ctx, &["get", "pods", "-l", "app=helloworld", "-o", "name"], None).await;
    assert_eq!(pods.trim(), "", "the Deployment's Pods go with it");
    assert!(slices(&k, ctx).await.0.is_empty());
}

/// The Pods (by name) of the helloworld EndpointSlice, and its first port.
async fn slices(k: &Kube, ctx: &str) -> (Vec<String>, serde_json::Value) {
    let out =
        k.ok(ctx, &["get", "endpointslices", "-l", "kubernetes.io/service-name=helloworld", "-o", "json"], None).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let eps = v["items"][0]["endpoints"].as_array().cloned().unwrap_or_default();
    let pods: Vec<String> = eps.iter().map(|e| e["targetRef"]["name"].as_str().unwrap().to_string()).collect();
    (pods, v["items"][0]["ports"][0]["port"].clone())
}
