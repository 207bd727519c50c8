//! The one explicit list of node types. Built-ins are registered here exactly as a user-written
//! transform would be: add a factory to [`TRANSFORMS`].

use crate::operators::{aggregate, filter, join, rank, route, select, union, TransformFactory};

/// Every transform type.
pub static TRANSFORMS: &[&dyn TransformFactory] = &[
    &filter::FilterFactory,
    &select::SelectFactory,
    &union::UnionFactory,
    &aggregate::AggregateFactory,
    &join::JoinFactory,
    &rank::TopKFactory,
    &rank::DedupFactory,
    &rank::DistinctFactory,
    &route::RouteFactory,
];

/// The transform factory called `name`.
pub fn transform(name: &str) -> Option<&'static dyn TransformFactory> {
    TRANSFORMS.iter().copied().find(|f| f.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::spec::PipelineSpec;

    /// Every transform's documented example plans against the sample orders data.
    #[test]
    fn every_example_plans() {
        let schema = "{ order_id = \"int\", ts = \"timestamp\", category = \"string\", amount = \"float\", status = \"string\" }";
        for factory in TRANSFORMS {
            let mut text = String::new();
            for source in ["orders", "eu_orders", "us_orders"] {
                text.push_str(&format!("[sources.{source}]\ntype = \"csv\"\npath = \"data/orders.csv\"\nschema = {schema}\n\n"));
            }
            // A transform with named outputs is read as `t.PORT`; the route example has `big`.
            let output = if factory.name() == "route" {
                "t.big"
            } else {
                "t"
            };
            text.push_str(&format!(
                "[transforms.t]\n{}\n[sinks.s]\ntype = \"stdout\"\ninput = \"{output}\"\n",
                factory.example()
            ));
            let file = SourceFile {
                name: format!("{}.toml", factory.name()),
                text,
            };
            let spec = PipelineSpec::parse(file, env!("CARGO_MANIFEST_DIR").into())
                .map_err(|e| e.1)
                .unwrap();
            let plan = crate::plan::build(&spec);
            assert!(
                plan.is_ok(),
                "example of `{}` does not plan: {:?}",
                factory.name(),
                plan.err()
            );
        }
    }
}
