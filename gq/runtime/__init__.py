"""The worker runtime: dispatch, execution, outcomes, maintenance, supervision."""
