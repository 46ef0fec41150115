//! The integration tests: one test binary (as cargo's `tests/testsuite`), so the crate is linked
//! once, not once per file, and one set of servers serves the whole run.
//!
//! One module per area (a test is `MODULE::NAME`, and `MODULE::NAME::sled` / `::postgres` for the
//! tests run on both state backends); `support/` is shared by all of them: the one way to run the
//! binary ([`support::matih_command`]), the state backends ([`support::TestState`],
//! `on_both_backends!`), the servers (PostgreSQL and PowerDNS started on first use and stopped
//! when the process exits; the Kubernetes control plane and Kafka broker that `scripts/test`
//! started), the one scripted fake provider ([`support::fake::Scripted`]) and the fixtures.
//!
//! Every test runs in this one process, in parallel with the others: a test never changes the
//! process environment for itself (see [`support::in_process_env`]) and takes what it shares (a
//! tenant slug on the cluster, a DNS parent zone) through `support`.

#[macro_use]
mod support;

mod apply_cli;
mod apply_e2e;
mod bulk_read;
mod cli;
mod dns_azure;
mod dns_powerdns;
mod drift;
mod e2e;
mod e2e_database;
mod fault_matrix;
mod fleet;
mod fleet_review;
mod fuzz_corpus;
mod helm;
mod kubernetes;
mod lifecycle;
mod notify_kafka;
mod policy;
mod postgres;
mod postgres_tls;
mod review;
mod serve;
mod serve_page;
mod serve_postgres;
mod serve_token;
mod server_death;
mod state_postgres;
mod workflow_example;
