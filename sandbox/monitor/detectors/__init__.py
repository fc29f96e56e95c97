"""monitor/detectors."""
