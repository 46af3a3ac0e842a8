//! # glasswatch-integration-tests
//!
//! End-to-end tests of Glasswatch against local AWS emulation, and the
//! support code they share (`test_support`): finding the moto server that
//! `cargo xtask test` started, and building real `aws-sdk-*` clients that
//! talk to it.
