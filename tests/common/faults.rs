//! A small HTTP proxy that injects S3's failures between sluice and the test endpoint:
//! throttling (503 SlowDown), internal errors (500) and connections dropped without an
//! answer, on a fixed share of requests; and conditional writes (`If-None-Match`) that reach
//! the server but whose answer is lost, so that the client's retry is refused by the write it
//! made itself. Every answered request is forwarded as it came. While `held` is set, requests
//! wait before they are forwarded (a store that stalls).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What happened to the requests, for the test's own checks.
#[derive(Default)]
pub struct FaultCounts {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub errors: AtomicU64,
    pub dropped: AtomicU64,
    /// STS AssumeRole calls that went through (a role's sessions, first and renewed).
    pub assume_role: AtomicU64,
    /// Conditional writes forwarded whose answer was dropped.
    pub lost_answers: AtomicU64,
    conditional: AtomicU64,
    /// Requests wait while this is set.
    pub held: std::sync::atomic::AtomicBool,
}

pub struct FaultProxy {
    pub url: String,
    pub counts: Arc<FaultCounts>,
}

/// Starts the proxy in front of `upstream` (`host:port`); it lives as long as the test.
/// Of every `every` requests, one is throttled, one fails with a 500 and one is dropped; with
/// `every` 0, none is.
pub fn fault_proxy(upstream: &str, every: u64) -> FaultProxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let counts = Arc::new(FaultCounts::default());
    let c = counts.clone();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let c = c.clone();
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let _ = serve(conn, &upstream, &c, every);
            });
        }
    });
    FaultProxy { url, counts }
}

/// One request per connection (answers say `Connection: close`).
fn serve(
    mut client: TcpStream,
    upstream: &str,
    counts: &FaultCounts,
    every: u64,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if lower.starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = Vec::new();
    if chunked {
        // Forwarded as it came, chunk framing included.
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            body.extend_from_slice(size.as_bytes());
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            if n == 0 {
                break;
            }
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    while counts.held.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let conditional = head
        .windows(14)
        .any(|w| w.eq_ignore_ascii_case(b"if-none-match:"));
    if conditional && every > 0 {
        let k = counts.conditional.fetch_add(1, Ordering::Relaxed) + 1;
        if k % every == 2 {
            // The write lands; its answer never arrives.
            let mut server = TcpStream::connect(upstream)?;
            server.write_all(&head)?;
            server.write_all(&body)?;
            let mut response = Vec::new();
            server.read_to_end(&mut response)?;
            counts.lost_answers.fetch_add(1, Ordering::Relaxed);
            return client.shutdown(Shutdown::Both);
        }
    }
    let n = counts.requests.fetch_add(1, Ordering::Relaxed) + 1;
    if body.windows(17).any(|w| w == b"Action=AssumeRole") {
        counts.assume_role.fetch_add(1, Ordering::Relaxed);
    }
    match n.checked_rem(every).unwrap_or(0) {
        1 => {
            counts.throttled.fetch_add(1, Ordering::Relaxed);
            return answer(
                &mut client,
                "503 Slow Down",
                "SlowDown",
                "Please reduce your request rate.",
            );
        }
        3 => {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            return answer(
                &mut client,
                "500 Internal Server Error",
                "InternalError",
                "We encountered an internal error. Please try again.",
            );
        }
        5 => {
            counts.dropped.fetch_add(1, Ordering::Relaxed);
            return client.shutdown(Shutdown::Both);
        }
        _ => {}
    }
    let mut server = TcpStream::connect(upstream)?;
    server.write_all(&head)?;
    server.write_all(&body)?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    client.write_all(&response)?;
    client.shutdown(Shutdown::Both)
}

fn answer(client: &mut TcpStream, status: &str, code: &str, message: &str) -> std::io::Result<()> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>fault</RequestId></Error>"
    );
    write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    client.shutdown(Shutdown::Both)
}
