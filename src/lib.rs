//! # eventflow
//!
//! A stream-processing dataflow engine: pipelines declared in TOML files are validated, planned
//! and run on [timely dataflow] and [differential dataflow] across worker threads, with
//! deterministic, incremental output files.
//!
//! ```text
//! pipeline file ──spec──▶ PipelineSpec ──plan──▶ Plan ──runtime──▶ timely/DD dataflow
//!  data files ──connectors (splitter + parser threads)──▶ workers ──▶ sink writer threads ──▶ files
//! ```
//!
//! Layers, lowest first (a module uses only those below it):
//! [`record`], [`diag`] → [`spec`], [`expr`] → [`operators`], [`connectors`] → [`registry`] →
//! [`plan`] → [`runtime`] → `cli`. Only [`runtime`] imports timely or differential dataflow.
//!
//! Running a pipeline from Rust:
//!
//! ```no_run
//! use std::sync::Arc;
//! let spec = eventflow::spec::PipelineSpec::load("pipelines/orders_revenue.toml".as_ref()).map_err(|e| e.1).unwrap();
//! let plan = eventflow::plan::build(&spec).unwrap();
//! let opts = eventflow::runtime::RunOptions { workers: 2, out_dir: "out/orders_revenue".into(), progress: false, recovery: Default::default(), cluster: None, stop_when_idle: None };
//! let summary = eventflow::runtime::run(Arc::new(plan), &opts).unwrap();
//! assert!(summary.balanced());
//! ```
//!
//! [timely dataflow]: https://docs.rs/timely
//! [differential dataflow]: https://docs.rs/differential-dataflow

#![warn(missing_docs)]

/// `eventflow bench`: repeated child-process runs per worker count, with a table, CSV and SVG chart.
pub mod bench;
pub mod connectors;
pub mod diag;

#[doc(hidden)]
pub mod cli;
pub mod expr;
pub mod generate;
pub mod launch;
pub mod operators;
pub mod plan;
pub mod record;
pub mod registry;
pub mod runtime;
pub mod spec;
