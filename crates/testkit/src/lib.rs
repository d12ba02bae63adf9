//! What the tests start beside the product's own local parts ([`openmid_local`], which
//! this re-exports so every test reaches one kit): a SOAP 1.1/1.2 service with a WSDL
//! that answers like an independent implementation, a CONNECT proxy and a rate-limited
//! file server with ranges, on loopback.
//! Test-only: the shipped binary does not depend on this crate.

pub mod file_server;
pub mod prometheus;
pub mod proxy;
pub mod soap_service;

pub use file_server::{FileServer, FileServerOptions};
pub use openmid_local::*;
pub use prometheus::Prometheus;
pub use proxy::ConnectProxy;
pub use soap_service::SoapService;

/// The in-process instance, by the name the tests use.
pub type TestInstance = openmid_local::LocalInstance;
