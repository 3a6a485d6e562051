"""flowrecord for Metaflow."""
