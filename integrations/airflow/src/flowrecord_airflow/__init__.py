"""flowrecord for Airflow."""
