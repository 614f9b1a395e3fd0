//! The cluster's applications. Each service is a module; more arrive with their issues.
pub mod authenticate;
pub mod directory;
pub mod em;
pub mod paging;
pub mod phone_config;
pub mod phone_services;
pub mod webdialer;
