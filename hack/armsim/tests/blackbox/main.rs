//! Black-box tests: each test starts armsim in-process on 127.0.0.1:0 and talks HTTPS to it,
//! trusting only the generated CA.

mod arm;
mod azurite;
mod common;
mod contract;
mod faults_and_admin;
mod sdk;
mod token;
