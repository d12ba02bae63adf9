//! Integration tests of the instance over real HTTPS on loopback.

mod api_errors;
mod blobs;
mod certificate;
mod conformance;
mod dashboard;
mod dashboard_scale;
mod error_format;
mod files;
mod hardening;
mod lifecycle;
mod openapi;
mod persistence;
mod protocol;
mod recovery;
mod store_postgres;
mod store_sqlite;
mod support;
