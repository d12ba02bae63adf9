//! End-to-end tests: a real instance, real MID Servers and a real target service on
//! loopback, over real TLS; and the `openmid` binary as a user runs it.

mod audit;
mod canary;
mod cli;
mod cli_ops;
mod clusters;
mod command;
mod command_stream;
mod connections;
mod discovery;
mod discovery_network;
mod durability;
mod egress;
mod end_to_end;
mod express;
mod imports;
mod large_bodies;
mod metrics;
mod mid_only;
mod postgres_store;
mod recovery;
mod redirects;
mod scale_out;
mod snmp;
mod soap;
mod sql;
mod ssh;
mod standby;
mod support;
mod telemetry;
mod trace;
