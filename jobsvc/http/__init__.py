"""The HTTP layer: app, routes, middleware, handlers, request parsing, pagination, ranges, entities."""
