"""The project's own files agree with each other."""

from __future__ import annotations

import re
import tomllib

import yaml

from recovery.config import PROJECT_ROOT

# conda-forge names that differ from PyPI's
ALIASES = {"python-confluent-kafka": "confluent-kafka"}


def normalise(requirement: str) -> str:
    name = re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0]
    name = name.lower().replace("_", "-")
    return ALIASES.get(name, name)


def test_environment_yml_names_the_same_packages_as_pyproject() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    declared = {normalise(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {normalise(r) for r in extra}
    env = yaml.safe_load((PROJECT_ROOT / "environment.yml").read_text())
    conda = {normalise(d) for d in env["dependencies"] if isinstance(d, str)}
    non_python = {"python", "openjdk", "maven", "pip", "openssl", "rust", "c-compiler", "make"}
    assert declared == conda - non_python
    assert non_python <= conda


def test_lock_file_pins_every_declared_package() -> None:
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    declared = {normalise(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {normalise(r) for r in extra}
    pins = {}
    for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[normalise(name)] = version
    assert declared <= set(pins), f"not pinned: {declared - set(pins)}"
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", v) for v in pins.values())


def test_pom_fetches_kafka_4_3_1() -> None:
    pom = (PROJECT_ROOT / "kafka" / "pom.xml").read_text()
    assert "<kafka.version>4.3.1</kafka.version>" in pom
    assert "<artifactId>kafka_2.13</artifactId>" in pom


def test_spark_connector_pom_fetches_the_version_of_the_pinned_pyspark() -> None:
    pom = (PROJECT_ROOT / "spark" / "pom.xml").read_text()
    pins = dict(
        line.split("==") for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines() if "==" in line
    )
    assert f"<spark.version>{pins['pyspark']}</spark.version>" in pom
    assert "<artifactId>spark-sql-kafka-0-10_2.13</artifactId>" in pom
