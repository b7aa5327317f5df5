"""The queen's HTTP handlers, one module per resource, and its route table."""
