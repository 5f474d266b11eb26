-- What the app role (monitor_app) may do with what the migrations made. The `migrate` service runs this as
-- monitor_owner after every `manage.py migrate`; running it again changes nothing. See 10-monitor-roles.sh.
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO monitor_app;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO monitor_app;

-- The security trail (README, "Database roles"): the app appends; of the entries it may update only the link to a
-- deleted user, the one update the trail's trigger allows; it never deletes or truncates the trail, its head or
-- the signed heads, and owns none of them, so it cannot switch their triggers off.
REVOKE UPDATE, DELETE, TRUNCATE ON audits_auditlogentry FROM monitor_app;
GRANT UPDATE (actor_id) ON audits_auditlogentry TO monitor_app;
REVOKE DELETE, TRUNCATE ON audits_auditchainhead FROM monitor_app;
REVOKE UPDATE, DELETE, TRUNCATE ON monitor_signedtrailhead FROM monitor_app;

-- The query log: the app makes and drops its day partitions (monitor/ingestion/partitions.py), which PostgreSQL
-- allows only to the owner of the log and of the partition. The owner, a member of monitor_app, still migrates it.
GRANT REFERENCES ON monitor_registeredmodel TO monitor_app;
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN
        SELECT tree.relid FROM pg_partition_tree('monitor_querylog') tree JOIN pg_class c ON c.oid = tree.relid
        WHERE c.relkind IN ('r', 'p') AND pg_get_userbyid(c.relowner) <> 'monitor_app'
    LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO monitor_app', part);
    END LOOP;
END
$$;
