//! Simulator throughput (not a timed test): GET and insert requests per second over keep-alive
//! HTTP/1.1 connections on loopback, client and server in one process on this machine.
//! Target: 5,000 GET requests/s on 2 cores.
//!
//!     cargo bench -p meshform-sim --bench throughput

use std::time::{Duration, Instant};

use meshform_sim::{Sim, SimOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Sends requests on one connection until `until`; returns how many got a 2xx.
async fn client(addr: std::net::SocketAddr, token: String, insert: bool, id: usize, until: Instant) -> usize {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut ok = 0;
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        let req = if insert {
            let body = format!(r#"{{"name":"fw-{id}-{n}","allowed":[{{"IPProtocol":"tcp","ports":["80"]}}]}}"#);
            format!(
                "POST /compute/v1/projects/meshform-demo/global/firewalls HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            format!(
                "GET /container/v1/projects/meshform-demo/locations/us-central1-a/clusters/cluster-1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
        };
        if w.write_all(req.as_bytes()).await.is_err() {
            break;
        }
        let mut status = String::new();
        if r.read_line(&mut status).await.unwrap_or(0) == 0 {
            break;
        }
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.unwrap_or(0);
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).await.is_err() {
            break;
        }
        if status.contains(" 200 ") {
            ok += 1;
        }
    }
    ok
}

async fn measure(sim: &Sim, insert: bool, conns: usize, secs: f64) -> f64 {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks: Vec<_> =
        (0..conns).map(|i| tokio::spawn(client(sim.addr, sim.token.clone(), insert, i, until))).collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let sim = Sim::start(SimOptions { lro_polls: 0, ..SimOptions::default() }).await.expect("start");
        println!("{:<10} {:>6} {:>12}", "request", "conns", "requests/s");
        for conns in [8, 32] {
            let gets = measure(&sim, false, conns, 2.0).await;
            println!("{:<10} {:>6} {:>12.0}", "GET", conns, gets);
            println!("{{\"bench\":\"sim\",\"request\":\"GET\",\"conns\":{conns},\"per_second\":{gets:.0}}}");
        }
        let inserts = measure(&sim, true, 8, 2.0).await;
        println!("{:<10} {:>6} {:>12.0}", "insert", 8, inserts);
        println!("{{\"bench\":\"sim\",\"request\":\"insert\",\"conns\":8,\"per_second\":{inserts:.0}}}");
        sim.stop().await;
    });
}
