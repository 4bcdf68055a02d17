"""Storage: the LanceDB table of photos, its schema, filters and locks."""
