"""The HTTP surface of `gq worker --http`: the JSON API, the dashboard, /metrics."""
