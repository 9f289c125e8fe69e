"""The bundled templates and message catalogues: data, shipped in the package and found through
importlib.resources (`publisher.templating`). A theme folder overrides them file by file."""
