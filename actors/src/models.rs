//! Turning a model name on the command line into a comparator.

use std::sync::Arc;

use engine::classical::{Brisque, Niqe};
use engine::compare::Comparator;

use crate::cli::ModelName;

pub fn load(model: ModelName) -> Arc<dyn Comparator> {
    match model {
        ModelName::Brisque => Arc::new(Brisque::default()),
        ModelName::Niqe => Arc::new(Niqe::default()),
    }
}
