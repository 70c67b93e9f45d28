//! HTTPS for `clusto serve`: a certificate chain and key from PEM files,
//! rustls with the ring provider (the one the rest of the binary uses),
//! HTTP/1.1 over each accepted TLS stream.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{0}: no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)")]
    NoCertificate(String),
    #[error("{cert} and {key} do not make a TLS server: {source}")]
    Config {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
}

/// A server configuration ready to accept connections.
#[derive(Clone)]
pub struct Tls(Arc<rustls::ServerConfig>);

impl Tls {
    /// `cert`: the server's certificate first, then any intermediates;
    /// `key`: its private key (PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let name = |p: &Path| p.display().to_string();
        let read = |p: &Path| {
            let path = name(p);
            move |source| TlsError::Read { path, source }
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(read(cert))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(read(cert))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(name(cert)));
        }
        let private = PrivateKeyDer::from_pem_file(key).map_err(read(key))?;
        let config = |source| TlsError::Config {
            cert: name(cert),
            key: name(key),
            source,
        };
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(config)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(config)?;
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls(Arc::new(server)))
    }
}

/// Like [`crate::serve`], over TLS.
pub async fn serve_tls(addr: SocketAddr, router: Router, tls: Tls) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(addr = %bound, "HTTPS");
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.0);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    tokio::spawn(connection(acceptor.clone(), tcp, peer, router.clone()));
                }
                // Out of file descriptors and the like: pause instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(bound)
}

/// One client: the handshake (bounded, so silent peers do not pile up),
/// then HTTP/1.1 with the router.
async fn connection(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
) {
    let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
    };
    let service = hyper_util::service::TowerToHyperService::new(router);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
