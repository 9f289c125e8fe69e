"""Package layout only; the metadata is in pyproject.toml.

The top-level `templates/`, `demo/` and `config/` folders ship inside the package as
`publisher.templates`, `publisher.demo` and `publisher.sample_config`, and are found at run time
through importlib.resources, never through a path relative to the source tree. Each folder below
them is declared too, so that setuptools packs it as data instead of warning about it.
"""

from pathlib import Path

from setuptools import find_packages, setup

DATA_PACKAGES = {"templates": "publisher.templates", "demo": "publisher.demo", "config": "publisher.sample_config"}

packages = find_packages(include=["publisher", "publisher.*"])
package_dir = {}
for folder, package in DATA_PACKAGES.items():
    for path in [Path(folder), *sorted(p for p in Path(folder).rglob("*") if p.is_dir() and p.name != "__pycache__")]:
        name = ".".join([package, *path.parts[1:]])
        packages.append(name)
        package_dir[name] = path.as_posix()

setup(packages=packages, package_dir=package_dir)
