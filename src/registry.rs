//! The one explicit list of node types. Built-ins are registered here exactly as a user-written
//! transform would be: add a factory to [`TRANSFORMS`].

use crate::operators::{aggregate, filter, select, union, TransformFactory};

/// Every transform type.
pub static TRANSFORMS: &[&dyn TransformFactory] = &[
    &filter::FilterFactory,
    &select::SelectFactory,
    &union::UnionFactory,
    &aggregate::AggregateFactory,
];

/// The transform factory called `name`.
pub fn transform(name: &str) -> Option<&'static dyn TransformFactory> {
    TRANSFORMS.iter().copied().find(|f| f.name() == name)
}
