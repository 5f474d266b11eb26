"""docker-compose.yml as shipped is a local install: the web port on loopback only (the settings, seeing only local
host names, send no Secure cookies or HSTS), every password from .env with compose refusing to start without it,
Redis behind a password, and the app on a database role that is neither the superuser nor the tables' owner (so
the security trail's guard triggers hold against it). docker compose cannot run here: the file is read as compose
reads it."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
# ${NAME:?message}: compose stops, saying the message, when NAME is unset or empty.
REQUIRED = re.compile(r"^\$\{(?P<name>[A-Z][A-Z0-9_]*):\?(?P<message>[^}]+)\}$")
APP_SERVICES = ("web", "worker", "beat")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def required_variable(value: str) -> str:
    """The variable a value must come from, or fail saying it is written into the file."""
    found = REQUIRED.match(value)
    assert found, f"{value!r} is written into docker-compose.yml; it must be ${{NAME:?message}} from .env"
    return found["name"]


def url_password(url: str) -> str:
    # urlsplit would choke on the braces of ${...} as a port: take user:password@ by hand.
    userinfo = url.split("://", 1)[1].rpartition("@")[0]
    return userinfo.partition(":")[2]


def url_user(url: str) -> str:
    return url.split("://", 1)[1].rpartition("@")[0].partition(":")[0]


def published(service: dict) -> list[tuple[str, str]]:
    """(host address, host port) of each published port, short or long syntax."""
    out = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            out.append((entry.get("host_ip", ""), str(entry.get("published", ""))))
        else:
            parts = str(entry).rsplit(":", 2)
            out.append((parts[0] if len(parts) == 3 else "", parts[-2] if len(parts) >= 2 else ""))
    return out


def test_only_the_web_port_is_published_and_only_on_loopback(compose):
    services = compose["services"]
    assert published(services["web"]) == [("127.0.0.1", "8000")]
    for name, service in services.items():
        if name != "web":
            assert "ports" not in service, f"{name} publishes {service['ports']}"


def test_the_defaults_keep_the_settings_local_only(compose):
    environment = compose["services"]["web"]["environment"]
    assert environment["ALLOWED_HOSTS"] == "${ALLOWED_HOSTS:-localhost,127.0.0.1}"
    # Put behind a TLS proxy, the settings a proxy needs pass through (README, "docker compose").
    assert {"TRUSTED_PROXIES", "TRUST_X_FORWARDED_PROTO"} <= set(environment)


def test_no_password_is_written_into_the_file(compose):
    services = compose["services"]
    assert required_variable(services["postgres"]["environment"]["POSTGRES_PASSWORD"]) == "POSTGRES_PASSWORD"
    for name in APP_SERVICES + ("migrate",):
        environment = services[name]["environment"]
        for key in ("DATABASE_URL", "CELERY_BROKER_URL"):
            required_variable(url_password(environment[key]))
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|_KEY$|AUTH", key):
                required_variable(str(value))
    text = (ROOT / "docker-compose.yml").read_text()
    assert not re.search(r"://[^:/@\s]+:(?!\$\{)[^@\s]+@", text), "a URL in the file carries a literal password"


def test_redis_requires_a_password_and_the_app_sends_it(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    password = command[command.index("--requirepass") + 1]
    assert required_variable(password) == "REDIS_PASSWORD"
    assert required_variable(redis["environment"]["REDISCLI_AUTH"]) == "REDIS_PASSWORD"  # the healthcheck's ping
    for name in APP_SERVICES:
        broker = compose["services"][name]["environment"]["CELERY_BROKER_URL"]
        assert broker.startswith("redis://:") and urlsplit(broker.replace(url_password(broker), "x")).hostname == "redis"
        assert required_variable(url_password(broker)) == "REDIS_PASSWORD"


def test_the_app_logs_in_as_a_role_that_owns_nothing_and_migrations_as_the_owner(compose):
    services = compose["services"]
    superuser = services["postgres"]["environment"].get("POSTGRES_USER", "postgres")
    assert superuser in ("postgres", "${POSTGRES_USER:-postgres}")
    for name in APP_SERVICES:
        url = services[name]["environment"]["DATABASE_URL"]
        assert url_user(url) == "monitor_app", name
        assert required_variable(url_password(url)) == "MONITOR_APP_DB_PASSWORD"
    migrate = services["migrate"]
    assert url_user(migrate["environment"]["DATABASE_URL"]) == "monitor_owner"
    assert required_variable(url_password(migrate["environment"]["DATABASE_URL"])) == "MONITOR_OWNER_DB_PASSWORD"
    # The roles are made when PostgreSQL first makes its data folder, neither of them a superuser.
    assert "./deploy/postgres/10-monitor-roles.sh:/docker-entrypoint-initdb.d/10-monitor-roles.sh:ro" in \
        services["postgres"]["volumes"]
    roles = (ROOT / "deploy" / "postgres" / "10-monitor-roles.sh").read_text()
    for role in ("monitor_owner", "monitor_app"):
        assert re.search(rf"ALTER ROLE {role} NOSUPERUSER NOCREATEDB NOCREATEROLE", roles), role
    assert "GRANT monitor_app TO monitor_owner" in roles and "GRANT monitor_owner" not in roles
    for variable in ("MONITOR_OWNER_DB_PASSWORD", "MONITOR_APP_DB_PASSWORD"):
        assert required_variable(services["postgres"]["environment"][variable]) == variable


def test_migrations_and_grants_run_as_the_owner_before_the_app_starts(compose):
    services = compose["services"]
    command = " ".join(services["migrate"]["command"])
    assert re.search(r"manage\.py migrate --noinput && python deploy/postgres/apply_sql\.py "
                     r"deploy/postgres/after_migrate\.sql", command)
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert "migrate" not in " ".join(services[name]["command"]), name  # monitor_app could not migrate
    grants = (ROOT / "deploy" / "postgres" / "after_migrate.sql").read_text()
    # The trail: never DELETE or TRUNCATE, of the entries only the deleted-user link (README, "Database roles").
    for table in ("audits_auditlogentry", "audits_auditchainhead", "monitor_signedtrailhead"):
        assert re.search(rf"REVOKE [A-Z, ]*DELETE, TRUNCATE ON {table} FROM monitor_app;", grants), table
    assert "GRANT UPDATE (actor_id) ON audits_auditlogentry TO monitor_app;" in grants
