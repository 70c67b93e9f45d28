//! The `/metrics` endpoint of clusto's daemons: Prometheus text format over
//! a deliberately tiny HTTP/1.1 responder (one GET, then close), so no web
//! framework sits in the daemons' build.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Renders the current metrics as Prometheus text.
pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `render()` at any path on `addr`; returns the bound address
/// (useful with port 0).
pub async fn serve(addr: SocketAddr, render: Render) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(addr).await?;
    let bound = l.local_addr()?;
    tracing::info!(addr = %bound, "metrics at /metrics");
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = l.accept().await {
            let body = render();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(bound)
}
