//! The dial plan: Cisco patterns, and (with call control) digit analysis over partitions and
//! calling search spaces.
pub mod pattern;
pub use pattern::{MatchResult, Pattern, PatternError};
pub mod analysis;
pub use analysis::{
    Analysis, AnalysisError, CallingContext, Destination, DialPlan, Route, Transform, Translation,
    STANDARD_LOCAL_ROUTE_GROUP,
};
