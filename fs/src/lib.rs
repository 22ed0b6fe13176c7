//! podrun-procfs (issue 6).
