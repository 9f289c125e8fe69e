"""The demo site's content (`config/publisher.toml` reads it): data, shipped in the package."""
