//! The metrics of a run (`--metrics`, `--metrics-file`): [`crate::report::metrics`] counts the
//! records beside the output format, and this serves them at `/metrics` over HTTP while the run
//! goes on and writes them to a file at its end.
//!
//! The server is hyper 1 (with hyper-util's tokio glue) on a thread of its own that runs a
//! one-thread tokio runtime. hyper is the maintained HTTP implementation of the tokio ecosystem
//! the tracer already runs on; a thread of its own serves live tracing (whose loop must not wait
//! on a scraper) and replay (which has no runtime) alike, and a scrape never holds back the
//! rings. The port is bound before the privileges are given up (so a port below 1024 works),
//! and the thread starts after, so it never holds a capability (capabilities are per thread).

use std::{
    convert::Infallible,
    fs,
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{anyhow, Context, Result};
use http_body_util::Full;
use hyper::{
    body::{Bytes, Incoming},
    header,
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

use crate::{
    pipeline::Sink,
    report::{
        metrics::{Metrics, MetricsSink, CONTENT_TYPE},
        Tee,
    },
};

/// Where `--metrics` without an address listens: loopback only, on the port the Prometheus
/// project's port list gives no other exporter.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 32;
/// A client has this long to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection (kept alive between scrapes) is closed after this long; the scraper opens
/// another.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);

/// What `--metrics` and `--metrics-file` asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsOptions {
    /// Serve `/metrics` on this address.
    pub listen: Option<SocketAddr>,
    /// Write the exposition here at the end of the run (`-`: standard error).
    pub file: Option<PathBuf>,
}

/// A run's metrics: nothing at all unless asked for.
pub struct Exporter {
    metrics: Option<Arc<Metrics>>,
    listener: Option<(std::net::TcpListener, SocketAddr)>,
    file: Option<PathBuf>,
}

impl Exporter {
    /// Sets up what `opts` asks for and binds the listening port (call it before giving up
    /// privileges; [`Exporter::start`] serves it).
    ///
    /// # Errors
    /// When the address cannot be bound (in use, not this host's).
    pub fn bind(opts: &MetricsOptions) -> Result<Exporter> {
        let listener = match opts.listen {
            Some(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .with_context(|| format!("--metrics {addr}: cannot listen there"))?;
                let bound = listener.local_addr()?;
                Some((listener, bound))
            }
            None => None,
        };
        let wanted = listener.is_some() || opts.file.is_some();
        Ok(Exporter {
            metrics: wanted.then(|| Arc::new(Metrics::new())),
            listener,
            file: opts.file.clone(),
        })
    }

    /// `output` with the metrics sink beside it, when metrics were asked for.
    pub fn beside(&self, output: Box<dyn Sink + Send>) -> Box<dyn Sink + Send> {
        match &self.metrics {
            Some(metrics) => Box::new(Tee::new(vec![
                output,
                Box::new(MetricsSink::new(metrics.clone())),
            ])),
            None => output,
        }
    }

    /// Starts serving `/metrics` on the bound port, on a thread of its own that lives as long
    /// as the process. Call it after giving up privileges.
    ///
    /// # Errors
    /// When the runtime or the thread cannot be made.
    pub fn start(&mut self) -> Result<()> {
        let (Some((listener, addr)), Some(metrics)) = (self.listener.take(), &self.metrics) else {
            return Ok(());
        };
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)?
        };
        let metrics = metrics.clone();
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || runtime.block_on(serve(listener, metrics)))
            .context("starting the metrics server")?;
        eprintln!("rst-tracer: metrics on http://{addr}/metrics");
        Ok(())
    }

    /// Writes the exposition to the `--metrics-file` (call it once the last summary is
    /// written).
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn finish(&self) -> Result<()> {
        let (Some(path), Some(metrics)) = (&self.file, &self.metrics) else {
            return Ok(());
        };
        let text = metrics
            .encode()
            .map_err(|_| anyhow!("encoding the metrics failed"))?;
        write_exposition(path, &text)
    }
}

/// Accepts connections until the process ends, at most [`MAX_CONNECTIONS`] at a time.
async fn serve(listener: tokio::net::TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, or a connection reset before it was accepted: try again.
                log::debug!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |request| {
                        let metrics = metrics.clone();
                        async move { Ok::<_, Infallible>(respond(&request, &metrics)) }
                    }),
                );
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
            drop(slot);
        });
    }
}

/// The answer to one request: the exposition for `GET /metrics` (and `HEAD`), else an error.
fn respond(request: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "rst-tracer serves /metrics\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let Ok(text) = metrics.encode() else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n");
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// Writes `text` to `path` the way the node exporter's textfile collector wants it: into a new
/// file beside it, renamed over it, so a reader never sees half of it (and a symbolic link at
/// `path` is replaced, never written through). `-` is standard error.
fn write_exposition(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display();
    if path == Path::new("-") {
        return std::io::stderr()
            .write_all(text.as_bytes())
            .context("writing the metrics to standard error");
    }
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("--metrics-file {shown} names no file"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temporary = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temporary)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| fs::rename(&temporary, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temporary);
        return Err(e).with_context(|| format!("writing the metrics to {shown}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_file_replaces_a_symlink_instead_of_writing_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        fs::write(&target, "keep me").unwrap();
        let path = dir.path().join("rst-tracer.prom");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        write_exposition(&path, "rst_tracer_resets_total 1\n").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me");
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "rst_tracer_resets_total 1\n"
        );
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
        // Nothing is left beside it.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        // A directory that does not exist is an error that names the file.
        let err = write_exposition(&dir.path().join("no/such.prom"), "x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no/such.prom"), "{err}");
    }

    /// The status line and body of the answer to `request` from the server at `addr`.
    fn fetch(addr: SocketAddr, request: &str) -> (String, String) {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        let status = head.lines().next().unwrap_or("").to_string();
        (status, body.to_string())
    }

    #[test]
    fn the_server_answers_get_metrics_and_only_that() {
        let mut e = Exporter::bind(&MetricsOptions {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            file: None,
        })
        .unwrap();
        let addr = e.listener.as_ref().unwrap().1;
        e.start().unwrap();
        let get = |path: &str, method: &str| {
            fetch(
                addr,
                &format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            )
        };
        let (status, body) = get("/metrics", "GET");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(
            body.contains("# TYPE rst_tracer_build_info gauge"),
            "{body}"
        );
        assert!(body.contains("rst_tracer_build_info{version="), "{body}");
        assert_eq!(get("/", "GET").0, "HTTP/1.1 404 Not Found");
        assert_eq!(get("/metrics", "POST").0, "HTTP/1.1 405 Method Not Allowed");
    }

    #[test]
    fn nothing_is_set_up_unless_asked_for() {
        let e = Exporter::bind(&MetricsOptions::default()).unwrap();
        assert!(e.metrics.is_none() && e.listener.is_none());
        let e = Exporter::bind(&MetricsOptions {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            file: None,
        })
        .unwrap();
        assert!(e.metrics.is_some());
        // The port is taken now: a second tracer on it fails with the address in the message.
        let addr = e.listener.as_ref().unwrap().1;
        let err = Exporter::bind(&MetricsOptions {
            listen: Some(addr),
            file: None,
        })
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains(&addr.to_string()), "{err:#}");
    }
}
