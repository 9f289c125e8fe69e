"""The demo configuration: data, shipped in the package (`publisher init --demo` writes it out)."""
