"""Stream processing: topic catalogue, pure stage logic and the thin Faust agents around it."""
