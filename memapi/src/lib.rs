//! An in-memory Kubernetes API server (under construction).
