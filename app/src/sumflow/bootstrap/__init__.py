"""The one place that wires each service: adapters and service layer from the configuration."""
