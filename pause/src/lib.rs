//! podrun-pause (issue 4).
