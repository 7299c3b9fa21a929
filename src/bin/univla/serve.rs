//! `univla serve`: the policy behind the openpi remote-inference protocol (see the README's
//! "Serving a fleet"), and `univla bench-serve`: its throughput and latency with 1…N clients.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rmpv::Value;
use univla_ros::runtime::session::Policy;
use univla_ros::serve::client::Client;
use univla_ros::serve::wire::{self, str_map, Dtype};
use univla_ros::serve::{Mapping, ServeOptions, Server};

use crate::common::PolicyArgs;

#[derive(clap::Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Request keys of the embodiment (YAML, see config/serve/); default: openpi's LIBERO
    /// example keys (observation/image, observation/state, prompt).
    #[arg(long)]
    pub embodiment: Option<PathBuf>,
    /// Address to listen on (loopback by default; give 0.0.0.0 to serve other machines).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// TCP port (0: any free port, printed at start).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Most requests of different sessions run as one batch.
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// How long the model waits for more requests after the first of a batch (ms).
    #[arg(long, default_value_t = 5)]
    pub batch_window_ms: u64,
    /// Most sessions (connections) at once; more are refused.
    #[arg(long, default_value_t = 64)]
    pub max_sessions: usize,
    /// Require the header `Authorization: Api-Key KEY` (openpi-client's `api_key`).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Largest request frame (MiB).
    #[arg(long, default_value_t = 64)]
    pub max_frame_mib: usize,
    /// Close sessions that send nothing for this long (s).
    #[arg(long, default_value_t = 600)]
    pub idle_timeout_s: u64,
}

impl ServeArgs {
    fn serve_options(&self) -> anyhow::Result<ServeOptions> {
        anyhow::ensure!(
            self.policy.greedy || self.policy.seed.is_some(),
            "choose the decoding: --greedy, or --seed N to sample (session k draws with seed N + k)"
        );
        let mapping = match &self.embodiment {
            Some(p) => Mapping::from_file(p)?,
            None => Mapping::default(),
        };
        Ok(ServeOptions {
            mapping,
            max_batch: self.max_batch,
            batch_window: Duration::from_millis(self.batch_window_ms),
            max_sessions: self.max_sessions,
            api_key: self.api_key.clone(),
            seed: self.policy.seed.map(|s| s as u64),
            max_frame_bytes: self.max_frame_mib.saturating_mul(1 << 20),
            idle_timeout: Duration::from_secs(self.idle_timeout_s),
        })
    }

    fn addr(&self) -> anyhow::Result<SocketAddr> {
        let ip: std::net::IpAddr = self
            .host
            .parse()
            .with_context(|| format!("--host {}: expected an IP address", self.host))?;
        Ok(SocketAddr::new(ip, self.port))
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let opts = args.serve_options()?;
    let addr = args.addr()?;
    let mut popts = args.policy.options()?;
    popts.progress = false;
    let policy = Policy::load(popts)?;
    runtime()?.block_on(async move {
        let server = Server::bind(policy, opts, addr).await?;
        let local = server.local_addr()?;
        // Tests and scripts read this line for the port.
        println!("univla serve: listening on ws://{local}");
        tracing::info!("serving on ws://{local} (GET /healthz, GET /status)");
        tokio::select! {
            r = server.run() => r.map_err(anyhow::Error::from),
            _ = shutdown_signal() => {
                tracing::info!("shutting down");
                Ok(())
            }
        }
    })
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[derive(clap::Args)]
pub struct BenchServeArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Concurrent clients per measurement, comma-separated.
    #[arg(long, default_value = "1,2,4,8", value_delimiter = ',')]
    pub clients: Vec<usize>,
    /// Measured requests per client at each level (after 2 unmeasured ones).
    #[arg(long, default_value_t = 10)]
    pub requests: usize,
    /// Also measure with batching off (--max-batch 1) for comparison.
    #[arg(long)]
    pub compare_unbatched: bool,
}

/// A request as openpi's LIBERO example sends it: a 640×480 uint8 image, a state and a prompt.
fn bench_request(client: usize, step: usize) -> anyhow::Result<Vec<u8>> {
    let img = crate::bench::synthetic_image(640, 480, (client * 7 + step) as u32)?;
    let prompts = [
        "pick up the red cup",
        "put the bowl on the plate and close the drawer",
        "open the top drawer",
        "stack the blue block on the green block then push it left",
    ];
    Ok(wire::encode(&str_map(vec![
        (
            "observation/image",
            wire::ndarray_value(Dtype::U8, &[480, 640, 3], img.into_raw()),
        ),
        ("observation/state", wire::f32_array([0.0; 8], &[8])),
        ("prompt", Value::from(prompts[client % prompts.len()])),
    ])))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn run_bench(args: BenchServeArgs) -> anyhow::Result<()> {
    let base = args.serve.serve_options()?;
    let mut popts = args.serve.policy.options()?;
    popts.progress = false;
    let policy = Policy::load(popts)?;
    let max_clients = args.clients.iter().copied().max().unwrap_or(1);
    let mut configs = vec![("batched", base.max_batch)];
    if args.compare_unbatched {
        configs.push(("unbatched", 1));
    }
    println!(
        "{:<10} {:>7} {:>9} {:>12} {:>9} {:>9} {:>10}",
        "mode", "clients", "requests", "throughput", "p50 ms", "p99 ms", "mean batch"
    );
    runtime()?.block_on(async {
        for (name, max_batch) in configs {
            let opts = ServeOptions {
                max_batch,
                // Sessions of the previous level may still be closing when the next connects.
                max_sessions: 2 * max_clients.max(1),
                ..base.clone()
            };
            let server = Server::bind(Arc::clone(&policy), opts, "127.0.0.1:0".parse()?).await?;
            let url = format!("ws://{}", server.local_addr()?);
            let serving = tokio::spawn(server.run());
            for &n in &args.clients {
                let (lat, batches, wall) = bench_level(&url, n, args.requests).await?;
                let mut sorted = lat.clone();
                sorted.sort_by(f64::total_cmp);
                let mean_batch = batches.iter().sum::<f64>() / batches.len().max(1) as f64;
                println!(
                    "{:<10} {:>7} {:>9} {:>9.2}/s {:>9.1} {:>9.1} {:>10.2}",
                    name,
                    n,
                    lat.len(),
                    lat.len() as f64 / wall.as_secs_f64(),
                    percentile(&sorted, 0.5),
                    percentile(&sorted, 0.99),
                    mean_batch
                );
            }
            serving.abort();
        }
        anyhow::Ok(())
    })
}

/// `n` clients sending `requests` measured requests each: latencies (ms), batch sizes, wall time.
async fn bench_level(url: &str, n: usize, requests: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>, Duration)> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(Client::connect(url, None).await?);
    }
    // Warm-up: two requests each, all clients at once.
    let warm = clients.into_iter().enumerate().map(|(i, mut c)| async move {
        for s in 0..2 {
            c.call(bench_request(i, s)?).await?.map_err(anyhow::Error::msg)?;
        }
        anyhow::Ok(c)
    });
    let clients = futures::future::try_join_all(warm).await?;
    let start = Instant::now();
    let tasks = clients.into_iter().enumerate().map(|(i, mut c)| {
        tokio::spawn(async move {
            let mut out = Vec::with_capacity(requests);
            for s in 0..requests {
                let frame = bench_request(i, s + 2)?;
                let t = Instant::now();
                let resp = c.call(frame).await?.map_err(anyhow::Error::msg)?;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                let batch = batch_size(&resp).unwrap_or(0.0);
                out.push((ms, batch));
            }
            c.close().await;
            anyhow::Ok(out)
        })
    });
    let mut lat = Vec::new();
    let mut batches = Vec::new();
    for r in futures::future::join_all(tasks).await {
        for (ms, b) in r?? {
            lat.push(ms);
            batches.push(b);
        }
    }
    Ok((lat, batches, start.elapsed()))
}

fn batch_size(resp: &Value) -> Option<f64> {
    let timing = resp
        .as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some("server_timing"))?
        .1
        .as_map()?;
    timing
        .iter()
        .find(|(k, _)| k.as_str() == Some("batch_size"))?
        .1
        .as_u64()
        .map(|b| b as f64)
}
