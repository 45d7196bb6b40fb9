"""The background processes beside the server: the training worker (jobs, refits, promotion
gates, snapshots) and the monitor (validation, drift, alarms). They use the engine; the engine
never uses them. ``onlearn.topology`` decides where they run."""
