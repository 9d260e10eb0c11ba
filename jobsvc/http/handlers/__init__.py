"""HTTP endpoints: thin functions that parse, authorize, call the repository or a service, and present."""
