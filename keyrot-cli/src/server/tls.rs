//! `serve`'s TLS: rustls (on aws-lc-rs, the provider already in the tree) with a certificate
//! and key read from files and read again when they change, so a renewed certificate is served
//! without a restart. A change that does not load (a half-written file, a key that does not
//! match) is logged and the certificate in use is kept.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use keyrot_config::Tls;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the certificate and key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("{} holds no {what} in PEM", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the certificate, the key or the pair.
    #[error("the TLS certificate and key in {} and {} cannot be used", cert.display(), key.display())]
    Rustls {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// When a file was last changed and how long it is: a change of either means read it again.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The certificate in use, read again when its files change.
struct Reloading {
    files: Tls,
    current: Mutex<(Stamp, Stamp, Arc<CertifiedKey>)>,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Reloading {
    fn load(files: &Tls) -> Result<Arc<CertifiedKey>, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        fn pem(
            path: &Path,
            what: &'static str,
        ) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError {
            let path = path.to_owned();
            move |source| TlsError::Pem { path, what, source }
        }
        let cert_pem = read(&files.cert)?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem(&files.cert, "certificate"))?;
        if certs.is_empty() {
            return Err(pem(&files.cert, "certificate")(
                rustls_pki_types::pem::Error::NoItemsFound,
            ));
        }
        let key_pem = zeroize::Zeroizing::new(read(&files.key)?);
        let key =
            PrivateKeyDer::from_pem_slice(&key_pem).map_err(pem(&files.key, "private key"))?;
        let rustls = |source| TlsError::Rustls {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        };
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let certified = CertifiedKey::from_der(certs, key, &provider).map_err(rustls)?;
        Ok(Arc::new(certified))
    }

    fn new(files: Tls) -> Result<Self, TlsError> {
        let stamps = (stamp(&files.cert), stamp(&files.key));
        let key = Self::load(&files)?;
        Ok(Self {
            current: Mutex::new((stamps.0, stamps.1, key)),
            files,
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let stamps = (stamp(&self.files.cert), stamp(&self.files.key));
        if (stamps.0, stamps.1) != (current.0, current.1) {
            match Self::load(&self.files) {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                    *current = (stamps.0, stamps.1, key);
                }
                Err(e) => {
                    // Tried again at the next handshake, while the files stay as they are not.
                    tracing::warn!(
                        error = %keyrot_core::driver::error_chain(&e),
                        "TLS certificate changed but cannot be loaded; keeping the one in use"
                    );
                    current.0 = stamps.0;
                    current.1 = stamps.1;
                }
            }
        }
        Arc::clone(&current.2)
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The TLS acceptor for `files`; fails if they cannot be loaded now.
pub fn acceptor(files: &Tls) -> Result<TlsAcceptor, TlsError> {
    let resolver = Reloading::new(files.clone())?;
    let rustls = |source| TlsError::Rustls {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    };
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(rustls)?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
