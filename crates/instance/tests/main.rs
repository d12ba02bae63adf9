//! Integration tests of the instance over real HTTPS on loopback.

mod api_errors;
mod blobs;
mod lifecycle;
mod persistence;
mod protocol;
mod recovery;
mod support;
