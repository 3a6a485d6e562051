"""flowrecord for Dagster."""
