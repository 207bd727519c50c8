//! The one integration-test binary. Each module says what belongs in it.

mod integration {
    pub mod applications;
    pub mod bad_env;
    pub mod bad_input;
    pub mod bench;
    pub mod cli;
    pub mod cluster;
    pub mod errors;
    pub mod fuzz;
    pub mod golden;
    pub mod kafka;
    pub mod nexmark;
    pub mod operators;
    pub mod oracle;
    pub mod rabbitmq;
    pub mod recovery;
    pub mod support;
    pub mod windows;
}
