#!/bin/sh
# The database roles of docker-compose.yml. The postgres image runs this once, when it makes its data folder
# (/docker-entrypoint-initdb.d); it is safe to run again, e.g. on a volume made by an older compose file:
#   docker compose exec postgres sh /docker-entrypoint-initdb.d/10-monitor-roles.sh
#
# monitor_owner owns the database and every table; the `migrate` service runs migrations as it. monitor_app is what
# web, worker and beat log in as: it owns nothing of the security trail, so the trail's guard triggers (audits 0002,
# monitor 0017) hold against it and against anyone holding its password. Neither is a superuser.
set -eu
: "${MONITOR_OWNER_DB_PASSWORD:?set MONITOR_OWNER_DB_PASSWORD}" "${MONITOR_APP_DB_PASSWORD:?set MONITOR_APP_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-monitor}" \
     -v owner_password="$MONITOR_OWNER_DB_PASSWORD" -v app_password="$MONITOR_APP_DB_PASSWORD" <<'SQL'
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'monitor_owner') THEN
        CREATE ROLE monitor_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'monitor_app') THEN
        CREATE ROLE monitor_app LOGIN;
    END IF;
END
$$;
ALTER ROLE monitor_owner NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'owner_password';
ALTER ROLE monitor_app NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'app_password';
-- The owner may act as the app: it hands the app the query log (after_migrate.sql) and still migrates that table.
GRANT monitor_app TO monitor_owner;
SELECT format('ALTER DATABASE %I OWNER TO monitor_owner', current_database()) \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database()) \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO monitor_app', current_database()) \gexec
ALTER SCHEMA public OWNER TO monitor_owner;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
-- CREATE: the app makes the query log's day partitions (monitor/ingestion/partitions.py).
GRANT USAGE, CREATE ON SCHEMA public TO monitor_app;
ALTER DEFAULT PRIVILEGES FOR ROLE monitor_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO monitor_app;
ALTER DEFAULT PRIVILEGES FOR ROLE monitor_owner IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO monitor_app;
-- A volume made by an older compose file has everything owned by its superuser: the owner takes it over.
DO $$
DECLARE
    item record;
BEGIN
    FOR item IN
        SELECT c.oid::regclass AS name, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
          AND pg_get_userbyid(c.relowner) NOT IN ('monitor_owner', 'monitor_app')
          AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO monitor_owner',
                       CASE item.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                         WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, item.name);
    END LOOP;
    FOR item IN
        SELECT p.oid::regprocedure AS name FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) NOT IN ('monitor_owner', 'monitor_app')
    LOOP
        EXECUTE format('ALTER ROUTINE %s OWNER TO monitor_owner', item.name);
    END LOOP;
END
$$;
SQL
